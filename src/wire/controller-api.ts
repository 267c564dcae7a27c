// The controller API's data: TypeBox schemas (JSON Schema) and the types
// derived from them. One definition serves the routes (validation,
// serialisation), the OpenAPI document and the client (which validates
// replies against the same schemas).
import { ConvergenceRequestSchema } from "../migration/port.ts";
import { SwitchoverTimeline } from "../migration/timeline.ts";
import { Type } from "typebox";
import type { Static, TSchema } from "typebox";
import { ruled } from "../core/http/schema.ts";
import { Name, PciAddress, VmUuid } from "./agent-api.ts";
import type { ControllerEvent } from "./events.ts";
import type { MigrationRecord } from "../migration/types.ts";
import type { CancelReport } from "../migration/runner.ts";
import type { Rejection } from "../scheduler/rejections.ts";
import type { Destination } from "../scheduler/types.ts";
import { LocalMigrateReply } from "./instance-ops.ts";
import type { MigrationProgress } from "./instance-ops.ts";

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Int = (o: { minimum?: number; maximum?: number; description?: string } = {}) => Type.Integer(o);

export { Problem } from "../core/http/schema.ts";

// ---- agents / hosts

export { HeartbeatBody, HeartbeatReply } from "./heartbeat.ts";
export type { HeartbeatBodyT } from "./heartbeat.ts";

export const HostView = Type.Object({
  name: Type.String(),
  url: Type.String(),
  version: Type.String(),
  accel: Type.String(),
  state: Type.Union([Type.Literal("up"), Type.Literal("down"), Type.Literal("draining")]),
  lastHeartbeat: Int({ description: "epoch ms" }),
  registeredAt: Int({ description: "epoch ms" }),
  drain: Type.Optional(Type.Boolean({ description: "an operator drained it (draining whenever it is not down)" })),
  vfs: Type.Optional(Nullable(Type.Array(Type.Object({ network: Type.String(), used: Type.Integer(), total: Type.Integer() }), { description: "VFs per network: leased (to an instance or a migration) and usable; null when the host's agent did not answer" }))),
  warnings: Type.Optional(Type.Array(Type.String(), { description: "the host check's warnings the agent sent at its start ('ferry host check --config host.yaml' on the host tells more)" })),
  migration: Type.Optional(Type.Object({ address: Type.String(), tls: Type.Boolean(), identity: Type.Optional(Type.String()) }, { description: "the host's migration network as its agent advertised it; absent: its incoming migrations listen on 127.0.0.1 (same machine only)" })),
  qemu: Type.Optional(Type.Object({ version: Type.String() }, { description: "the host's QEMU, as its agent probed it at start" })),
});
export type HostViewT = Static<typeof HostView>;
export const HostList = Type.Object({ hosts: Type.Array(HostView) });

export const DeviceRow = Type.Object({
  host: Type.String(),
  vf: PciAddress,
  pf: PciAddress,
  network: Type.String(),
  vendor: Type.String(),
  device: Type.String(),
  numaNode: Nullable(Type.Integer()),
  mac: Nullable(Type.String()),
  model: Type.String({ description: "vfio, or stand-in <model>" }),
  lease: Nullable(Type.String()),
  vm: Nullable(Type.String()),
});
export type DeviceRowT = Static<typeof DeviceRow>;
export const DeviceList = Type.Object({ devices: Type.Array(DeviceRow) });
export const DeviceQuery = Type.Object({ host: Type.Optional(Name), network: Type.Optional(Name) }, { additionalProperties: false });

// ---- VMs

const Mode = Type.Union([Type.Literal("failover"), Type.Literal("ephemeral"), Type.Literal("emulated")]);
const Policy = Type.Union([Type.Literal("mandatory"), Type.Literal("requisite"), Type.Literal("optional")]);

export const VmNicView = Type.Object({
  name: Type.String(),
  network: Type.String(),
  mode: Mode,
  policy: Policy,
  mac: Type.String(),
  guestPorts: Type.Object({ standby: Type.Optional(Type.Integer()), primary: Type.Optional(Type.Integer()) }),
  address: Type.String(),
  vf: Nullable(PciAddress),
});
export const VmView = Type.Object({
  uuid: VmUuid,
  name: Type.String(),
  memoryMiB: Type.Integer(),
  vcpus: Type.Integer(),
  host: Type.String(),
  instanceId: Nullable(Type.String()),
  state: Type.Union([Type.Literal("running"), Type.Literal("stopped"), Type.Literal("migrating"), Type.Literal("saved"), Type.Literal("unknown")]),
  noOs: Type.Boolean(),
  guestFillMiB: Type.Optional(Type.Integer()),
  guestDirtyMiBps: Type.Optional(Type.Integer()),
  sharedMemory: Type.Optional(Type.Boolean()),
  ramTrimKiB: Type.Optional(Type.Integer({ description: "KiB the guest's RAM is short of memoryMiB: a guest created or started where QEMU before 9.0 runs under TCG, whose whole-MiB RAM QEMU would migrate with lost writes" })),
  convergence: Type.Optional(Type.Union(ConvergenceRequestSchema.anyOf, { description: "the VM's convergence policy: its migrations run with it unless one asks for another (absent: auto)" })),
  guestPanicked: Type.Optional(Type.Object({ instanceId: Type.String(), at: Type.Integer({ description: "epoch ms" }) }, { description: "the guest's kernel panicked in its current instance (QEMU's GUEST_PANICKED from the pvpanic device, seen by the controller's VM check every few seconds): it runs no more; stop and start the VM to boot it again" })),
  nics: Type.Array(VmNicView),
  seq: Type.Integer(),
  savedAs: Type.Optional(Type.String()),
  createdAt: Type.Integer(),
  updatedAt: Type.Integer(),
});
export type VmViewT = Static<typeof VmView>;
/** What `POST /v1/vms` answers: the VM, and what runs degraded from the start. */
export const CreatedVm = Type.Object({ ...VmView.properties, warnings: Type.Array(Type.String(), { description: "e.g. an optional NIC that got no free VF and runs without one" }) });
export type CreatedVmT = Static<typeof CreatedVm>;
export const VmList = Type.Object({ vms: Type.Array(VmView) });
export const VmParams = Type.Object({ name: Name });

/** A VM's largest memory and vCPU count (the API's bounds; the CLI checks the same). */
export const VM_MAX_MEMORY_MIB = 1024 * 1024;
export const VM_MAX_VCPUS = 256;

export const CreateVmBody = Type.Object(
  {
    name: Type.String(ruled("^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,30}$", "a VM name: 1 to 31 letters, digits, '_', '.' or '-', starting with a letter or digit")),
    host: Name,
    memoryMiB: Type.Integer({ minimum: 64, maximum: VM_MAX_MEMORY_MIB }),
    vcpus: Type.Optional(Type.Integer({ minimum: 1, maximum: VM_MAX_VCPUS })),
    nics: Type.Array(Type.Object({ network: Name, mode: Mode, policy: Policy }, { additionalProperties: false }), { maxItems: 8 }),
    noOs: Type.Optional(Type.Boolean({ description: "start with no OS (the guest never answers unplug requests)" })),
    sharedMemory: Type.Optional(Type.Boolean({ description: "map guest RAM from a shared file on the host, so a local migration (QEMU upgrade in place) copies no RAM" })),
    guestFillMiB: Type.Optional(Type.Integer({ minimum: 1, maximum: 512 * 1024, description: "lab/test guest only: fill this much guest RAM with random data at boot (benchmarks); at most memoryMiB / 2 − 32 (the RAM disk keeps 32 MiB for the guest itself)" })),
    convergence: Type.Optional(Type.Union(ConvergenceRequestSchema.anyOf, { description: "the VM's convergence policy for its migrations (default auto; a migration may ask for another): see POST /v1/migrations" })),
    guestDirtyMiBps: Type.Optional(Type.Integer({ minimum: 0, maximum: 4096, description: "lab/test guest only: keep rewriting this many MiB/s of a RAM region (convergence benchmarks; 0 = none); the region holds one second of writes (64 to 1024 MiB) and takes that plus 17 MiB of the guest's RAM disk (half its RAM)" })),
  },
  { additionalProperties: false },
);
export type CreateVmBodyT = Static<typeof CreateVmBody>;
/** PATCH /v1/vms/:name: the VM's migration policy. */
export const VmPolicyBody = Type.Object(
  { convergence: Type.Union([...ConvergenceRequestSchema.anyOf, Type.Null()], { description: "the VM's convergence policy for its migrations; null: the default (auto)" }) },
  { additionalProperties: false },
);
export type VmPolicyBodyT = Static<typeof VmPolicyBody>;
export const Deleted = Type.Object({ deleted: Type.String() });

// ---- migrations

const DeadlinesInput = Type.Object(
  {
    unplugMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000 })),
    convergeMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000 })),
    precheckMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000 })),
    primaryBackMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000 })),
    stepMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000 })),
  },
  { additionalProperties: false },
);
/** The most a migration's bandwidth cap may be (MiB/s): POST /v1/migrations and the live limits alike. */
export const MIGRATION_MAX_MIBPS = 1024 * 1024;
export const MigrateBody = Type.Object(
  {
    vm: Name,
    to: Type.Optional(Name),
    plan: Type.Optional(Type.Boolean({ description: "only plan: ranked destinations and rejection reasons, nothing changes" })),
    deadlines: Type.Optional(DeadlinesInput),
    convergence: Type.Optional(Type.Union(ConvergenceRequestSchema.anyOf, { description: "auto (default): the source turns auto-converge on when the guest's measured dirty rate is a large part of the bandwidth; off: QEMU's defaults; auto-converge: always" })),
    maxBandwidthMiBps: Type.Optional(Type.Integer({ minimum: 1, maximum: MIGRATION_MAX_MIBPS, description: "cap the migration stream (MiB/s); also the bandwidth the convergence policy weighs the dirty rate against" })),
  },
  { additionalProperties: false },
);
export type MigrateBodyT = Static<typeof MigrateBody>;

/** One NIC's connectivity through a migration (migration/types.ts Connectivity). */
const ConnectivityView = Type.Object(
  {
    probes: Type.Integer({ description: "echo requests sent" }),
    lost: Type.Integer(),
    longestGapMs: Type.Number({ description: "longest time without a reply, from the migration's start until the watch ended (past the end)" }),
    untilStableMs: Type.Optional(Nullable(Type.Number({ description: "ms from the start until the NIC answered steadily again (end of its last outage); 0: no outage; null: not steady within the deadline" }))),
    endMs: Type.Optional(Type.Number({ description: "ms from the start to the migration's end" })),
    watchedMs: Type.Optional(Type.Number({ description: "ms the NIC was watched, from the start" })),
    settleMs: Type.Optional(Type.Number({ description: "how long the NIC had to answer steadily, at least this long past the end" })),
    outageMs: Type.Optional(Type.Number({ description: "a longer time without a reply is an outage" })),
    outAfterEndMs: Type.Optional(Type.Number({ description: "ms after the migration's end covered by outages (one that began before the end counts from the end)" })),
  },
  { additionalProperties: false },
);

/** A migration as GET /v1/migrations/:id answers it: the record, whether the controller still settles or measures it, and RAM progress while it streams. */
export type MigrationViewT = MigrationRecord & { settling?: boolean; measuring?: boolean; progress?: MigrationProgress };

/** A migration record (migration/types.ts); the key fields are checked, the rest passes as the coordinator wrote it. */
export const MigrationView = Type.Unsafe<MigrationViewT>(
  Type.Object(
    {
      id: Type.String(),
      plan: Type.Object({}, { additionalProperties: true }),
      phase: Type.String(),
      outcome: Nullable(Type.String()),
      reason: Nullable(Type.String()),
      code: Nullable(Type.String()),
      refused: Type.Boolean(),
      runsOn: Nullable(Type.Object({ host: Type.String(), instanceId: Type.String() })),
      nics: Type.Array(Type.Object({}, { additionalProperties: true })),
      timings: Type.Object({}, { additionalProperties: true }),
      connectivity: Type.Optional(Type.Record(Type.String(), ConnectivityView, { description: "lab: per NIC, written once every NIC answered steadily past the end (or the watch's deadline)" })),
      switchoverTimeline: Type.Optional(Type.Object(SwitchoverTimeline.properties, { description: "the switch-over's moments (epoch ms, µs precision: QEMU's event timestamps, the agents' clocks for Ferry's own actions) from the source's switchover and the destination's finish answers, and the breakdown derived from them; absent from agents older than it" })),
      settling: Type.Optional(Type.Boolean({ description: "the controller still follows up the outcome (the VM record)" })),
      measuring: Type.Optional(Type.Boolean({ description: "lab: the NICs are still watched until each answers steadily; connectivity comes then" })),
      createdAt: Type.Integer(),
      updatedAt: Type.Integer(),
    },
    { additionalProperties: true },
  ),
);
export const MigrationList = Type.Object({ migrations: Type.Array(MigrationView) });
export const MigrationParams = Type.Object({ id: Name });

export interface PlanReply {
  vm: string;
  source: string;
  destinations: Destination[];
  rejections: Rejection[];
  message: string | null;
  /** Ranked destinations a migration would still be refused to, by a check the scheduler does not make (the migration network's TLS), with the reason. */
  blockers?: { host: string; check: string; message: string }[];
  /** What a migration to a ranked destination would run with, degraded (plain TCP, no migration network). */
  warnings?: { host: string; message: string }[];
  /** Every pre-flight check per ranked destination (migration/preflight.ts), with its status and reason: ok, warning, blocker, unchecked. */
  checks?: { host: string; check: string; status: string; message: string }[];
  /** The guest's dirty rate as measured on its source instance just now (QEMU calc-dirty-rate), or why it was not. */
  dirtyRate?: PlanDirtyRate;
  /** Per ranked destination: the predicted RAM streaming time and downtime, and what the prediction rests on. */
  predictions?: PlanPrediction[];
}

export interface PlanDirtyRate {
  measured: boolean;
  /** MiB/s; 0 when not measured. */
  MiBps: number;
  /** How (e.g. "page-sampling over 1 s on host1"), or why not measured. */
  detail: string;
}

export interface PlanPrediction {
  host: string;
  /** The migration stream's bandwidth the prediction uses (bytes/s) and where it comes from. */
  bandwidth: { bytesPerSec: number; source: "measured" | "default" | "cap"; detail: string };
  downtimeLimitMs: number;
  ramBytes: number;
  converges: boolean;
  /** RAM streaming, start to the guest running on the destination (QEMU's total time); converging only. */
  durationMs?: number;
  /** The paused last pass (QEMU's downtime), at least downtimeFloorMs; converging only. */
  downtimeMs?: number;
  /** The median downtime of the last completed migrations between the two hosts: the switch-over's own cost (device state), under any last pass. */
  downtimeFloorMs?: number;
  passes: number;
  /** Not converging: why, and the pause a forced completion would take. */
  reason?: string;
  forcedDowntimeMs?: number;
  /** What the model leaves out. */
  note: string;
}
export const PlanView = Type.Unsafe<PlanReply>(
  Type.Object(
    {
      vm: Type.String(),
      source: Type.String(),
      destinations: Type.Array(Type.Object({ host: Type.String(), rank: Type.Integer(), score: Type.Number(), complete: Type.Boolean(), nics: Type.Array(Type.Object({}, { additionalProperties: true })), explanation: Type.String() }, { additionalProperties: true })),
      rejections: Type.Array(Type.Object({ host: Type.String(), code: Type.String(), message: Type.String() })),
      message: Nullable(Type.String()),
      blockers: Type.Optional(Type.Array(Type.Object({ host: Type.String(), check: Type.String(), message: Type.String() }))),
      warnings: Type.Optional(Type.Array(Type.Object({ host: Type.String(), message: Type.String() }))),
      checks: Type.Optional(Type.Array(Type.Object({ host: Type.String(), check: Type.String(), status: Type.String(), message: Type.String() }))),
      dirtyRate: Type.Optional(Type.Object({ measured: Type.Boolean(), MiBps: Type.Number(), detail: Type.String() })),
      predictions: Type.Optional(Type.Array(Type.Object({
        host: Type.String(),
        bandwidth: Type.Object({ bytesPerSec: Type.Number(), source: Type.String(), detail: Type.String() }),
        downtimeLimitMs: Type.Number(), ramBytes: Type.Number(), converges: Type.Boolean(),
        durationMs: Type.Optional(Type.Number()), downtimeMs: Type.Optional(Type.Number()), downtimeFloorMs: Type.Optional(Type.Number()), passes: Type.Integer(),
        reason: Type.Optional(Type.String()), forcedDowntimeMs: Type.Optional(Type.Number()), note: Type.String(),
      }, { additionalProperties: true }))),
    },
    { additionalProperties: true },
  ),
);

/** POST /v1/vms/:name/local-migrate: the VM's record and what its agent did. */
export const LocalMigrateView = Type.Object({ vm: VmView, result: LocalMigrateReply, migration: Type.Optional(MigrationView) });
export type LocalMigrateViewT = Static<typeof LocalMigrateView>;

export const MigrateReply = Type.Union([
  Type.Object({ kind: Type.Literal("plan"), plan: PlanView }),
  Type.Object({ kind: Type.Literal("started"), migration: MigrationView }),
]);
export type MigrateReplyT = { kind: "plan"; plan: PlanReply } | { kind: "started"; migration: MigrationRecord };

export const CancelView = Type.Unsafe<CancelReport>(
  Type.Object({ result: Type.String(), message: Type.String(), record: MigrationView }, { additionalProperties: true }),
);

// ---- events

export const EventQuery = Type.Object(
  { follow: Type.Optional(Type.Union([Type.Literal("1"), Type.Literal("0"), Type.Literal("true"), Type.Literal("false")])), after: Type.Optional(Type.String(ruled("^[0-9]{1,15}$", "an event number (digits)"))) },
  { additionalProperties: false },
);
export type EventView = ControllerEvent;
