// A follower's writes go to the leader. With several controllers on etcd only
// the leader writes; a follower answers reads from the store itself and
// forwards any other request (POST, PUT, PATCH, DELETE), and the reads of
// evacuations and a migration's live stream (the leader's memory: a
// follower's would stop at the phases so far), to the leader's URL,
// as it came (token, body), and passes the leader's answer back with the
// leader's URL in LEADER_HEADER. Forwarding rather than refusing: an agent
// heartbeats to one controller URL and the CLI talks to one, so every
// controller must take writes. A forwarded write is never forwarded again;
// when no controller leads (an election in progress, etcd without quorum) or
// the leader does not answer, the write is refused with FERRY_ERR_NOT_LEADER
// (retryable, nothing done).
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { FastifyReply, FastifyRequest } from "fastify";
import { FerryError } from "../core/errors.ts";
import { SingleLeadership } from "../controller/leadership.ts";
import type { Leadership } from "../controller/leadership.ts";
import { FORWARDED_HEADER, LEADER_HEADER } from "../wire/controllers.ts";
import type { ControllerAppDeps } from "./deps.ts";

const READS = new Set(["GET", "HEAD", "OPTIONS"]);
/** Reads only the leader can answer: evacuations and a migration's live events are in the memory of the controller that runs them. */
const LEADER_READS = /^\/v1\/(evacuations(\/|\?|$)|migrations\/[^/?]+(\/events)?(\?|$))/;
/**
 * A migration's record: the leader's answer has what only it knows (still
 * settling or measuring, QEMU's live progress), so a follower asks it; with
 * no leader to ask, the follower's own view of the store is the best answer.
 */
const LOCAL_WITHOUT_LEADER = /^\/v1\/migrations\/[^/?]+(\?|$)/;
/** Server-sent events: passed on as they come, for as long as the client listens (no overall deadline). */
const STREAMS = /^\/v1\/migrations\/[^/?]+\/events(\?|$)/;
/** A stream's leader must answer its headers within this. */
const STREAM_HEADERS_MS = 10_000;
/** A forwarded write waits as long as the slowest write may take (creating a VM boots QEMU). */
const FORWARD_TIMEOUT_MS = 120_000;

const fallback = new WeakMap<ControllerAppDeps, Leadership>();

/** The app's leadership (SQLite without one: this controller alone, term 1). */
export function leadershipOf(deps: ControllerAppDeps): Leadership {
  if (deps.leadership) return deps.leadership;
  let l = fallback.get(deps);
  if (!l) {
    l = new SingleLeadership({ id: "controller", url: "", startedAt: (deps.clock ?? { now: () => 0 }).now() });
    fallback.set(deps, l);
  }
  return l;
}

/** A preValidation hook: forward a write to the leader when this controller does not lead. */
export function forwardWrites(leadership: Leadership, doFetch: typeof fetch) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if ((READS.has(req.method) && !LEADER_READS.test(req.url)) || leadership.term() !== null) return undefined;
    const what = `${req.method} ${req.url}`;
    const localOk = req.method === "GET" && LOCAL_WITHOUT_LEADER.test(req.url);
    if (localOk && req.headers[FORWARDED_HEADER] !== undefined) return undefined;
    if (req.headers[FORWARDED_HEADER] !== undefined) {
      throw new FerryError("FERRY_ERR_NOT_LEADER", `${what} refused, nothing done: forwarded here as to the leader, but this controller (${leadership.self}) does not lead (the leadership just changed): try again`, { details: { self: leadership.self } });
    }
    const url = await leadership.leaderUrl().catch((e: unknown) => {
      if (localOk) return null;
      throw new FerryError("FERRY_ERR_NOT_LEADER", `${what} refused, nothing done: this controller does not lead and cannot tell which one does: the etcd store does not answer (${e instanceof Error ? e.message : String(e)}); with a quorum of etcd members back an election follows within the lease: try again then`, { cause: e, details: { self: leadership.self } });
    });
    if (url === null) {
      if (localOk) return undefined;
      throw new FerryError("FERRY_ERR_NOT_LEADER", `${what} refused, nothing done: no controller leads right now (an election is in progress, or the etcd store has no quorum: 'ferry controllers' shows the members): try again in a few seconds`, { details: { self: leadership.self } });
    }
    const headers: Record<string, string> = { [FORWARDED_HEADER]: leadership.self };
    for (const h of ["authorization", "accept", "content-type"]) {
      const v = req.headers[h];
      if (typeof v === "string") headers[h] = v;
    }
    const stream = STREAMS.test(req.url);
    // a stream ends when its client goes (or the leader ends it); anything else within the slowest write's time
    const gone = new AbortController();
    let res: Response;
    let text: string;
    try {
      let headersBy: ReturnType<typeof setTimeout> | undefined;
      if (stream) {
        reply.raw.once("close", () => gone.abort());
        headersBy = setTimeout(() => gone.abort(new Error(`no answer within ${STREAM_HEADERS_MS} ms`)), STREAM_HEADERS_MS);
      }
      try {
        res = await doFetch(`${url.replace(/\/+$/, "")}${req.url}`, {
          method: req.method, headers, signal: stream ? gone.signal : AbortSignal.timeout(FORWARD_TIMEOUT_MS),
          ...(req.body === undefined ? {} : { body: JSON.stringify(req.body) }),
        });
      } finally {
        clearTimeout(headersBy);
      }
      if (stream && res.ok && res.body !== null) {
        void reply.code(res.status).header(LEADER_HEADER, url).type(res.headers.get("content-type") ?? "text/event-stream");
        return reply.send(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>));
      }
      text = await res.text();
    } catch (e) {
      throw new FerryError("FERRY_ERR_NOT_LEADER", `${what}: forwarded to the leader at ${url}, which did not answer (${e instanceof Error ? (e.cause instanceof Error ? e.cause.message : e.message) : String(e)}); if it died, another controller takes over within the election lease: try again`, { cause: e, details: { leader: url } });
    }
    void reply.code(res.status).header(LEADER_HEADER, url);
    const type = res.headers.get("content-type");
    if (type !== null) void reply.type(type);
    return reply.send(text);
  };
}
