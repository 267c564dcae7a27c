// A transition applied to the migration record: the table's effects
// (verdict, where the VM runs, warnings, a cleanup left to the background),
// the phase's timings, the outcome at "done"; one compare-and-swap write,
// then the events.
import { isFerryError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { cleanUpInBackground } from "./cleanup.ts";
import type { RunnerDeps, StepOutcome } from "./runner-deps.ts";
import type { Effect, Transition, Where } from "./table.ts";
import { nicsOnSource } from "./table.ts";
import type { MigrationRecord, RunsOn } from "./types.ts";
import { DOWNTIME_LIMIT_MS, downtimeOf } from "./types.ts";

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
export async function apply(rec: MigrationRecord, out: StepOutcome, row: Transition, deps: RunnerDeps, log: Logger): Promise<void> {
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
