// The controller's event log in SQLite: every event the controller publishes
// (migration phases and outcomes, hosts up/down, VMs created/moved), so that
// `ferry events` after a controller restart still shows what happened before
// it, and sequence numbers never go back. The newest `keep` rows are kept.
import type { DatabaseSync } from "node:sqlite";
import { FerryError } from "../core/errors.ts";
import type { EventLog, LoggedEvent } from "../model/events.ts";
import { openSqlite } from "./open.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  seq  INTEGER PRIMARY KEY NOT NULL,
  data TEXT NOT NULL,
  at   INTEGER NOT NULL
) STRICT;
`;

/** Events of type E (the controller's: SqliteEventLog<ControllerEvent>), as JSON rows by seq. */
export class SqliteEventLog<E extends LoggedEvent> implements EventLog<E> {
  readonly #db: DatabaseSync;
  readonly #keep: number;
  #sinceTrim = 0;

  constructor(file: string, o: { keep?: number } = {}) {
    // NORMAL: an event lost to a power cut costs a line of history, not a migration's safety
    this.#db = openSqlite(file, SCHEMA, { synchronous: "NORMAL" });
    this.#keep = o.keep ?? 10_000;
  }

  lastSeq(): number {
    const row = this.#db.prepare("SELECT MAX(seq) AS s FROM events").get() as { s: number | null } | undefined;
    return row?.s ?? 0;
  }

  append(e: E): void {
    this.#db.prepare("INSERT INTO events (seq, data, at) VALUES (?, ?, ?)").run(e.seq, JSON.stringify(e), typeof e.at === "number" ? e.at : 0);
    if (++this.#sinceTrim >= 100) {
      this.#sinceTrim = 0;
      this.#db.prepare("DELETE FROM events WHERE seq <= ?").run(e.seq - this.#keep);
    }
  }

  since(after: number, limit: number): E[] {
    // the newest `limit` events after `after`, oldest first
    const rows = this.#db.prepare("SELECT seq, data FROM (SELECT seq, data FROM events WHERE seq > ? ORDER BY seq DESC LIMIT ?) ORDER BY seq").all(after, limit) as { seq: number; data: string }[];
    return rows.map((r) => {
      try {
        return JSON.parse(r.data) as E;
      } catch (e) {
        throw new FerryError("FERRY_ERR_INTERNAL", `event log: event ${r.seq} in the events table is not JSON; the table is history only: delete that row (or the table) and restart the controller`, { cause: e });
      }
    });
  }

  close(): void {
    this.#db.close();
  }
}
