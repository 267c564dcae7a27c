// One migration's live stream (GET /v1/migrations/:id/events, SSE): first the
// phases so far (from the record), then every coordinator event of that
// migration as it happens, QEMU's RAM progress every ~250 ms while perform
// runs, and at last `end` with the settled record. Also the bodies and
// replies of tuning a running migration (set, force-complete).
import { Type } from "typebox";
import type { Static } from "typebox";
import type { CoordinatorEvent } from "../migration/runner.ts";
import type { MigrationRecord, Phase } from "../migration/types.ts";
import { MIGRATION_MAX_MIBPS } from "./controller-api.ts";
import type { MigrationViewT } from "./controller-api.ts";
import type { MigrationTunedEvent } from "./events.ts";
import type { MigrationProgress } from "./instance-ops.ts";

/** A phase began (`replayed`: told from the record to a subscriber that came later; `event` is then unknown). */
export type PhaseStreamEvent = { type: "phase"; migrationId: string; from: Phase | null; to: Phase; at: number; event?: string; replayed?: true };

/** QEMU's view of the RAM copy on the source (query-migrate), sampled while perform runs. */
export type ProgressStreamEvent = MigrationProgress & { type: "progress"; migrationId: string; phase: Phase; at: number };

/** The migration has ended and the controller has settled its VM record: the stream closes after this. */
export type EndStreamEvent = { type: "end"; migrationId: string; migration: MigrationViewT; at: number };

export type MigrationStreamEvent = Exclude<CoordinatorEvent, { type: "phase" }> | MigrationTunedEvent | PhaseStreamEvent | ProgressStreamEvent | EndStreamEvent;

/**
 * Every phase a record has been through, oldest first, with its start (epoch
 * ms) and, once over, its duration: `planned` from the record's creation
 * (the coordinator times the phases it enters, not the first).
 */
export function phaseTimes(r: Pick<MigrationRecord, "timings" | "createdAt">): { phase: Phase; startedAt: number; ms?: number }[] {
  const list = (Object.entries(r.timings) as [Phase, { startedAt: number; ms?: number } | undefined][])
    .filter((e): e is [Phase, { startedAt: number; ms?: number }] => e[1] !== undefined)
    .map(([phase, t]) => ({ phase, startedAt: t.startedAt, ...(t.ms === undefined ? {} : { ms: t.ms }) }))
    .sort((a, b) => a.startedAt - b.startedAt);
  if (r.timings.planned === undefined) list.unshift({ phase: "planned", startedAt: r.createdAt, ...(list[0] ? { ms: list[0].startedAt - r.createdAt } : {}) });
  return list;
}

const MiBps = Type.Integer({ minimum: 1, maximum: MIGRATION_MAX_MIBPS, description: "MiB/s" });
const LimitMs = Type.Integer({ minimum: 1, maximum: 600_000, description: "ms" });

export const MigrationLimitsInput = Type.Object(
  { maxBandwidthMiBps: Type.Optional(MiBps), downtimeLimitMs: Type.Optional(LimitMs) },
  { additionalProperties: false, minProperties: 1 },
);
export type MigrationLimitsInputT = Static<typeof MigrationLimitsInput>;

export const ForceCompleteInput = Type.Object({ downtimeLimitMs: Type.Optional(LimitMs) }, { additionalProperties: false });
export type ForceCompleteInputT = Static<typeof ForceCompleteInput>;

/** What QEMU on the source holds after the change. */
export const MigrationLimitsView = Type.Object({
  migrationId: Type.String(),
  phase: Type.String(),
  status: Type.String({ description: "QEMU's migration status on the source then" }),
  maxBandwidthMiBps: Type.Number(),
  downtimeLimitMs: Type.Integer(),
});
export type MigrationLimitsViewT = Static<typeof MigrationLimitsView>;

export const ForceCompleteView = Type.Object({
  ...MigrationLimitsView.properties,
  action: Type.Literal("downtime-limit-raised", { description: "what was done; post-copy is never used (see why)" }),
  why: Type.String(),
});
export type ForceCompleteViewT = Static<typeof ForceCompleteView>;
