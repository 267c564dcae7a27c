// What the coordinator migrates (the plan, fixed once recorded) and what it
// knows about a migration as it runs (the record, persisted at every step).
// Plain data only: the store keeps it as JSON and validates it on the way in.
import { DOWNTIME_MAX_MS } from "./convergence.ts";
import type { ConvergenceRequest } from "./convergence.ts";
import type { ErrorCode } from "../core/errors.ts";
import type { NicMode, NicPolicy } from "../model/vm.ts";
import type { SwitchoverTimeline } from "./timeline.ts";

/** A VF on a host: its BDF and its parent PF's BDF (the failover standby's uplink derives from the PF). */
export interface VfRef {
  host: string;
  vf: string;
  pf: string;
}

/**
 * One NIC's connectivity through a migration, measured by a peer probing the
 * guest every 10 ms (lab) from the migration's start until the NIC had
 * answered steadily for `settleMs` past the migration's end (or a deadline).
 * The fields after `longestGapMs` are absent in records written before the
 * probes ran past the end.
 */
export interface Connectivity {
  probes: number;
  lost: number;
  /** Longest time without a reply over the whole watch (`watchedMs`), after the end included. */
  longestGapMs: number;
  /**
   * ms from the migration's start until the NIC answered steadily again: the
   * end of its last outage (more than `outageMs` without a reply). 0: no
   * outage at all; null: not steady within the deadline, or the watch was cut
   * short (a next migration of the VM, the controller stopping).
   */
  untilStableMs?: number | null;
  /** ms from the migration's start to its end (the outcome decided). */
  endMs?: number;
  /** ms the NIC was watched, from the migration's start. */
  watchedMs?: number;
  /** The settle window: how long the NIC had to answer steadily, at least this long past the end. */
  settleMs?: number;
  /** More than this without a reply is an outage. */
  outageMs?: number;
  /**
   * How long the NIC was out after the migration's end: the time past `endMs`
   * covered by outages (an outage that began before the end counts from the
   * end). A switchover outage's tail is ≈ 100–150 ms; a NIC that lost its
   * network after the migration (a stale ARP entry: 25–48 s) shows it here.
   */
  outAfterEndMs?: number;
}

export interface NicPlan {
  name: string;
  /** The physical network the NIC's VF pool belongs to. */
  network: string;
  mode: NicMode;
  policy: NicPolicy;
  mac: string;
  /** Guest PCI root-port indexes, identical on both sides. */
  guestPorts: { standby?: number; primary?: number };
  /** The VF the NIC holds on the source; null for emulated NICs (or a NIC already running without its VF). */
  before: VfRef | null;
  /** The VF planned on the destination; null for emulated NICs, or an optional NIC for which none could be reserved. */
  after: VfRef | null;
}

export interface Deadlines {
  /** The guest must release every ephemeral NIC within this (Perform). */
  unplugMs: number;
  /** RAM must converge to pre-switchover within this (Perform). */
  convergeMs: number;
  /** The destination re-check at pre-switchover (the guest is paused: milliseconds). */
  precheckMs: number;
  /** Failover primaries must come back on the destination within this (Finish). */
  primaryBackMs: number;
  /** Any other agent call (and the margin added to the waits above). */
  stepMs: number;
}

/** Set on a migration the coordinator started itself to take a VM back to where it came from. */
export interface MigrationLink {
  kind: "migrate-back";
  /** The migration whose mandatory NIC did not come back. */
  parentId: string;
  /**
   * The parent's source instance, past switchover (its guest never runs
   * again) but still holding the VFs in `nics[].after`: the destination agent
   * stops it if it is still there and moves its leases and features to this
   * migration at Prepare instead of leasing free VFs.
   */
  adoptFrom: { host: string; instanceId: string };
}

/**
 * What a record is of: a migration between hosts (absent: the coordinator
 * runs it), or one agent call on one host recorded when it ended (local
 * migration, save to a file, restore from one: controller/vm-records.ts).
 */
export const RECORD_KINDS = ["migration", "local", "save", "restore"] as const;
export type RecordKind = (typeof RECORD_KINDS)[number];

export interface MigrationPlan {
  /** Also the idempotency key of every agent call. */
  id: string;
  /** Absent: "migration" (between hosts). */
  kind?: RecordKind;
  /** save / restore: the state file's name in the host's saveDir. */
  file?: string;
  /** local: the new instance's QEMU binary. */
  qemuBinary?: string;
  vm: { uuid: string; name: string; memoryMiB: number; vcpus: number };
  source: { host: string; instanceId: string };
  destination: { host: string };
  nics: NicPlan[];
  deadlines: Deadlines;
  /** Cap on the migration stream (bytes/s), passed to the source's perform step (evacuation splits its total over the migrations in flight). */
  maxBandwidthBytes?: number;
  /** The convergence policy asked for (absent: "auto", the source chooses from the guest's dirty rate). */
  convergence?: ConvergenceRequest;
  link?: MigrationLink;
}

export const OUTCOMES = ["succeeded", "degraded", "recovered", "rolled-back", "failed"] as const;
export type Outcome = (typeof OUTCOMES)[number];

export const PHASES = [
  "planned",
  "begin",
  "prepare",
  "perform",
  "precheck",
  "switchover",
  "finish",
  "confirm",
  "migrate-back",
  "cancel",
  "rollback-destination",
  "rollback-source",
  "done",
] as const;
export type Phase = (typeof PHASES)[number];

/** What a NIC has on the host the VM runs on. */
export const NIC_STATUSES = ["pending", "attached", "standby-only", "absent", "emulated"] as const;
export type NicStatus = (typeof NIC_STATUSES)[number];

export interface NicResult {
  name: string;
  policy: NicPolicy;
  status: NicStatus;
  /** The VF the NIC has (status attached), else null. */
  vf: VfRef | null;
  /** Why it has no VF, when it should have one. */
  error?: string;
}

export interface RunsOn {
  host: string;
  instanceId: string;
}

export interface PhaseTiming {
  startedAt: number;
  endedAt?: number;
  ms?: number;
}

/** The outcome decided by the transition that chose a path; it becomes `outcome` when the migration is done. */
export interface Verdict {
  outcome: Outcome;
  reason: string;
  code?: ErrorCode;
  /** Refused before anything changed (no VF for a mandatory/requisite NIC, source not migratable). */
  refused?: boolean;
}

export interface MigrationRecord {
  id: string;
  plan: MigrationPlan;
  /** Compare-and-swap version: bumped by the store on every update. */
  version: number;
  phase: Phase;
  /** Set once phase is "done". */
  outcome: Outcome | null;
  reason: string | null;
  /** A stable error code for a failed, refused or rolled-back migration. */
  code: ErrorCode | null;
  /** True when the migration was refused and nothing changed (outcome "failed"). */
  refused: boolean;
  /** The decided outcome while the migration still converges to it (rollback, confirm). */
  pending: Verdict | null;
  /** Where the VM's vCPUs run (or will run) now; null when unknown (an operator must look). */
  runsOn: RunsOn | null;
  nics: NicResult[];
  /** Set by Prepare: the destination instance and its incoming URI. */
  prepared: { instanceId: string; uri: string } | null;
  /** Set by a successful switchover. */
  switchover: { totalMs: number; downtimeMs: number } | null;
  /**
   * The switch-over's moments as the agents reported them (the source's
   * switchover answer, the destination's finish answer; absent from agents
   * older than them) and the breakdown derived where the moments needed
   * exist (./timeline.ts).
   */
  switchoverTimeline?: SwitchoverTimeline;
  /** True once the switchover completed: failures no longer touch the source's guest. */
  pastPointOfNoReturn: boolean;
  /** An operator asked to cancel (honoured before switchover only). */
  cancelRequested: boolean;
  /** The migrate-back migration started by this one, if any. */
  childId: string | null;
  /** Things left for an operator (cleanup that failed after the outcome was safe). */
  warnings: string[];
  timings: Partial<Record<Phase, PhaseTiming>>;
  /**
   * Rolled back after the source's guest was paused (pre-switchover): how
   * long it was paused before it ran on the source again, as the source's
   * QEMU saw it (STOP → RESUME). A migration that switched over has its
   * downtime in `switchover`.
   */
  pausedMs?: number;
  /** A side that could not be cleaned up when the migration ended (its agent unreachable): retried in the background. */
  cleanup?: Cleanup;
  /** The convergence policy the source chose for this migration, and why (its perform answer). */
  convergence?: ConvergenceRecord;
  /** Bytes the migration moved (QEMU's RAM transferred; a save: the state file's size), when known. */
  dataMovedBytes?: number;
  /** Per NIC, measured by a peer probing the guest every 10 ms through the migration and until stable (lab); written once every NIC is stable, after the outcome. */
  connectivity?: Record<string, Connectivity>;
  createdAt: number;
  updatedAt: number;
}

export interface ConvergenceRecord {
  autoConverge: boolean;
  reason: string;
  /** The guest's dirty rate the source measured before it started (bytes/s). */
  dirtyBytesPerS?: number;
  /** The bandwidth it weighed that against (bytes/s). */
  bandwidthBytesPerS?: number;
  /** The downtime limit QEMU held when RAM converged (ms; Ferry steps it up from 50 ms unless told otherwise: migration/convergence.ts). */
  downtimeLimitMs?: number;
}

export const CLEANUP_STATES = ["pending", "done", "abandoned"] as const;
export type CleanupState = (typeof CLEANUP_STATES)[number];

/** The destination's cleanup (kill the incoming instance, release the migration's VFs) after a rollback that could not reach it. */
export interface Cleanup {
  host: string;
  state: CleanupState;
  /** Epoch ms: the cleanup was handed to the background. */
  since: number;
  /** Epoch ms: done or abandoned. */
  at?: number;
  attempts: number;
  /** The last failure. */
  error?: string;
}

/**
 * The most a migration's downtime limit reaches unless it gives its own:
 * where Ferry's downtime steps end, QEMU's default `downtime-limit` (300 ms;
 * convergence.ts). A pause above it is a warning in the outcome.
 */
export const DOWNTIME_LIMIT_MS = DOWNTIME_MAX_MS;

/** The guest's pause in a migration that ended: QEMU's downtime after a switch-over, else the source's own pause. */
export function downtimeOf(r: Pick<MigrationRecord, "switchover" | "pausedMs">): number | null {
  return r.switchover?.downtimeMs ?? r.pausedMs ?? null;
}

export const TERMINAL_PHASE: Phase = "done";

export function isTerminal(r: Pick<MigrationRecord, "phase">): boolean {
  return r.phase === TERMINAL_PHASE;
}

/** The record of a migration that has not started: runs on the source, every NIC pending. */
export function newRecord(plan: MigrationPlan, now: number): MigrationRecord {
  return {
    id: plan.id,
    plan,
    version: 0,
    phase: "planned",
    outcome: null,
    reason: null,
    code: null,
    refused: false,
    pending: null,
    runsOn: { host: plan.source.host, instanceId: plan.source.instanceId },
    nics: plan.nics.map((n) => ({ name: n.name, policy: n.policy, status: "pending", vf: null })),
    prepared: null,
    switchover: null,
    pastPointOfNoReturn: false,
    cancelRequested: false,
    childId: null,
    warnings: [],
    timings: {},
    createdAt: now,
    updatedAt: now,
  };
}

/** Journal entries: every intent is written before the side effect it announces. */
export const JOURNAL_KINDS = ["intent", "result", "error"] as const;
export type JournalKind = (typeof JOURNAL_KINDS)[number];

export interface JournalEntry {
  migrationId: string;
  /** 1, 2, … per migration. */
  seq: number;
  phase: Phase;
  kind: JournalKind;
  data: Record<string, unknown>;
  at: number;
}

export type JournalInput = Omit<JournalEntry, "seq">;
