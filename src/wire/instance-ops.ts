// The agent API's operations on one instance besides start and stop: a local
// migration (QEMU upgrade in place), save, restore, and the migration
// progress QEMU reports. Request bodies and replies, once, as schemas with
// their types derived (routes: agent/http/instances.ts; client:
// wire/agent-client.ts).
import { Type } from "typebox";
import type { Static } from "typebox";
import { SaveName } from "./agent-api.ts";
import { ArrivedNic, NicVf, SpecBody } from "./steps.ts";

const Ms = () => Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000 }));

export const LocalMigrateBody = Type.Object({
  qemuBinary: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
  unplugMs: Ms(),
  timeoutMs: Ms(),
  primaryBackMs: Ms(),
}, { additionalProperties: false });
export type LocalMigrateBody = Static<typeof LocalMigrateBody>;
export const LocalMigrateReply = Type.Object({
  oldInstanceId: Type.String(),
  newInstanceId: Type.String(),
  qemuBinary: Type.String(),
  totalMs: Type.Number(),
  downtimeMs: Type.Number(),
  transferredBytes: Type.Number(),
  ramBytes: Type.Number(),
  nics: Type.Array(ArrivedNic),
  movedVfs: Type.Array(Type.String()),
});
export type LocalMigrateReply = Static<typeof LocalMigrateReply>;

export const SaveBody = Type.Object({ name: SaveName, unplugMs: Ms(), timeoutMs: Ms() }, { additionalProperties: false });
export type SaveBody = Static<typeof SaveBody>;
export const SaveReply = Type.Object({
  file: Type.String(),
  bytes: Type.Number(),
  spec: SpecBody,
  /** NICs whose VF must be chosen anew at restore. */
  nicsToRestore: Type.Array(Type.Object({ name: Type.String(), mode: Type.String(), vf: Type.Union([Type.String(), Type.Null()]) })),
  releasedVfs: Type.Array(Type.String()),
});
export type SaveReply = Static<typeof SaveReply>;

export const RestoreBody = Type.Object({
  name: SaveName,
  nics: Type.Array(NicVf, { maxItems: 28 }),
  primaryBackMs: Ms(),
  timeoutMs: Ms(),
}, { additionalProperties: false });
export type RestoreBody = Static<typeof RestoreBody>;
export const RestoreReply = Type.Object({ instanceId: Type.String(), nics: Type.Array(ArrivedNic) });
export type RestoreReply = Static<typeof RestoreReply>;

/** The instance's migration as QEMU reports it (query-migrate). */
export const MigrationProgress = Type.Object({
  status: Type.String(),
  transferredBytes: Type.Number(),
  remainingBytes: Type.Number(),
  totalBytes: Type.Number(),
  dirtyPagesRate: Type.Number(),
  mbps: Type.Number(),
  /** QEMU's estimate of the pause at switch-over with the current dirty rate and bandwidth (absent: an older agent, or QEMU has none yet). */
  expectedDowntimeMs: Type.Optional(Type.Number()),
  /** Passes over guest RAM so far (QEMU's dirty-sync-count). */
  iterations: Type.Optional(Type.Number()),
});
export type MigrationProgress = Static<typeof MigrationProgress>;

/** Tune the instance's outgoing migration while it runs (migrate-set-parameters); at least one field. */
export const MigrationLimitsBody = Type.Object({
  maxBandwidthBytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 2 ** 40, description: "bytes/s" })),
  downtimeLimitMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 2_000_000, description: "the longest pause QEMU may plan for the switch-over" })),
}, { additionalProperties: false, minProperties: 1 });
export type MigrationLimitsBody = Static<typeof MigrationLimitsBody>;
/** The limits the instance's QEMU holds after the change (query-migrate-parameters), and its migration's status then. */
export const MigrationLimits = Type.Object({ status: Type.String(), maxBandwidthBytes: Type.Number(), downtimeLimitMs: Type.Number() });
export type MigrationLimits = Static<typeof MigrationLimits>;

/** Measure the instance's guest dirty rate now (QEMU calc-dirty-rate, page sampling), for a migration plan's prediction. */
export const DirtyRateBody = Type.Object({
  seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 10, description: "how long to measure (QEMU 7.2 counts whole seconds); default 1" })),
}, { additionalProperties: false });
export type DirtyRateBody = Static<typeof DirtyRateBody>;
/** The measured dirty rate and the outgoing-migration parameters the instance holds now (what a migration of it starts with). */
export const DirtyRateReply = Type.Object({
  dirtyRateMiBps: Type.Number({ description: "MiB of guest memory dirtied per second, sampled" }),
  seconds: Type.Number({ description: "how long QEMU measured" }),
  mode: Type.String({ description: "QEMU's method: page-sampling (hashes of sampled pages), dirty-bitmap or dirty-ring" }),
  ramBytes: Type.Number({ description: "the guest's RAM" }),
  maxBandwidthBytes: Type.Number({ description: "the migration bandwidth cap the instance holds now (bytes/s; QEMU's query-migrate-parameters)" }),
  downtimeLimitMs: Type.Number({ description: "the downtime limit the instance holds now" }),
});
export type DirtyRateReply = Static<typeof DirtyRateReply>;
