// Migrations that have ended, as this host knows them (its state file, so
// that a restart remembers). A migration ends here when its last step on
// this host is done (confirm on the source, abort on the destination): that
// same step asked again answers again (the coordinator re-sends a step whose
// answer it lost), every other step of it is refused. Once the controller
// says the migration has ended (heartbeat.ts), every step of it is refused:
// an old request replayed after later migrations changes nothing.
import { FerryError } from "../../core/errors.ts";
import type { RecordStore } from "../../host/leases.ts";

const NS = "migration-ended";
/** Ended migrations the controller confirmed are forgotten after this (a replay older than that finds no state to act on either). */
export const ENDED_KEEP_MS = 7 * 24 * 3_600_000;

interface EndedRecord {
  at: number;
  /** The step that ended the migration here, and its answer. */
  step?: string;
  answer?: unknown;
  /** The controller said the migration has ended: every step of it is refused. */
  confirmed?: true;
}

function read(records: RecordStore, id: string): EndedRecord | undefined {
  const x = records.get(NS, id);
  if (typeof x !== "object" || x === null) return undefined;
  const o = x as Record<string, unknown>;
  return {
    at: typeof o["at"] === "number" ? o["at"] : 0,
    ...(typeof o["step"] === "string" ? { step: o["step"] } : {}),
    ...("answer" in o ? { answer: o["answer"] } : {}),
    ...(o["confirmed"] === true ? { confirmed: true as const } : {}),
  };
}

/**
 * Before a step of migration `id`: undefined when the migration has not
 * ended here (do the step); `{ answer }` when this very step ended it (answer
 * again, do nothing). Otherwise FERRY_ERR_STATE: the step is refused.
 */
export function endedGuard(records: RecordStore, host: string, id: string, step: string): { answer: unknown } | undefined {
  const e = read(records, id);
  if (!e) return undefined;
  if (e.confirmed !== true && e.step === step) return { answer: e.answer };
  const why = e.confirmed === true ? "the controller reports it ended" : `its ${e.step ?? "last"} step was done here`;
  throw new FerryError("FERRY_ERR_STATE", `migration ${id} has ended on host ${host} (${why}): its ${step} step is refused and nothing was changed; a late or replayed step of an ended migration never acts: start a new migration ('ferry migrate')`, {
    details: { migrationId: id, step, host },
  });
}

/** `step` ended migration `id` on this host with `answer` (asked again, the same step answers the same). */
export function markEnded(records: RecordStore, now: number, id: string, step: string, answer: unknown): void {
  const e = read(records, id);
  if (e?.confirmed === true) return;
  records.put(NS, id, { at: now, step, answer } satisfies EndedRecord);
}

/** The controller says migration `id` has ended: from now on every step of it is refused. */
export function confirmEnded(records: RecordStore, now: number, id: string): void {
  records.put(NS, id, { at: now, confirmed: true } satisfies EndedRecord);
}

/** Ended here, not yet confirmed by the controller (the agent keeps asking about these). */
export function unconfirmedEnded(records: RecordStore): string[] {
  return records.list(NS).filter((r) => read(records, r.key)?.confirmed !== true).map((r) => r.key);
}

/** Forget confirmed ended migrations older than ENDED_KEEP_MS; returns how many. */
export function pruneEnded(records: RecordStore, now: number): number {
  let n = 0;
  for (const r of records.list(NS)) {
    const e = read(records, r.key);
    if (e?.confirmed === true && now - e.at > ENDED_KEEP_MS && records.delete(NS, r.key)) n++;
  }
  return n;
}
