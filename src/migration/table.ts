// The migration state machine as data: (phase, event) → { next, effects }.
// Pure: no I/O, no clock. The runner performs each phase's step, turns its
// result into an event with the classifiers below, and applies the row.
//
// Happy path: planned → begin → prepare → perform → precheck → switchover →
// finish → confirm → done. Before a successful switchover every failure
// rolls back to the source (cancel → rollback-destination → rollback-source);
// after it, failures never touch the source's guest: only its leases, which
// it keeps until confirm so that migrate-back has somewhere to go.
import type { ErrorCode } from "../core/errors.ts";
import type { Deadlines, MigrationPlan, NicResult, NicStatus, Outcome, Phase } from "./types.ts";
import type { FinishResult } from "./port.ts";

export const EVENTS = [
  "ok",
  "failed",
  /** Nothing changed and nothing will: no VF for a mandatory/requisite NIC. */
  "refused",
  "unplug-timeout",
  /** Finish: a requisite/optional NIC has no VF. */
  "degraded",
  /** Finish: a mandatory NIC did not come back (migrate back). */
  "mandatory-missing",
  /** Finish of a migrate-back: a mandatory NIC did not come back either (no third migration). */
  "mandatory-lost",
  /** Finish: the destination QEMU exited after the switch-over (the guest is lost). */
  "guest-lost",
  /** Cancel found that the migration completed anyway. */
  "completed",
  "cancel-requested",
  /** The source got no switch-over decision in time at pre-switchover: it cancelled and resumed the guest itself. */
  "source-gave-up",
  /** Rollback: the destination's agent did not answer; its cleanup goes on in the background. */
  "unreachable",
] as const;
export type MigrationEvent = (typeof EVENTS)[number];

/** Where the VM runs after a transition: resolved by the runner to a host and instance. */
export type Where = "source" | "destination" | "back" | "unknown";

export type Effect =
  /** Decide the outcome the migration converges to (applied when it is done). */
  | { kind: "verdict"; outcome: Outcome; reason: string; code?: ErrorCode; refused?: true }
  /** Forget the decided outcome (cancel found the migration completed anyway). */
  | { kind: "clear-verdict" }
  | { kind: "runs-on"; where: Where }
  /** The switchover completed: from now on no failure touches the source's guest. */
  | { kind: "point-of-no-return" }
  /** Tell the event stream about NICs without their VF (requisite/optional: degraded; mandatory: migrating back). */
  | { kind: "emit-nics"; event: "nic-degraded" | "nic-missing" }
  | { kind: "warn"; text: string }
  /** Hand the destination's cleanup to the background (its agent is unreachable): retried, reported in the record and the event stream. */
  | { kind: "cleanup-in-background" };

export interface Transition {
  next: Phase;
  effects: readonly Effect[];
}

export const STEPS = [
  "check-plan",
  "begin",
  "prepare",
  "perform",
  "precheck",
  "switchover",
  "finish",
  "confirm-success",
  "migrate-back",
  "cancel-source",
  "abort-destination",
  "confirm-failure",
] as const;
export type Step = (typeof STEPS)[number];

export interface PhaseSpec {
  /** What the runner does in this phase; null for the terminal phase. */
  step: Step | null;
  /** The step's deadline: the sum of these plan deadlines (none: the step bounds itself). */
  deadline: readonly (keyof Deadlines)[];
  /** Failures of the step tolerated (retried with backoff) before the "failed" event. */
  attempts: number;
}

export const PHASE_SPECS: Readonly<Record<Phase, PhaseSpec>> = {
  planned: { step: "check-plan", deadline: [], attempts: 1 },
  begin: { step: "begin", deadline: ["stepMs"], attempts: 1 },
  prepare: { step: "prepare", deadline: ["stepMs"], attempts: 1 },
  perform: { step: "perform", deadline: ["unplugMs", "convergeMs", "stepMs"], attempts: 1 },
  precheck: { step: "precheck", deadline: ["precheckMs"], attempts: 1 },
  switchover: { step: "switchover", deadline: ["stepMs"], attempts: 1 },
  // Past the point of no return: the guest is paused on the destination until
  // finish answers, so it is retried before giving up.
  finish: { step: "finish", deadline: ["primaryBackMs", "stepMs"], attempts: 3 },
  confirm: { step: "confirm-success", deadline: ["stepMs"], attempts: 3 },
  // The second migration has its own step deadlines.
  "migrate-back": { step: "migrate-back", deadline: [], attempts: 1 },
  cancel: { step: "cancel-source", deadline: ["stepMs"], attempts: 2 },
  "rollback-destination": { step: "abort-destination", deadline: ["stepMs"], attempts: 3 },
  "rollback-source": { step: "confirm-failure", deadline: ["stepMs"], attempts: 3 },
  done: { step: null, deadline: [], attempts: 0 },
};

const cancelled = { kind: "verdict", outcome: "rolled-back", reason: "cancelled by operator", code: "FERRY_ERR_CANCELLED" } as const;
const gaveUp = {
  kind: "verdict", outcome: "rolled-back", code: "FERRY_ERR_SOURCE_GAVE_UP",
  reason: "the source got no switch-over decision in time at pre-switchover (the controller was away): it cancelled the migration and resumed the guest itself",
} as const;

export const TABLE: Readonly<Record<Phase, Readonly<Partial<Record<MigrationEvent, Transition>>>>> = {
  planned: {
    ok: { next: "begin", effects: [] },
    // Policy row 1 (mandatory, requisite), at Plan: nothing was touched.
    refused: { next: "done", effects: [{ kind: "verdict", outcome: "failed", reason: "refused: no VF reserved on the destination", code: "FERRY_ERR_NO_VF", refused: true }] },
    failed: { next: "done", effects: [{ kind: "verdict", outcome: "failed", reason: "refused: invalid plan", code: "FERRY_ERR_INVALID", refused: true }] },
    "cancel-requested": { next: "done", effects: [cancelled] },
  },
  begin: {
    ok: { next: "prepare", effects: [] },
    // The source refused (or did not answer): undo the freeze, nothing else happened.
    failed: { next: "rollback-source", effects: [{ kind: "verdict", outcome: "failed", reason: "refused by the source", refused: true }] },
    "cancel-requested": { next: "rollback-source", effects: [cancelled] },
  },
  prepare: {
    ok: { next: "perform", effects: [] },
    // Policy row 1 (mandatory, requisite), at Prepare: a planned VF is gone.
    refused: { next: "rollback-destination", effects: [{ kind: "verdict", outcome: "failed", reason: "refused: no VF could be leased on the destination", code: "FERRY_ERR_NO_VF", refused: true }] },
    failed: { next: "rollback-destination", effects: [{ kind: "verdict", outcome: "rolled-back", reason: "prepare failed on the destination" }] },
    "cancel-requested": { next: "rollback-destination", effects: [cancelled] },
  },
  perform: {
    ok: { next: "precheck", effects: [] },
    // Policy row 2 (every policy): cancel, source intact.
    "unplug-timeout": { next: "cancel", effects: [{ kind: "verdict", outcome: "rolled-back", reason: "the guest did not release a NIC before the unplug deadline", code: "FERRY_ERR_UNPLUG_TIMEOUT" }] },
    failed: { next: "cancel", effects: [{ kind: "verdict", outcome: "rolled-back", reason: "perform failed on the source" }] },
    // A re-sent perform (the controller came back) found that the source had given up at pre-switchover.
    "source-gave-up": { next: "cancel", effects: [gaveUp] },
    "cancel-requested": { next: "cancel", effects: [cancelled] },
  },
  precheck: {
    ok: { next: "switchover", effects: [] },
    // Policy row 3 (every policy): cancel, source intact.
    failed: { next: "cancel", effects: [{ kind: "verdict", outcome: "rolled-back", reason: "destination check failed at pre-switchover", code: "FERRY_ERR_PRECHECK" }] },
    "cancel-requested": { next: "cancel", effects: [cancelled] },
  },
  // No cancel-requested row from here on: the phase is persisted before
  // migrate-continue is sent, so an operator's cancel is too late.
  switchover: {
    ok: { next: "finish", effects: [{ kind: "point-of-no-return" }, { kind: "runs-on", where: "destination" }] },
    // Unknown whether it completed: cancel asks the source, which says.
    failed: { next: "cancel", effects: [{ kind: "verdict", outcome: "rolled-back", reason: "switchover failed", code: "FERRY_ERR_MIGRATION" }] },
    // Too late: the source's own deadline at pre-switchover passed first; the guest runs on the source again.
    "source-gave-up": { next: "cancel", effects: [gaveUp] },
  },
  finish: {
    ok: { next: "confirm", effects: [{ kind: "verdict", outcome: "succeeded", reason: "migrated" }] },
    // Policy row 4 (requisite, optional), and optional NICs that had no VF at Plan.
    degraded: { next: "confirm", effects: [{ kind: "verdict", outcome: "degraded", reason: "migrated; some NICs run without their VF", code: "FERRY_ERR_REPLUG" }, { kind: "emit-nics", event: "nic-degraded" }] },
    // Policy row 4 (mandatory): migrate back; the source still holds its leases.
    "mandatory-missing": { next: "migrate-back", effects: [{ kind: "emit-nics", event: "nic-missing" }] },
    "mandatory-lost": { next: "confirm", effects: [{ kind: "verdict", outcome: "failed", reason: "a mandatory NIC did not come back after migrating back", code: "FERRY_ERR_REPLUG" }, { kind: "emit-nics", event: "nic-missing" }] },
    // The guest ran on the destination, whose QEMU then exited: resuming the source would take the guest back
    // in time (its disks moved on), so the source's stale copy is stopped and its VFs released; the VM is down.
    "guest-lost": { next: "confirm", effects: [{ kind: "verdict", outcome: "failed", reason: "the destination QEMU exited after the switch-over: the guest is lost (the source's stale copy is stopped, not resumed); start the VM again", code: "FERRY_ERR_GUEST_LOST" }, { kind: "runs-on", where: "unknown" }] },
    // The destination does not answer: keep the source's leases for an operator (no confirm).
    failed: { next: "done", effects: [{ kind: "verdict", outcome: "failed", reason: "finish failed on the destination; the source instance and its leases are kept for an operator" }] },
  },
  confirm: {
    ok: { next: "done", effects: [] },
    failed: { next: "done", effects: [{ kind: "warn", text: "source cleanup (stop instance, release leases) incomplete" }] },
  },
  "migrate-back": {
    ok: { next: "confirm", effects: [{ kind: "verdict", outcome: "recovered", reason: "a mandatory NIC did not come back; migrated back to the source", code: "FERRY_ERR_REPLUG" }, { kind: "runs-on", where: "back" }] },
    failed: { next: "confirm", effects: [{ kind: "verdict", outcome: "failed", reason: "a mandatory NIC did not come back and migrating back failed", code: "FERRY_ERR_REPLUG" }, { kind: "runs-on", where: "back" }] },
  },
  cancel: {
    ok: { next: "rollback-destination", effects: [] },
    completed: { next: "finish", effects: [{ kind: "clear-verdict" }, { kind: "point-of-no-return" }, { kind: "runs-on", where: "destination" }] },
    // Killing the destination (never resumed) makes completion impossible; the source then resumes.
    failed: { next: "rollback-destination", effects: [{ kind: "warn", text: "cancel on the source failed; the destination is killed so the migration cannot complete" }] },
  },
  "rollback-destination": {
    ok: { next: "rollback-source", effects: [] },
    failed: { next: "rollback-source", effects: [{ kind: "warn", text: "destination cleanup (kill instance, release leases) incomplete" }] },
    // Its agent is down or cut off: the source (already running its guest again, cancel-source) is not kept
    // waiting for it; the cleanup is retried in the background and reported (record.cleanup, event).
    unreachable: { next: "rollback-source", effects: [{ kind: "warn", text: "destination host unreachable: its cleanup (kill the incoming instance, release the migration's VFs) is retried in the background" }, { kind: "cleanup-in-background" }] },
  },
  "rollback-source": {
    ok: { next: "done", effects: [{ kind: "runs-on", where: "source" }] },
    failed: { next: "done", effects: [{ kind: "verdict", outcome: "failed", reason: "rollback: the source did not confirm it runs again" }, { kind: "runs-on", where: "unknown" }] },
  },
  done: {},
};

export function transition(phase: Phase, event: MigrationEvent): Transition | undefined {
  return TABLE[phase][event];
}

/** An operator's cancel is honoured in this phase (before the switchover is sent). */
export function cancellable(phase: Phase): boolean {
  return TABLE[phase]["cancel-requested"] !== undefined;
}

/** The step deadline of a phase for a plan, in ms (undefined: the step bounds itself). */
export function stepDeadlineMs(phase: Phase, d: Deadlines): number | undefined {
  const keys = PHASE_SPECS[phase].deadline;
  return keys.length === 0 ? undefined : keys.reduce((sum, k) => sum + d[k], 0);
}

const needsVf = (n: MigrationPlan["nics"][number]): boolean => n.mode !== "emulated";

/** Planned: refuse a plan that lacks a VF for a mandatory or requisite NIC (policy row 1 at Plan). */
export function checkPlan(plan: MigrationPlan): { event: "ok" } | { event: "refused" | "failed"; detail: string } {
  if (plan.nics.length !== new Set(plan.nics.map((n) => n.name)).size) return { event: "failed", detail: "duplicate NIC names" };
  const missing = plan.nics.filter((n) => needsVf(n) && n.after === null && n.policy !== "optional");
  if (missing.length > 0) {
    return { event: "refused", detail: missing.map((n) => `${n.name} (${n.policy}, network ${n.network})`).join(", ") };
  }
  return { event: "ok" };
}

/** The event a step failure is, by phase and error code. */
export function failureEvent(phase: Phase, code: ErrorCode | undefined): MigrationEvent {
  if (phase === "prepare" && (code === "FERRY_ERR_NO_VF" || code === "FERRY_ERR_LEASE_HELD")) return "refused";
  if (phase === "perform" && code === "FERRY_ERR_UNPLUG_TIMEOUT") return "unplug-timeout";
  if (phase === "finish" && code === "FERRY_ERR_GUEST_LOST") return "guest-lost";
  if ((phase === "perform" || phase === "switchover") && code === "FERRY_ERR_SOURCE_GAVE_UP") return "source-gave-up";
  return "failed";
}

const withoutVf = (mode: MigrationPlan["nics"][number]["mode"]): NicStatus => (mode === "failover" ? "standby-only" : "absent");

/** The NICs as they are on the source (before, or after a rollback). */
export function nicsOnSource(plan: MigrationPlan): NicResult[] {
  return plan.nics.map((n) => ({
    name: n.name,
    policy: n.policy,
    status: n.mode === "emulated" ? "emulated" : n.before ? "attached" : withoutVf(n.mode),
    vf: n.mode === "emulated" ? null : n.before,
  }));
}

/** Finish: what each NIC has on the destination, and the event the policies make of it (policy row 4). */
export function classifyFinish(plan: MigrationPlan, result: FinishResult): { event: MigrationEvent; nics: NicResult[] } {
  const reported = new Map(result.nics.map((n) => [n.name, n]));
  let mandatoryMissing = false;
  let missing = false;
  const nics = plan.nics.map((n): NicResult => {
    if (n.mode === "emulated") return { name: n.name, policy: n.policy, status: "emulated", vf: null };
    if (n.after === null) {
      missing = true;
      return { name: n.name, policy: n.policy, status: withoutVf(n.mode), vf: null, error: "no VF reserved on the destination" };
    }
    const r = reported.get(n.name);
    if (r?.attached) return { name: n.name, policy: n.policy, status: "attached", vf: n.after };
    missing = true;
    if (n.policy === "mandatory") mandatoryMissing = true;
    return { name: n.name, policy: n.policy, status: withoutVf(n.mode), vf: null, error: r?.error ?? "not reported by the destination" };
  });
  const event: MigrationEvent = mandatoryMissing ? (plan.link ? "mandatory-lost" : "mandatory-missing") : missing ? "degraded" : "ok";
  return { event, nics };
}
