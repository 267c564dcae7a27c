// The destination's cleanup after a rollback that could not reach it: its
// abort-destination retried in the background until the agent answers.
import type { CleanupState } from "./types.ts";
import { isFerryError, toFerryError } from "../core/errors.ts";
import type { RunnerDeps } from "./runner-deps.ts";
import type { Store } from "./store-port.ts";

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
