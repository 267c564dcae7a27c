// The evacuation API's data (drain, undrain, evacuate, follow an evacuation).
// Kept apart from controller-api.ts; the same definitions serve the routes and the
// client's reply checks.
import { Type } from "typebox";
import type { Static, TSchema } from "typebox";
import { ruled } from "../core/http/schema.ts";
import { Name as NameSchema } from "./agent-api.ts";
import type { Rejection } from "../scheduler/rejections.ts";

export const DEFAULT_PARALLEL = 2;
export const MAX_PARALLEL = 16;
export const MAX_BANDWIDTH_MIBPS = 1_000_000;

export type ItemStatus = "pending" | "migrating" | "done";
/** A migration outcome, or why the VM never started moving. */
export type ItemOutcome = "succeeded" | "degraded" | "recovered" | "rolled-back" | "failed" | "refused" | "unplaced" | "skipped";

export interface EvacuationItem {
  vm: string;
  uuid: string;
  from: string;
  /** The planned destination; null when unplaced or skipped. */
  to: string | null;
  /** Position in the plan (1 = first); null when skipped before planning. */
  order: number | null;
  /** The planned VF of each NIC on `to` (null: emulated or none). */
  vfs: { nic: string; vf: string | null }[];
  status: ItemStatus;
  migrationId: string | null;
  /** The migration's phase while it runs. */
  phase: string | null;
  outcome: ItemOutcome | null;
  /** Where the VM runs once done (null: unknown). */
  runsOn: string | null;
  reason: string | null;
  code: string | null;
  /** For an unplaced VM: every rejected host with its reason, as it stood at its turn. */
  rejections?: Rejection[];
  startedAt: number | null;
  endedAt: number | null;
}

export interface EvacuationView {
  id: string;
  host: string;
  /** planned: only a plan (--plan), nothing changed; running; done. */
  state: "planned" | "running" | "done";
  parallel: number;
  maxBandwidthMiBps: number | null;
  /** The cap given to each migration (bytes/s), null when uncapped. */
  perMigrationBytes: number | null;
  plan: { kind: "complete" | "partial"; order: string; reservedVfs: string[] };
  items: EvacuationItem[];
  counts: { total: number; pending: number; migrating: number; moved: number; stayed: number };
  createdAt: number;
  endedAt: number | null;
}

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Name = NameSchema;

export const HostParams = Type.Object({ name: Name });
export const EvacuationParams = Type.Object({ id: Type.String(ruled("^e-[0-9a-f]{8}$", "an evacuation id: 'e-' and 8 lower-case hex digits ('ferry evacuate' prints it)")) });

export const EvacuateBody = Type.Object(
  {
    parallel: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PARALLEL, description: "migrations at once (default 2)" })),
    maxBandwidthMiBps: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_BANDWIDTH_MIBPS, description: "total migration bandwidth (MiB/s), split evenly over the migrations in flight" })),
    plan: Type.Optional(Type.Boolean({ description: "only plan: nothing changes, not even draining" })),
  },
  { additionalProperties: false },
);
export type EvacuateBodyT = Static<typeof EvacuateBody>;

const Item = Type.Object(
  {
    vm: Type.String(),
    uuid: Type.String(),
    from: Type.String(),
    to: Nullable(Type.String()),
    order: Nullable(Type.Integer()),
    vfs: Type.Array(Type.Object({ nic: Type.String(), vf: Nullable(Type.String()) })),
    status: Type.Union([Type.Literal("pending"), Type.Literal("migrating"), Type.Literal("done")]),
    migrationId: Nullable(Type.String()),
    phase: Nullable(Type.String()),
    outcome: Nullable(Type.String()),
    runsOn: Nullable(Type.String()),
    reason: Nullable(Type.String()),
    code: Nullable(Type.String()),
    rejections: Type.Optional(Type.Array(Type.Object({ host: Type.String(), code: Type.String(), message: Type.String() }))),
    startedAt: Nullable(Type.Integer()),
    endedAt: Nullable(Type.Integer()),
  },
  { additionalProperties: true },
);

/** An evacuation (controller/evacuation.ts): the plan's items with their progress and outcomes. */
export const EvacuationView = Type.Unsafe<EvacuationView>(
  Type.Object(
    {
      id: Type.String(),
      host: Type.String(),
      state: Type.Union([Type.Literal("planned"), Type.Literal("running"), Type.Literal("done")]),
      parallel: Type.Integer(),
      maxBandwidthMiBps: Nullable(Type.Integer()),
      perMigrationBytes: Nullable(Type.Integer()),
      plan: Type.Object({ kind: Type.String(), order: Type.String(), reservedVfs: Type.Array(Type.String()) }),
      items: Type.Array(Item),
      counts: Type.Object({ total: Type.Integer(), pending: Type.Integer(), migrating: Type.Integer(), moved: Type.Integer(), stayed: Type.Integer() }),
      createdAt: Type.Integer(),
      endedAt: Nullable(Type.Integer()),
    },
    { additionalProperties: true },
  ),
);
export const EvacuationList = Type.Object({ evacuations: Type.Array(EvacuationView) });
