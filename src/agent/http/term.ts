// Fencing on the agent's side: a controller's call carries its leadership
// term (TERM_HEADER); the agent keeps the highest term it has seen in its
// state file and refuses a call with an older one (FERRY_ERR_STALE_TERM,
// nothing done). So a controller that was leader, was paused or cut off past
// its lease while another took over, and then wakes, changes nothing on a
// host. A call without the header (ferry host tools, tests) is not fenced.
import type { FastifyRequest } from "fastify";
import { FerryError } from "../../core/errors.ts";
import type { RecordStore } from "../../host/leases.ts";
import { parseTerm, TERM_HEADER } from "../../wire/controllers.ts";

const NS = "fencing";
const KEY = "term";

/** The highest term this agent has seen (0: none yet). */
export function highestTerm(records: RecordStore): number {
  const x = records.get(NS, KEY);
  return typeof x === "object" && x !== null && "term" in x && typeof x.term === "number" ? x.term : 0;
}

/** An onRequest hook (after the token check): refuse an older term, remember a newer one. */
export function termGuard(records: RecordStore) {
  return (req: FastifyRequest): Promise<void> => {
    const raw = req.headers[TERM_HEADER];
    if (raw === undefined) return Promise.resolve();
    const term = typeof raw === "string" ? parseTerm(raw) : undefined;
    if (term === undefined) {
      return Promise.reject(new FerryError("FERRY_ERR_INVALID", `${TERM_HEADER}: must be a positive integer, the calling controller's leadership term (got ${JSON.stringify(raw)})`, { details: { field: TERM_HEADER, value: raw } }));
    }
    // synchronous read and write in one process: no other request runs in between
    const seen = highestTerm(records);
    if (term < seen) {
      return Promise.reject(new FerryError("FERRY_ERR_STALE_TERM", `${req.method} ${req.url} refused, nothing done: it comes with leadership term ${term}, and this agent has seen term ${seen}: the calling controller no longer leads (it was paused or cut off past its lease and another took over; 'ferry controllers' shows the leader)`, { details: { term, seen } }));
    }
    if (term > seen) records.put(NS, KEY, { term });
    return Promise.resolve();
  };
}
