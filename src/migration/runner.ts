// The durable coordinator: runs a migration to a terminal outcome, level-
// triggered. Each turn re-reads the record and the journal and converges:
// a step whose result is journaled is not sent again; a step whose intent is
// journaled without a result is re-sent (agents are idempotent by migration
// id); then the table says where to go. Every intent is journaled before the
// call it announces, every phase is persisted (compare-and-swap) before the
// next step starts, every step has a deadline. A controller that restarts
// calls resumeAll() and every migration continues where it was.
import type { Clock } from "../core/clock.ts";
import { abortError, withSignal } from "../core/deadline.ts";
import type { ErrorCode } from "../core/errors.ts";
import { ERROR_CODES, FerryError, isFerryError, toFerryError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Store } from "./store-port.ts";
import { backMigrationId, migrateBackPlan } from "./back.ts";
import type { AgentPort } from "./port.ts";
import type { Effect, MigrationEvent, Step, Transition, Where } from "./table.ts";
import { cancellable, checkPlan, classifyFinish, failureEvent, nicsOnSource, PHASE_SPECS, stepDeadlineMs, transition } from "./table.ts";
import type { CleanupState, MigrationPlan, MigrationRecord, NicResult, Outcome, Phase, RunsOn } from "./types.ts";
import { DOWNTIME_LIMIT_MS, downtimeOf, isTerminal, newRecord } from "./types.ts";

/** What the coordinator tells the event stream, after it is persisted. */
export type CoordinatorEvent =
  | { type: "phase"; migrationId: string; from: Phase; to: Phase; event: MigrationEvent; at: number }
  | { type: "outcome"; migrationId: string; outcome: Outcome; reason: string; code: ErrorCode | null; runsOn: RunsOn | null; at: number }
  | { type: "nic-degraded" | "nic-missing"; migrationId: string; nic: string; policy: NicResult["policy"]; status: NicResult["status"]; error: string | undefined; at: number }
  | { type: "step"; migrationId: string; phase: Phase; step: Step; attempt: number; resent: boolean; at: number }
  | { type: "step-failed"; migrationId: string; phase: Phase; step: Step; attempt: number; code: ErrorCode; message: string; at: number }
  | { type: "warning"; migrationId: string; text: string; at: number }
  | { type: "cleanup"; migrationId: string; host: string; state: CleanupState; attempts: number; error: string | undefined; at: number }
  | { type: "cancel-requested"; migrationId: string; phase: Phase; at: number };

export interface RunnerDeps {
  store: Store;
  port: AgentPort;
  clock: Clock;
  log: Logger;
  /** Stops the runner (not the migration): it rejects with FERRY_ERR_ABORTED and a later run resumes. */
  signal?: AbortSignal;
  onEvent?: (e: CoordinatorEvent) => void;
  /** First pause before retrying a failed step (doubled each time, at most 10 s). Default 500 ms. */
  retryBackoffMs?: number;
}

interface Running {
  promise: Promise<MigrationRecord>;
  /** Aborts the step in flight (operator cancel). */
  step: AbortController | null;
}

// One runner per migration per store handle in this process; a second call joins it.
const registries = new WeakMap<Store, Map<string, Running>>();
function registry(store: Store): Map<string, Running> {
  let r = registries.get(store);
  if (!r) {
    r = new Map();
    registries.set(store, r);
  }
  return r;
}

/** Record a new migration (phase planned). FERRY_ERR_CONFLICT if the id exists. */
export function createMigration(plan: MigrationPlan, deps: Pick<RunnerDeps, "store" | "clock">): Promise<MigrationRecord> {
  return deps.store.createMigration(newRecord(plan, deps.clock.now()));
}

/** Run (or resume, or join the run of) a migration to its terminal outcome. */
export function runMigration(id: string, deps: RunnerDeps): Promise<MigrationRecord> {
  const reg = registry(deps.store);
  const existing = reg.get(id);
  if (existing) return existing.promise;
  const running: Running = { promise: Promise.resolve(undefined as never), step: null };
  running.promise = converge(id, deps, running).finally(() => reg.delete(id));
  reg.set(id, running);
  return running.promise;
}

export interface ResumeResult {
  id: string;
  record?: MigrationRecord;
  error?: FerryError;
}

/** After a restart: run every migration not yet done (a migrate-back is driven by its parent). */
export async function resumeAll(deps: RunnerDeps): Promise<ResumeResult[]> {
  const active = await deps.store.listActiveMigrations();
  const ids = new Set(active.map((r) => r.id));
  const roots = active.filter((r) => !(r.plan.link && ids.has(r.plan.link.parentId)));
  deps.log.info({ count: roots.length }, "resuming migrations");
  for (const r of await deps.store.listMigrations()) if (r.cleanup?.state === "pending") cleanUpInBackground(r.id, deps);
  return Promise.all(
    roots.map((r) =>
      runMigration(r.id, deps).then(
        (record): ResumeResult => ({ id: r.id, record }),
        (e: unknown): ResumeResult => ({ id: r.id, error: toFerryError(e) }),
      ),
    ),
  );
}

export interface CancelReport {
  /**
   * cancelled: rolled back, the VM runs on the source. completed: it was past
   * the point of no return (or got there first) and was finished. failed: it
   * ended failed. already-done: it had ended before the cancel.
   */
  result: "cancelled" | "completed" | "failed" | "already-done";
  message: string;
  record: MigrationRecord;
}

/**
 * Best-effort cancel, reporting what happened. Before switchover: mark the
 * record, abort the step in flight, roll back (outcome rolled-back, reason
 * "cancelled by operator"). From switchover on: too late; the migration is
 * finished instead. Resolves when the migration is done.
 */
export async function cancel(id: string, deps: RunnerDeps): Promise<CancelReport> {
  const { store, clock } = deps;
  let note = "";
  for (;;) {
    const rec = await store.getMigration(id);
    if (!rec) throw new FerryError("FERRY_ERR_NOT_FOUND", `migration ${id} not found`, { details: { id } });
    if (isTerminal(rec)) return { result: "already-done", message: `migration already ended: ${rec.outcome ?? "?"} (${rec.reason ?? ""})`, record: rec };
    if (rec.cancelRequested) break;
    if (!cancellable(rec.phase)) {
      note = rec.pastPointOfNoReturn || ["switchover", "finish", "confirm", "migrate-back"].includes(rec.phase)
        ? `too late to cancel: the migration is past the point of no return (phase ${rec.phase}); finishing it`
        : `already rolling back (phase ${rec.phase})`;
      break;
    }
    try {
      await store.updateMigration({ ...rec, cancelRequested: true, updatedAt: clock.now() }, rec.version);
    } catch (e) {
      if (isFerryError(e, "FERRY_ERR_CONFLICT")) continue;
      throw e;
    }
    deps.onEvent?.({ type: "cancel-requested", migrationId: id, phase: rec.phase, at: clock.now() });
    registry(store).get(id)?.step?.abort(new FerryError("FERRY_ERR_CANCELLED", `migration ${id}: cancelled by operator`));
    break;
  }
  const final = await runMigration(id, deps);
  const result: CancelReport["result"] = final.outcome === "rolled-back" ? "cancelled" : final.outcome === "failed" ? "failed" : "completed";
  const message = [note, `${final.outcome ?? "?"}: ${final.reason ?? ""}`].filter((s) => s !== "").join("; ");
  return { result, message, record: final };
}

// ---------------------------------------------------------------------------

interface StepOutcome {
  event: MigrationEvent;
  /** Appended to the verdict's reason or a warning. */
  detail?: string;
  code?: ErrorCode;
  patch?: Partial<Pick<MigrationRecord, "prepared" | "switchover" | "nics" | "childId" | "pausedMs">>;
  /** The finished migrate-back (phase migrate-back). */
  back?: MigrationRecord;
}

/** Something moved under us (cancel, a conflicting write): re-read and converge again. */
const AGAIN = Symbol("again");

function stopped(deps: RunnerDeps, id: string): FerryError | undefined {
  return deps.signal?.aborted ? abortError(deps.signal, `migration ${id}: runner`) : undefined;
}

async function converge(id: string, deps: RunnerDeps, running: Running): Promise<MigrationRecord> {
  const { store } = deps;
  for (;;) {
    const stop = stopped(deps, id);
    if (stop) throw stop;
    const rec = await store.getMigration(id);
    if (!rec) throw new FerryError("FERRY_ERR_NOT_FOUND", `migration ${id} not found`, { details: { id } });
    if (isTerminal(rec)) return rec;
    const log = deps.log.child({ migrationId: id, vm: rec.plan.vm.name, phase: rec.phase });
    let out: StepOutcome | typeof AGAIN;
    if (rec.cancelRequested && cancellable(rec.phase)) out = { event: "cancel-requested" };
    else out = await step(rec, deps, running, log);
    if (out === AGAIN) continue;
    const row = transition(rec.phase, out.event);
    if (!row) throw new FerryError("FERRY_ERR_INTERNAL", `migration ${id}: no transition for ${rec.phase} × ${out.event}`);
    await apply(rec, out, row, deps, log);
  }
}

function isStep(x: unknown): x is Step {
  return typeof x === "string";
}

async function step(rec: MigrationRecord, deps: RunnerDeps, running: Running, log: Logger): Promise<StepOutcome | typeof AGAIN> {
  const spec = PHASE_SPECS[rec.phase];
  const s = spec.step;
  if (s === null) throw new FerryError("FERRY_ERR_INTERNAL", `migration ${rec.id}: no step in phase ${rec.phase}`);
  if (s === "check-plan") {
    const c = checkPlan(rec.plan);
    return c.event === "ok" ? { event: "ok" } : { event: c.event, detail: c.detail };
  }
  const { store, clock } = deps;
  const entries = (await store.listJournal(rec.id)).filter((e) => e.phase === rec.phase && isStep(e.data["step"]));
  const done = entries.findLast((e) => e.kind === "result");
  if (done) return outcomeOf(rec, s, done.data["value"], deps);
  const errors = entries.filter((e) => e.kind === "error");
  const lastError = errors.at(-1);
  if (lastError && errors.length >= spec.attempts && !unreachableWithinBudget(rec, spec.attempts, errors, clock.now())) {
    const code = codeOf(lastError.data["code"]);
    return { event: failureEvent(rec.phase, code), detail: String(lastError.data["message"]), code };
  }
  const resent = entries.at(-1)?.kind === "intent";
  if (errors.length > 0 && !resent) {
    // past its attempts (an unreachable agent, see unreachableWithinBudget) the step is re-sent every 2 s at most
    const ms = Math.min((deps.retryBackoffMs ?? 500) * 2 ** (errors.length - 1), errors.length >= spec.attempts ? 2_000 : 10_000);
    try {
      await clock.sleep(ms, deps.signal);
    } catch {
      throw stopped(deps, rec.id) ?? new FerryError("FERRY_ERR_ABORTED", `migration ${rec.id}: backoff interrupted`);
    }
  }
  const attempt = errors.length + 1;
  if (s === "migrate-back") return migrateBack(rec, deps, resent, log);

  await journal(deps, rec, "intent", { step: s, attempt, resent });
  deps.onEvent?.({ type: "step", migrationId: rec.id, phase: rec.phase, step: s, attempt, resent, at: clock.now() });
  log.info({ step: s, attempt, resent }, resent ? "re-sending step" : "step");
  const ms = stepDeadlineMs(rec.phase, rec.plan.deadlines);
  const cancelCtl = new AbortController();
  running.step = cancelCtl;
  const signals = [cancelCtl.signal, ...(ms === undefined ? [] : [clock.timeout(ms)]), ...(deps.signal ? [deps.signal] : [])];
  const signal = AbortSignal.any(signals);
  let value: unknown;
  try {
    value = await withSignal(call(s, rec, deps.port, signal), signal, `${rec.phase} (${s})`);
  } catch (e) {
    const stop = stopped(deps, rec.id);
    if (stop) throw stop;
    if (cancelCtl.signal.aborted) return AGAIN;
    const err = toFerryError(e, "FERRY_ERR_AGENT");
    await journal(deps, rec, "error", { step: s, attempt, code: err.code, message: err.message });
    deps.onEvent?.({ type: "step-failed", migrationId: rec.id, phase: rec.phase, step: s, attempt, code: err.code, message: err.message, at: clock.now() });
    log.warn({ step: s, attempt, code: err.code, err: err.message }, "step failed");
    // a rollback does not wait on a dead destination: its cleanup goes on in the background (cleanUpInBackground)
    if (s === "abort-destination" && err.code === "FERRY_ERR_AGENT") return { event: "unreachable", detail: err.message, code: err.code };
    return AGAIN;
  } finally {
    running.step = null;
  }
  await journal(deps, rec, "result", { step: s, value: value ?? null });
  return outcomeOf(rec, s, value ?? null, deps);
}

async function journal(deps: RunnerDeps, rec: MigrationRecord, kind: "intent" | "result" | "error", data: Record<string, unknown>): Promise<void> {
  await deps.store.appendJournal({ migrationId: rec.id, phase: rec.phase, kind, data, at: deps.clock.now() });
}

function call(s: Step, rec: MigrationRecord, port: AgentPort, signal: AbortSignal): Promise<unknown> {
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
function unreachableWithinBudget(rec: MigrationRecord, attempts: number, errors: readonly { at: number; data: Record<string, unknown> }[], now: number): boolean {
  const first = errors[0];
  const last = errors.at(-1);
  if (attempts <= 1 || !first || !last || last.data["code"] !== "FERRY_ERR_AGENT") return false;
  return now - first.at < rec.plan.deadlines.stepMs;
}

function codeOf(x: unknown): ErrorCode | undefined {
  return typeof x === "string" && Object.hasOwn(ERROR_CODES, x) ? (x as ErrorCode) : undefined;
}

function bad(rec: MigrationRecord, s: Step, value: unknown): FerryError {
  return new FerryError("FERRY_ERR_AGENT", `migration ${rec.id}: malformed ${s} answer: ${JSON.stringify(value)?.slice(0, 200)}`);
}

function field(value: unknown, k: string): unknown {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)[k] : undefined;
}

/** A step's answer (fresh, or from the journal: unknown either way) as an event. */
async function outcomeOf(rec: MigrationRecord, s: Step, value: unknown, deps: RunnerDeps): Promise<StepOutcome> {
  switch (s) {
    case "prepare": {
      const instanceId = field(value, "instanceId");
      const uri = field(value, "uri");
      if (typeof instanceId !== "string" || typeof uri !== "string") return { event: "failed", detail: bad(rec, s, value).message, code: "FERRY_ERR_AGENT" };
      return { event: "ok", patch: { prepared: { instanceId, uri } } };
    }
    case "precheck": {
      const ok = field(value, "ok");
      const reason = field(value, "reason");
      return ok === true ? { event: "ok" } : { event: "failed", detail: typeof reason === "string" ? reason : "the destination said no" };
    }
    case "switchover": {
      const totalMs = field(value, "totalMs");
      const downtimeMs = field(value, "downtimeMs");
      return { event: "ok", patch: { switchover: typeof totalMs === "number" && typeof downtimeMs === "number" ? { totalMs, downtimeMs } : null } };
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
      return { event: c.event, patch: { nics: c.nics }, ...(missing.length > 0 ? { detail: missing.join(", ") } : {}) };
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

function backOutcome(rec: MigrationRecord, back: MigrationRecord): StepOutcome {
  const ok = back.outcome === "succeeded" || back.outcome === "degraded";
  // Rolled back before its switchover: the VM stays on this migration's destination, NICs as Finish left them.
  const nics = back.pastPointOfNoReturn ? back.nics : rec.nics;
  return { event: ok ? "ok" : "failed", detail: `${back.id}: ${back.outcome ?? "?"}: ${back.reason ?? ""}`, back, patch: { nics, childId: back.id } };
}

/** Policy row 4, mandatory: run the linked migration back to the source, wait for its outcome. */
async function migrateBack(rec: MigrationRecord, deps: RunnerDeps, resent: boolean, log: Logger): Promise<StepOutcome | typeof AGAIN> {
  const { store, clock } = deps;
  const childId = backMigrationId(rec.id);
  if (!resent) await journal(deps, rec, "intent", { step: "migrate-back", childId, attempt: 1, resent });
  let child = await store.getMigration(childId);
  if (!child) {
    let plan: MigrationPlan;
    try {
      plan = migrateBackPlan(rec);
    } catch (e) {
      const err = toFerryError(e);
      await journal(deps, rec, "error", { step: "migrate-back", attempt: 1, code: err.code, message: err.message });
      return AGAIN;
    }
    log.warn({ childId }, "a mandatory NIC did not come back: migrating back to the source");
    try {
      child = await createMigration(plan, deps);
    } catch (e) {
      if (!isFerryError(e, "FERRY_ERR_CONFLICT")) throw e;
      return AGAIN;
    }
  }
  if (rec.childId !== childId) {
    try {
      await store.updateMigration({ ...rec, childId, updatedAt: clock.now() }, rec.version);
    } catch (e) {
      if (!isFerryError(e, "FERRY_ERR_CONFLICT")) throw e;
    }
    return AGAIN;
  }
  const back = await runMigration(childId, deps);
  await journal(deps, rec, "result", { step: "migrate-back", value: { childId, outcome: back.outcome } });
  return backOutcome(rec, back);
}

function resolve(where: Where, rec: MigrationRecord, out: StepOutcome): RunsOn | null {
  switch (where) {
    case "source":
      return { ...rec.plan.source };
    case "destination":
      return rec.prepared ? { host: rec.plan.destination.host, instanceId: rec.prepared.instanceId } : null;
    case "back":
      return out.back ? out.back.runsOn : rec.runsOn;
    case "unknown":
      return null;
  }
}

function withDetail(text: string, detail: string | undefined): string {
  return detail ? `${text}: ${detail}` : text;
}

/** Apply a transition: one compare-and-swap write, then the events. A conflict just means: converge again. */
async function apply(rec: MigrationRecord, out: StepOutcome, row: Transition, deps: RunnerDeps, log: Logger): Promise<void> {
  const now = deps.clock.now();
  const next: MigrationRecord = structuredClone({ ...rec, ...out.patch });
  const started = next.timings[rec.phase];
  if (started) next.timings[rec.phase] = { ...started, endedAt: now, ms: now - started.startedAt };
  next.timings[row.next] = { startedAt: now };
  next.phase = row.next;
  next.updatedAt = now;
  const emits: Extract<Effect, { kind: "emit-nics" }>["event"][] = [];
  const warnings: string[] = [];
  let background = false;
  for (const e of row.effects) {
    switch (e.kind) {
      case "verdict":
        next.pending = {
          outcome: e.outcome,
          reason: withDetail(e.reason, out.detail),
          ...(e.code ?? out.code ? { code: e.code ?? out.code } : {}),
          ...(e.refused ? { refused: true } : {}),
        };
        break;
      case "clear-verdict":
        next.pending = null;
        break;
      case "runs-on":
        next.runsOn = resolve(e.where, next, out);
        break;
      case "point-of-no-return":
        next.pastPointOfNoReturn = true;
        break;
      case "emit-nics":
        emits.push(e.event);
        break;
      case "warn":
        warnings.push(withDetail(e.text, out.detail));
        break;
      case "cleanup-in-background":
        next.cleanup = { host: rec.plan.destination.host, state: "pending", since: now, attempts: 1, ...(out.detail === undefined ? {} : { error: out.detail }) };
        background = true;
        break;
    }
  }
  next.warnings.push(...warnings);
  if (row.next === "done") {
    const v = next.pending ?? { outcome: "failed" as const, reason: "internal: no outcome decided" };
    next.outcome = v.outcome;
    next.reason = v.reason;
    next.code = v.code ?? null;
    next.refused = v.refused === true;
    const src = rec.plan.source;
    if (next.runsOn && next.runsOn.host === src.host && next.runsOn.instanceId === src.instanceId) next.nics = nicsOnSource(rec.plan);
    const downtime = downtimeOf(next);
    if (downtime !== null && downtime > DOWNTIME_LIMIT_MS) {
      warnings.push(`the guest was paused ${downtime} ms${next.switchover ? "" : " on the source"}, above its downtime limit of ${DOWNTIME_LIMIT_MS} ms`);
      next.warnings.push(warnings.at(-1)!);
    }
  }
  try {
    await deps.store.updateMigration(next, rec.version);
  } catch (e) {
    if (isFerryError(e, "FERRY_ERR_CONFLICT")) {
      log.info({ event: out.event }, "record changed meanwhile; converging again");
      return;
    }
    throw e;
  }
  const emit = deps.onEvent ?? ((): void => undefined);
  emit({ type: "phase", migrationId: rec.id, from: rec.phase, to: row.next, event: out.event, at: now });
  if (background && next.cleanup) {
    emit({ type: "cleanup", migrationId: rec.id, host: next.cleanup.host, state: "pending", attempts: next.cleanup.attempts, error: next.cleanup.error, at: now });
    cleanUpInBackground(rec.id, deps);
  }
  log.info({ event: out.event, next: row.next }, "phase");
  for (const kind of emits) {
    for (const n of next.nics) {
      const missing = n.status === "standby-only" || n.status === "absent";
      if (missing && (kind === "nic-degraded" || n.policy === "mandatory")) {
        emit({ type: kind, migrationId: rec.id, nic: n.name, policy: n.policy, status: n.status, error: n.error, at: now });
      }
    }
  }
  for (const text of warnings) emit({ type: "warning", migrationId: rec.id, text, at: now });
  if (next.outcome !== null) {
    emit({ type: "outcome", migrationId: rec.id, outcome: next.outcome, reason: next.reason ?? "", code: next.code, runsOn: next.runsOn, at: now });
    log.info({ outcome: next.outcome, reason: next.reason }, "migration ended");
  }
}

// ---------------------------------------------------------------------------
// The destination's cleanup after a rollback that could not reach it

const cleaning = new WeakMap<Store, Set<string>>();

/**
 * Retry a rolled-back migration's abort-destination (kill the incoming
 * instance, release the migration's VFs) until its agent answers, with
 * backoff, for as long as the migration's leases could live (after that the
 * agent reaps them itself); each change is written to record.cleanup and
 * told to the event stream. The migration's outcome does not wait for it.
 * A restarted controller picks pending cleanups up again (resumeAll).
 */
export function cleanUpInBackground(id: string, deps: RunnerDeps): void {
  let mine = cleaning.get(deps.store);
  if (!mine) {
    mine = new Set();
    cleaning.set(deps.store, mine);
  }
  if (mine.has(id)) return;
  const running = mine;
  running.add(id);
  void retryCleanup(id, deps)
    .catch((e: unknown) => deps.log.warn({ migrationId: id, err: toFerryError(e).message }, "background cleanup stopped"))
    .finally(() => running.delete(id));
}

async function retryCleanup(id: string, deps: RunnerDeps): Promise<void> {
  const { store, clock, port } = deps;
  let wait = deps.retryBackoffMs ?? 500;
  for (;;) {
    await clock.sleep(wait, deps.signal);
    wait = Math.min(wait * 2, 10_000);
    const rec = await store.getMigration(id);
    const c = rec?.cleanup;
    if (!rec || !c || c.state !== "pending") return;
    const d = rec.plan.deadlines;
    const budgetMs = d.unplugMs + d.convergeMs + d.primaryBackMs + 10 * d.stepMs;
    let state: CleanupState = "pending";
    let error: string | undefined;
    try {
      await port.abortDestination(rec.plan, AbortSignal.any([clock.timeout(d.stepMs), ...(deps.signal ? [deps.signal] : [])]));
      state = "done";
    } catch (e) {
      if (deps.signal?.aborted) return;
      if (isFerryError(e, "FERRY_ERR_STATE") && e.details["migrationId"] === id) {
        // the agent came back and has already reconciled the ended migration (heartbeat):
        // nothing of it is left there, and it refuses every further step of it
        state = "done";
      } else {
        error = toFerryError(e, "FERRY_ERR_AGENT").message;
        if (clock.now() - c.since > budgetMs) state = "abandoned";
      }
    }
    const now = clock.now();
    const cleanup = { ...c, state, attempts: c.attempts + 1, ...(state === "pending" ? {} : { at: now }), ...(error === undefined ? {} : { error }) };
    if (state === "done") delete cleanup.error;
    const warnings = state === "pending" ? rec.warnings : [...rec.warnings, state === "done"
      ? `destination cleanup on ${c.host} done in the background after ${cleanup.attempts} attempts (${now - c.since} ms)`
      : `destination cleanup on ${c.host} abandoned after ${cleanup.attempts} attempts: its agent reaps the migration's instance and VFs when their leases expire`];
    try {
      await store.updateMigration({ ...rec, cleanup, warnings, updatedAt: now }, rec.version);
    } catch (e) {
      if (!isFerryError(e, "FERRY_ERR_CONFLICT")) throw e;
      continue;
    }
    if (state !== "pending" || cleanup.attempts % 5 === 0) {
      deps.onEvent?.({ type: "cleanup", migrationId: id, host: c.host, state, attempts: cleanup.attempts, error, at: now });
      deps.log.info({ migrationId: id, host: c.host, state, attempts: cleanup.attempts }, "destination cleanup");
    }
    if (state !== "pending") return;
  }
}
