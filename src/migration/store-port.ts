// What the coordinator needs from a store: its port, beside the runner that
// uses it. Backends (src/store/): SQLite (embedded); etcd later for several
// controllers. Every backend passes the contract suite in src/store/contract.ts.
import type { JournalEntry, JournalInput, MigrationRecord } from "./types.ts";

export interface Store {
  /** Insert a new migration at version 1. FERRY_ERR_CONFLICT if the id exists. */
  createMigration(record: MigrationRecord): Promise<MigrationRecord>;
  getMigration(id: string): Promise<MigrationRecord | undefined>;
  /** Every migration, oldest first. */
  listMigrations(): Promise<MigrationRecord[]>;
  /** Migrations not yet done, oldest first (what a restarted controller resumes). */
  listActiveMigrations(): Promise<MigrationRecord[]>;
  /**
   * Replace a migration if its stored version is still `expectedVersion`;
   * returns it at version + 1. FERRY_ERR_CONFLICT (retryable) otherwise:
   * re-read and converge again.
   */
  updateMigration(record: MigrationRecord, expectedVersion: number): Promise<MigrationRecord>;
  /** Append to a migration's journal; the store assigns seq (1, 2, …). Durable when it resolves. */
  appendJournal(entry: JournalInput): Promise<JournalEntry>;
  /** A migration's journal in seq order. */
  listJournal(migrationId: string): Promise<JournalEntry[]>;
  close(): void;
}
