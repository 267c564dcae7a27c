// The fault matrix as data (no I/O, no clock): its phases, faults and
// durations, which points the short form (npm test) and the long form
// (npm run test:faults:long) run, and the limits a point's guest must keep
// (how long it may be paused). Unit-tested in plan.unit.test.ts.
import { QEMU_DEFAULT_DOWNTIME_LIMIT_MS } from "../../src/migration/predict.ts";

/**
 * Where the fault lands. Plan: just before the operator's request (the
 * controller plans on facts its heartbeats have not yet corrected); for the
 * controller itself, right after the request was answered (the migration is
 * recorded; its first step may or may not have been sent). Every other
 * phase: the agent's hold point of that step (src/agent/faults.ts), and the
 * controller's record must be in `recordPhase` when the step holds.
 */
export const PHASES = [
  { id: "plan", label: "Plan", hold: null, recordPhase: null },
  { id: "begin", label: "Begin", hold: { step: "begin", on: "source" }, recordPhase: "begin" },
  { id: "prepare", label: "Prepare", hold: { step: "prepare", on: "destination" }, recordPhase: "prepare" },
  { id: "perform", label: "Perform, before pre-switchover", hold: { step: "perform", on: "source" }, recordPhase: "perform" },
  { id: "pre-switchover", label: "Perform, at pre-switchover", hold: { step: "precheck", on: "destination" }, recordPhase: "precheck" },
  { id: "post-switchover", label: "Perform, after pre-switchover", hold: { step: "switchover", on: "source" }, recordPhase: "switchover" },
  { id: "finish", label: "Finish", hold: { step: "finish", on: "destination" }, recordPhase: "finish" },
  { id: "confirm", label: "Confirm", hold: { step: "confirm", on: "source" }, recordPhase: "confirm" },
] as const;
export type PhaseId = (typeof PHASES)[number]["id"];

/**
 * What goes wrong. `*-agent` and `controller`: SIGKILL, started again after
 * the duration. `*-qemu`: SIGKILL (nothing restarts a QEMU: no duration).
 * `*-qemu-stop`: SIGSTOP, SIGCONT after the duration. `cut`: the
 * controller↔agent connection of the host the phase holds on, restored after
 * the duration.
 */
export const FAULT_KINDS = ["controller", "source-agent", "destination-agent", "source-qemu", "destination-qemu", "source-qemu-stop", "destination-qemu-stop", "cut"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export const DURATIONS = ["short", "medium", "long"] as const;
export type Duration = (typeof DURATIONS)[number];

/** The controller's deadlines in the matrix cluster: stepMs small, so that "long" (past it) stays cheap. */
export const MATRIX_DEADLINES = { unplugMs: 10_000, convergeMs: 60_000, precheckMs: 4_000, primaryBackMs: 20_000, stepMs: 10_000 } as const;

/** How long a held fault lasts: short 2 s, medium 6 s, long 4 s past the step deadline. */
export function durationMs(d: Duration, stepMs: number = MATRIX_DEADLINES.stepMs): number {
  switch (d) {
    case "short":
      return 2_000;
    case "medium":
      return 6_000;
    case "long":
      return stepMs + 4_000;
  }
}

const SWITCHED = new Set<PhaseId>(["post-switchover", "finish", "confirm"]);

/** A SIGKILLed QEMU is not started again: the fault has no duration. */
export function held(fault: FaultKind): boolean {
  return fault !== "source-qemu" && fault !== "destination-qemu";
}

/** The point needs a destination QEMU to kill or stop. */
export function applicable(phase: PhaseId, fault: FaultKind): boolean {
  return !((fault === "destination-qemu" || fault === "destination-qemu-stop") && (phase === "plan" || phase === "begin"));
}

/** The fault kills the only QEMU that holds the guest: the VM must be reported down. */
export function guestLost(phase: PhaseId, fault: FaultKind): boolean {
  if (fault === "source-qemu") return !SWITCHED.has(phase);
  if (fault === "destination-qemu") return SWITCHED.has(phase);
  return false;
}

export interface MatrixPoint {
  phase: PhaseId;
  fault: FaultKind;
  /** null: a fault with no duration (a SIGKILLed QEMU). */
  duration: Duration | null;
}

export const pointKey = (p: MatrixPoint): string => `${p.phase}:${p.fault}${p.duration === null ? "" : `:${p.duration}`}`;

/**
 * Long form: every applicable phase × fault, each held fault at every
 * duration. Short form (npm test): every applicable phase × fault once, held
 * faults at the short duration, plus the long points that reproduce issue
 * 20's findings 2–4 (the controller and the destination agent away past the
 * step deadline in Perform).
 */
export function matrixPoints(form: "short" | "long"): MatrixPoint[] {
  const out: MatrixPoint[] = [];
  for (const p of PHASES) {
    for (const fault of FAULT_KINDS) {
      if (!applicable(p.id, fault)) continue;
      if (!held(fault)) out.push({ phase: p.id, fault, duration: null });
      else if (form === "long") for (const d of DURATIONS) out.push({ phase: p.id, fault, duration: d });
      else out.push({ phase: p.id, fault, duration: "short" });
    }
  }
  if (form === "short") {
    out.push({ phase: "perform", fault: "controller", duration: "long" }, { phase: "perform", fault: "destination-agent", duration: "long" });
  }
  return out;
}

/**
 * FERRY_MATRIX_ONLY: comma-separated `phase`, `phase:fault` or
 * `phase:fault:duration`; empty selects everything.
 */
export function selects(only: readonly string[], p: MatrixPoint): boolean {
  if (only.length === 0) return true;
  return only.some((o) => o === p.phase || o === `${p.phase}:${p.fault}` || o === pointKey(p));
}

/** Unknown names in FERRY_MATRIX_ONLY, so that a typo fails loudly instead of running nothing. */
export function unknownSelectors(only: readonly string[]): string[] {
  const phases = new Set<string>(PHASES.map((p) => p.id));
  const faults = new Set<string>(FAULT_KINDS);
  const durations = new Set<string>(DURATIONS);
  return only.filter((o) => {
    const [ph, f, d, ...rest] = o.split(":");
    return rest.length > 0 || !phases.has(ph ?? "") || (f !== undefined && !faults.has(f)) || (d !== undefined && !durations.has(d));
  });
}

/** Slack for a loaded 2-core TCG machine on top of every pause deadline. */
export const PAUSE_SLACK_MS = 2_000;
/** How long the source may wait at pre-switchover beyond the destination check (its own deadline). */
export const SOURCE_MARGIN_MS = 1_000;

/**
 * The longest the guest's vCPUs may stand still at this point. By design no
 * pause waits on the controller or on the connection to it: the source gives
 * up at pre-switchover by itself (precheckMs + its margin). A fault may add
 * its duration only where it stops the one process that can end the pause:
 * the source agent at pre-switchover, the destination agent once the guest
 * waits paused on the destination (post-switchover), or the guest's own QEMU
 * (SIGSTOP) while it holds the guest.
 */
export function pauseBudgetMs(p: MatrixPoint, deadlines: { precheckMs: number; stepMs: number } = MATRIX_DEADLINES): number {
  const base = deadlines.precheckMs + SOURCE_MARGIN_MS + PAUSE_SLACK_MS;
  const d = p.duration === null ? 0 : durationMs(p.duration, deadlines.stepMs);
  const stopsResumer =
    (p.phase === "pre-switchover" && p.fault === "source-agent") ||
    (p.phase === "post-switchover" && p.fault === "destination-agent") ||
    (p.fault === "source-qemu-stop" && !SWITCHED.has(p.phase)) ||
    (p.fault === "destination-qemu-stop" && SWITCHED.has(p.phase));
  return base + (stopsResumer ? d : 0);
}

/** A record's downtime above its limit must carry a warning that says so (issue 20, Deliver 1). */
export function downtimeViolation(rec: { switchover: { downtimeMs: number } | null; warnings: readonly string[]; plan: object }): string | null {
  if (rec.switchover === null) return null;
  const plan = rec.plan as { downtimeLimitMs?: unknown; deadlines?: { downtimeLimitMs?: unknown } };
  const raw = plan.downtimeLimitMs ?? plan.deadlines?.downtimeLimitMs;
  const limit = typeof raw === "number" ? raw : QEMU_DEFAULT_DOWNTIME_LIMIT_MS;
  if (rec.switchover.downtimeMs <= limit) return null;
  if (rec.warnings.some((w) => /downtime/i.test(w))) return null;
  return `downtime ${rec.switchover.downtimeMs} ms is above the limit of ${limit} ms, and the record has no warning saying so`;
}

/** Intervals (start, end) in which the guest's vCPUs ran nowhere, from samples of "runs somewhere": true, false or unknown (null). */
export interface RunSample {
  at: number;
  running: boolean | null;
}

/**
 * The longest time no instance ran, from ordered samples. An unknown sample
 * (the agent did not answer) continues the state last seen; a pause still
 * going on at the last sample ends there.
 */
export function longestPause(samples: readonly RunSample[]): { ms: number; from: number | null } {
  let since: number | null = null;
  let state: boolean | null = null;
  let best = { ms: 0, from: null as number | null };
  for (const s of samples) {
    const now: boolean | null = s.running ?? state;
    if (now === false && state !== false) since = s.at;
    if (now === true && state === false && since !== null) {
      if (s.at - since > best.ms) best = { ms: s.at - since, from: since };
      since = null;
    }
    state = now;
  }
  const last = samples.at(-1);
  if (state === false && since !== null && last && last.at - since > best.ms) best = { ms: last.at - since, from: since };
  return best;
}

/**
 * The longest time between consecutive new heartbeats (host receive times)
 * of the real guest, which prints one every 100 ms while it runs; with
 * `endAt`, a guest silent since its last heartbeat counts until then.
 */
export function longestHeartbeatGap(beats: readonly { at: number; n: number }[], endAt?: number): number {
  let best = 0;
  for (let i = 1; i < beats.length; i++) best = Math.max(best, beats[i]!.at - beats[i - 1]!.at);
  const last = beats.at(-1);
  if (last && endAt !== undefined) best = Math.max(best, endAt - last.at);
  return best;
}
