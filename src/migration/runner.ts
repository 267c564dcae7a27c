// The durable coordinator: runs a migration to a terminal outcome, level-
// triggered. Each turn re-reads the record and the journal and converges:
// a step whose result is journaled is not sent again; a step whose intent is
// journaled without a result is re-sent (agents are idempotent by migration
// id); then the table says where to go. Every intent is journaled before the
// call it announces, every phase is persisted (compare-and-swap) before the
// next step starts, every step has a deadline. A controller that restarts
// calls resumeAll() and every migration continues where it was. (Its parts:
// step-answers.ts reads a step's answer, apply.ts writes a transition,
// cleanup.ts retries a cleanup in the background; runner-deps.ts, shared.)
import { abortError, withSignal } from "../core/deadline.ts";
import { FerryError, isFerryError, toFerryError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { apply } from "./apply.ts";
import { backMigrationId, migrateBackPlan } from "./back.ts";
import { cleanUpInBackground } from "./cleanup.ts";
import type { RunnerDeps, StepOutcome } from "./runner-deps.ts";
import { backOutcome, call, codeOf, errorFacts, errorPatch, outcomeOf, unreachableWithinBudget } from "./step-answers.ts";
import type { Store } from "./store-port.ts";
import type { Step } from "./table.ts";
import { cancellable, checkPlan, failureEvent, PHASE_SPECS, stepDeadlineMs, transition } from "./table.ts";
import type { MigrationPlan, MigrationRecord } from "./types.ts";
import { isTerminal, newRecord } from "./types.ts";

export type { CoordinatorEvent, RunnerDeps } from "./runner-deps.ts";
export { cleanUpInBackground } from "./cleanup.ts";

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

// ---- converging one migration

/** Something moved under us (cancel, a conflicting write): re-read and converge again. */
const AGAIN = Symbol("again");

function stopped(deps: RunnerDeps, id: string): FerryError | undefined {
  return deps.signal?.aborted ? abortError(deps.signal, `migration ${id}: runner`) : undefined;
}

/**
 * A store failure the store may get over in a moment (FERRY_ERR_INTERNAL
 * from the store with details.transient: etcd electing a leader, no member
 * answering): not one of the migration's own, not one that would fail again
 * the same way, and not FERRY_ERR_NOT_LEADER (another controller leads now
 * and resumes it).
 */
function isStoreHiccup(e: unknown): boolean {
  return isFerryError(e, "FERRY_ERR_INTERNAL") && e.details["store"] !== undefined && e.details["transient"] === true;
}

/** The longest wait between two tries of a migration stopped by a store hiccup. */
const STORE_AGAIN_MAX_MS = 5_000;

async function converge(id: string, deps: RunnerDeps, running: Running): Promise<MigrationRecord> {
  const { store } = deps;
  let hiccups = 0;
  for (;;) {
    const stop = stopped(deps, id);
    if (stop) throw stop;
    try {
      const rec = await store.getMigration(id);
      if (!rec) throw new FerryError("FERRY_ERR_NOT_FOUND", `migration ${id} not found`, { details: { id } });
      if (isTerminal(rec)) return rec;
      const log = deps.log.child({ migrationId: id, vm: rec.plan.vm.name, phase: rec.phase });
      let out: StepOutcome | typeof AGAIN;
      if (rec.cancelRequested && cancellable(rec.phase)) out = { event: "cancel-requested" };
      else out = await step(rec, deps, running, log);
      if (out !== AGAIN) {
        const row = transition(rec.phase, out.event);
        if (!row) throw new FerryError("FERRY_ERR_INTERNAL", `migration ${id}: no transition for ${rec.phase} × ${out.event}`);
        await apply(rec, out, row, deps, log);
      }
      hiccups = 0;
    } catch (e) {
      // A write or read the store failed for a moment (an etcd leader change): go on from the record and its
      // journal, as a restarted controller does — a write that did apply is read back, one that did not is
      // done again (steps are resent, as after a restart). Without this the migration stopped half way until
      // this controller restarted or lost its leadership.
      if (!isStoreHiccup(e) || deps.signal?.aborted === true) throw e;
      hiccups++;
      const ms = Math.min((deps.retryBackoffMs ?? 500) * 2 ** (hiccups - 1), STORE_AGAIN_MAX_MS);
      deps.log.warn({ migrationId: id, attempt: hiccups, err: (e as Error).message, againInMs: ms }, "store hiccup: going on with the migration from its record");
      await deps.clock.sleep(ms, deps.signal).catch(() => undefined); // stopped: the loop's check says so
    }
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
    const patch = errorPatch(lastError.data);
    return { event: failureEvent(rec.phase, code), detail: String(lastError.data["message"]), code, ...(patch === undefined ? {} : { patch }) };
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
    await journal(deps, rec, "error", { step: s, attempt, code: err.code, message: err.message, ...errorFacts(s, err.details) });
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

