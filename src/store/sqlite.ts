// The embedded store: one SQLite file (node:sqlite, WAL, mode 0600) holding
// migration records (JSON, with a compare-and-swap version) and their
// journals. Calls are synchronous underneath; the interface is async so that
// other backends (etcd) fit it.
import type { DatabaseSync } from "node:sqlite";
import { FerryError } from "../core/errors.ts";
import type { JournalEntry, JournalInput, MigrationRecord } from "../migration/types.ts";
import { isTerminal } from "../migration/types.ts";
import { decode, parseJournalEntry, parseRecord } from "./codec.ts";
import { openSqlite } from "./open.ts";
import type { Store } from "../migration/store-port.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS migrations (
  id         TEXT PRIMARY KEY NOT NULL,
  vm_uuid    TEXT NOT NULL,
  phase      TEXT NOT NULL,
  terminal   INTEGER NOT NULL CHECK (terminal IN (0, 1)),
  version    INTEGER NOT NULL,
  record     TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS migrations_active ON migrations (terminal, created_at);
CREATE TABLE IF NOT EXISTS journal (
  migration_id TEXT NOT NULL REFERENCES migrations (id),
  seq          INTEGER NOT NULL,
  phase        TEXT NOT NULL,
  kind         TEXT NOT NULL CHECK (kind IN ('intent', 'result', 'error')),
  data         TEXT NOT NULL,
  at           INTEGER NOT NULL,
  PRIMARY KEY (migration_id, seq)
) STRICT;
`;

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function json(row: Record<string, unknown>, k: string): unknown {
  const x = row[k];
  if (typeof x !== "string") throw new FerryError("FERRY_ERR_INTERNAL", `store: column ${k} is not text`);
  return JSON.parse(x) as unknown;
}

export interface SqliteStoreOptions {
  /** How long a write waits for another connection's lock (default 5 s). */
  busyTimeoutMs?: number;
}

export class SqliteStore implements Store {
  readonly #db: DatabaseSync;

  /** Open (creating if needed) `file` (directory 0700, file 0600), or ":memory:". */
  constructor(file: string, options: SqliteStoreOptions = {}) {
    // synchronous FULL: a journal entry is on disk before the side effect it announces.
    this.#db = openSqlite(file, SCHEMA, { ...options, synchronous: "FULL" });
  }

  #tx<T>(fn: () => T): T {
    try {
      this.#db.exec("BEGIN IMMEDIATE");
    } catch (e) {
      throw new FerryError("FERRY_ERR_CONFLICT", `store busy: ${message(e)}`, { cause: e, retryable: true });
    }
    try {
      const out = fn();
      this.#db.exec("COMMIT");
      return out;
    } catch (e) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  #record(row: Record<string, unknown>): MigrationRecord {
    return decode("migration record", () => parseRecord(json(row, "record")));
  }

  createMigration(record: MigrationRecord): Promise<MigrationRecord> {
    return Promise.resolve().then(() =>
      this.#tx(() => {
        if (this.#db.prepare("SELECT 1 FROM migrations WHERE id = ?").get(record.id) !== undefined) {
          throw new FerryError("FERRY_ERR_CONFLICT", `migration ${record.id} already exists`, { details: { id: record.id } });
        }
        const stored: MigrationRecord = { ...record, version: 1 };
        this.#db
          .prepare("INSERT INTO migrations (id, vm_uuid, phase, terminal, version, record, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
          .run(stored.id, stored.plan.vm.uuid, stored.phase, isTerminal(stored) ? 1 : 0, 1, JSON.stringify(stored), stored.createdAt, stored.updatedAt);
        return stored;
      }),
    );
  }

  getMigration(id: string): Promise<MigrationRecord | undefined> {
    return Promise.resolve().then(() => {
      const row = this.#db.prepare("SELECT record FROM migrations WHERE id = ?").get(id);
      return row === undefined ? undefined : this.#record(row);
    });
  }

  listMigrations(): Promise<MigrationRecord[]> {
    return Promise.resolve().then(() =>
      this.#db.prepare("SELECT record FROM migrations ORDER BY created_at, id").all().map((r) => this.#record(r)),
    );
  }

  listActiveMigrations(): Promise<MigrationRecord[]> {
    return Promise.resolve().then(() =>
      this.#db.prepare("SELECT record FROM migrations WHERE terminal = 0 ORDER BY created_at, id").all().map((r) => this.#record(r)),
    );
  }

  updateMigration(record: MigrationRecord, expectedVersion: number): Promise<MigrationRecord> {
    return Promise.resolve().then(() =>
      this.#tx(() => {
        const stored: MigrationRecord = { ...record, version: expectedVersion + 1 };
        const res = this.#db
          .prepare("UPDATE migrations SET phase = ?, terminal = ?, version = ?, record = ?, updated_at = ? WHERE id = ? AND version = ?")
          .run(stored.phase, isTerminal(stored) ? 1 : 0, stored.version, JSON.stringify(stored), stored.updatedAt, stored.id, expectedVersion);
        if (Number(res.changes) !== 1) {
          const cur = this.#db.prepare("SELECT version FROM migrations WHERE id = ?").get(record.id);
          if (cur === undefined) throw new FerryError("FERRY_ERR_NOT_FOUND", `migration ${record.id} not found`, { details: { id: record.id } });
          throw new FerryError("FERRY_ERR_CONFLICT", `migration ${record.id} changed (version ${String(cur["version"])}, expected ${expectedVersion})`, {
            retryable: true,
            details: { id: record.id, expectedVersion, version: cur["version"] },
          });
        }
        return stored;
      }),
    );
  }

  appendJournal(entry: JournalInput): Promise<JournalEntry> {
    return Promise.resolve().then(() =>
      this.#tx(() => {
        const last = this.#db.prepare("SELECT MAX(seq) AS seq FROM journal WHERE migration_id = ?").get(entry.migrationId);
        const seq = (typeof last?.["seq"] === "number" || typeof last?.["seq"] === "bigint" ? Number(last["seq"]) : 0) + 1;
        try {
          this.#db
            .prepare("INSERT INTO journal (migration_id, seq, phase, kind, data, at) VALUES (?, ?, ?, ?, ?, ?)")
            .run(entry.migrationId, seq, entry.phase, entry.kind, JSON.stringify(entry.data), entry.at);
        } catch (e) {
          throw new FerryError("FERRY_ERR_NOT_FOUND", `journal: migration ${entry.migrationId}: ${message(e)}`, { cause: e });
        }
        return { ...entry, seq };
      }),
    );
  }

  listJournal(migrationId: string): Promise<JournalEntry[]> {
    return Promise.resolve().then(() =>
      this.#db
        .prepare("SELECT migration_id, seq, phase, kind, data, at FROM journal WHERE migration_id = ? ORDER BY seq")
        .all(migrationId)
        .map((r) =>
          decode("journal entry", () =>
            parseJournalEntry({ migrationId: r["migration_id"], seq: Number(r["seq"]), phase: r["phase"], kind: r["kind"], data: json(r, "data"), at: Number(r["at"]) }),
          ),
        ),
    );
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
