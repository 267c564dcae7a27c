// A step as a call through the AgentPort, and what its answer (fresh, or
// read back from the journal) means for the table: an event, and what the
// record gets from it.
import type { ErrorCode } from "../core/errors.ts";
import { ERROR_CODES, FerryError } from "../core/errors.ts";
import type { AgentPort } from "./port.ts";
import { checked } from "../core/check.ts";
import { DestinationMoments, SourceMoments, withMoments } from "./timeline.ts";
import type { RunnerDeps, StepOutcome } from "./runner-deps.ts";
import type { Step } from "./table.ts";
import { classifyFinish } from "./table.ts";
import type { MigrationRecord } from "./types.ts";
import { isTerminal } from "./types.ts";

export function call(s: Step, rec: MigrationRecord, port: AgentPort, signal: AbortSignal): Promise<unknown> {
  const plan = rec.plan;
  switch (s) {
    case "begin":
      return port.begin(plan, signal);
    case "prepare":
      return port.prepare(plan, signal);
    case "perform": {
      if (!rec.prepared) return Promise.reject(new FerryError("FERRY_ERR_STATE", `migration ${rec.id}: perform before prepare`));
      return port.perform(plan, rec.prepared.uri, signal);
    }
    case "precheck":
      return port.precheck(plan, signal);
    case "switchover":
      return port.switchover(plan, signal);
    case "finish":
      return port.finish(plan, signal);
    case "confirm-success":
      return port.confirmSource(plan, true, signal);
    case "confirm-failure":
      return port.confirmSource(plan, false, signal);
    case "abort-destination":
      return port.abortDestination(plan, signal);
    case "cancel-source":
      return port.cancelSource(plan, signal);
    case "check-plan":
    case "migrate-back":
      return Promise.reject(new FerryError("FERRY_ERR_INTERNAL", `step ${s} is not an agent call`));
  }
}

/**
 * A step that must complete (attempts > 1: finish, confirm, cancel, the
 * rollbacks) whose agent could not be reached (restarting, a cut connection)
 * is retried for up to stepMs after its first failure, not just `attempts`
 * times: a few seconds of an agent's absence must not turn a rollback that
 * would succeed into "the source did not confirm it runs again".
 */
export function unreachableWithinBudget(rec: MigrationRecord, attempts: number, errors: readonly { at: number; data: Record<string, unknown> }[], now: number): boolean {
  const first = errors[0];
  const last = errors.at(-1);
  if (attempts <= 1 || !first || !last || last.data["code"] !== "FERRY_ERR_AGENT") return false;
  return now - first.at < rec.plan.deadlines.stepMs;
}

export function codeOf(x: unknown): ErrorCode | undefined {
  return typeof x === "string" && Object.hasOwn(ERROR_CODES, x) ? (x as ErrorCode) : undefined;
}

function bad(rec: MigrationRecord, s: Step, value: unknown): FerryError {
  return new FerryError("FERRY_ERR_AGENT", `migration ${rec.id}: malformed ${s} answer: ${JSON.stringify(value)?.slice(0, 200)}`);
}

function field(value: unknown, k: string): unknown {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)[k] : undefined;
}

/** The convergence policy the source chose, from its perform answer or its not-converged error's details (unknown either way). */
function convergenceOf(c: unknown): MigrationRecord["convergence"] {
  const autoConverge = field(c, "autoConverge");
  const reason = field(c, "reason");
  if (typeof autoConverge !== "boolean" || typeof reason !== "string") return undefined;
  const dirty = field(c, "dirtyBytesPerS");
  const bw = field(c, "bandwidthBytesPerS");
  const limit = field(c, "downtimeLimitMs");
  return { autoConverge, reason, ...(typeof dirty === "number" ? { dirtyBytesPerS: dirty } : {}), ...(typeof bw === "number" ? { bandwidthBytesPerS: bw } : {}), ...(typeof limit === "number" ? { downtimeLimitMs: limit } : {}) };
}

/** What a failed step's error carries into its journal entry beside code and message: perform's not-converged error, the source's policy. */
export function errorFacts(s: Step, details: Record<string, unknown>): Record<string, unknown> {
  const convergence = s === "perform" ? convergenceOf(details["convergence"]) : undefined;
  return convergence === undefined ? {} : { convergence };
}

/** The record patch of a step that failed for good, from its last journaled error (errorFacts): the policy of a perform that did not converge goes into the record as a converged one's does. */
export function errorPatch(data: Record<string, unknown>): StepOutcome["patch"] {
  const convergence = convergenceOf(data["convergence"]);
  return convergence === undefined ? undefined : { convergence };
}

/** A step's answer (fresh, or from the journal: unknown either way) as an event. */
export async function outcomeOf(rec: MigrationRecord, s: Step, value: unknown, deps: RunnerDeps): Promise<StepOutcome> {
  switch (s) {
    case "prepare": {
      const instanceId = field(value, "instanceId");
      const uri = field(value, "uri");
      if (typeof instanceId !== "string" || typeof uri !== "string") return { event: "failed", detail: bad(rec, s, value).message, code: "FERRY_ERR_AGENT" };
      return { event: "ok", patch: { prepared: { instanceId, uri } } };
    }
    case "perform": {
      const convergence = convergenceOf(field(value, "convergence"));
      return convergence === undefined ? { event: "ok" } : { event: "ok", patch: { convergence } };
    }
    case "precheck": {
      const ok = field(value, "ok");
      const reason = field(value, "reason");
      return ok === true ? { event: "ok" } : { event: "failed", detail: typeof reason === "string" ? reason : "the destination said no" };
    }
    case "switchover": {
      const totalMs = field(value, "totalMs");
      const downtimeMs = field(value, "downtimeMs");
      const source = checked(SourceMoments, field(value, "timeline"));
      return { event: "ok", patch: { switchover: typeof totalMs === "number" && typeof downtimeMs === "number" ? { totalMs, downtimeMs } : null, ...(source ? { switchoverTimeline: withMoments(rec.switchoverTimeline, { source }) } : {}) } };
    }
    case "finish": {
      const nics = field(value, "nics");
      if (!Array.isArray(nics)) return { event: "failed", detail: bad(rec, s, value).message, code: "FERRY_ERR_AGENT" };
      const result = {
        nics: nics.map((n: unknown) => {
          const error = field(n, "error");
          return { name: String(field(n, "name")), attached: field(n, "attached") === true, ...(typeof error === "string" ? { error } : {}) };
        }),
      };
      const c = classifyFinish(rec.plan, result);
      const missing = c.nics.filter((n) => n.error !== undefined).map((n) => `${n.name} (${n.policy}): ${n.error ?? ""}`);
      const destination = checked(DestinationMoments, field(value, "timeline"));
      const timeline = destination ? { switchoverTimeline: withMoments(rec.switchoverTimeline, { destination }) } : {};
      // the migration moved the guest, but its kernel died there (pvpanic): the outcome stands, the record says so
      const panickedAt = field(value, "guestPanickedAt");
      const panicked = typeof panickedAt === "number" ? { warnings: [...rec.warnings, guestPanickedWarning(rec.plan.destination.host, panickedAt, destination?.resumedAtMs)] } : {};
      return { event: c.event, patch: { nics: c.nics, ...timeline, ...panicked }, ...(missing.length > 0 ? { detail: missing.join(", ") } : {}) };
    }
    case "confirm-failure": {
      // the source's QEMU exited: nothing runs the guest any more
      if (field(value, "state") === "gone") return { event: "failed", detail: "the source's QEMU exited: the guest is lost", code: "FERRY_ERR_GUEST_LOST" };
      const pausedMs = field(value, "pausedMs");
      return typeof pausedMs === "number" ? { event: "ok", patch: { pausedMs } } : { event: "ok" };
    }
    case "cancel-source":
      return value === "completed" ? { event: "completed", detail: "the source reports the migration completed" } : { event: "ok", detail: `source: ${String(value)}` };
    case "migrate-back": {
      const childId = field(value, "childId");
      const back = typeof childId === "string" ? await deps.store.getMigration(childId) : undefined;
      if (!back || !isTerminal(back)) return { event: "failed", detail: `migrate-back ${String(childId)} not found or not done` };
      return backOutcome(rec, back);
    }
    default:
      return { event: "ok" };
  }
}

export function backOutcome(rec: MigrationRecord, back: MigrationRecord): StepOutcome {
  const ok = back.outcome === "succeeded" || back.outcome === "degraded";
  // Rolled back before its switchover: the VM stays on this migration's destination, NICs as Finish left them.
  const nics = back.pastPointOfNoReturn ? back.nics : rec.nics;
  return { event: ok ? "ok" : "failed", detail: `${back.id}: ${back.outcome ?? "?"}: ${back.reason ?? ""}`, back, patch: { nics, childId: back.id } };
}

/** The warning of a guest whose kernel panicked on the destination by the end of finish. */
export function guestPanickedWarning(host: string, panickedAt: number, resumedAtMs: number | undefined): string {
  const when = resumedAtMs === undefined ? "" : ` ${Math.max(0, Math.round(panickedAt - resumedAtMs))} ms after it resumed there`;
  return `the guest's kernel panicked on ${host}${when} (QEMU's GUEST_PANICKED, from the guest's pvpanic device): the migration moved it, but it does not run; its console log on ${host} says why; 'ferry vm stop' then 'ferry vm start' boots it again`;
}
