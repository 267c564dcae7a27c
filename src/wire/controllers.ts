// The controllers of a cluster and which one leads (GET /v1/controllers,
// `ferry controllers`), and the header that carries a leader's term on every
// call to an agent (fencing: an agent refuses a term older than the highest it
// has seen).
import { Type } from "typebox";
import type { Static } from "typebox";

/** The leadership term of the controller making a call to an agent (decimal). */
export const TERM_HEADER = "x-ferry-term";
/** Set by a follower on a write it forwards to the leader (a forwarded write is never forwarded again). */
export const FORWARDED_HEADER = "x-ferry-forwarded-by";
/** On a reply to a forwarded write: the leader's URL that answered it. */
export const LEADER_HEADER = "x-ferry-leader";

export const ControllerMember = Type.Object({
  id: Type.String(),
  url: Type.String({ description: "where its API answers" }),
  startedAt: Type.Integer({ description: "epoch ms" }),
  leader: Type.Boolean(),
});
export type ControllerMemberT = Static<typeof ControllerMember>;

export const ControllersView = Type.Object({
  store: Type.Union([Type.Literal("sqlite"), Type.Literal("etcd")], { description: "sqlite: one controller, always the leader (term 1); etcd: several, one elected" }),
  self: Type.String({ description: "the id of the controller that answered" }),
  members: Type.Array(ControllerMember),
  leader: Type.Union([
    Type.Object({
      id: Type.String(),
      url: Type.String(),
      term: Type.Integer({ minimum: 1, description: "the leadership term: the election key's create revision in etcd (only grows); 1 with sqlite" }),
      since: Type.Integer({ description: "epoch ms" }),
    }),
    Type.Null(),
  ], { description: "null: no controller leads right now (an election in progress, or etcd without quorum)" }),
});
export type ControllersViewT = Static<typeof ControllersView>;

/** A term as the header carries it: a positive decimal integer, else undefined. */
export function parseTerm(raw: string): number | undefined {
  if (!/^[1-9][0-9]{0,15}$/.test(raw)) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) ? n : undefined;
}
