// One way to open the controller's SQLite file: directory 0700, file 0600,
// WAL, a busy timeout, the caller's schema. Shared by the migration store,
// the cluster store and the event log (each has its own connection).
import { chmodSync, closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { FerryError } from "../core/errors.ts";

export interface OpenOptions {
  /** How long a write waits for another connection's lock (default 5 s). */
  busyTimeoutMs?: number;
  /** FULL (default): a write is on disk before the call returns. NORMAL: may lose the last writes on power loss. */
  synchronous?: "FULL" | "NORMAL";
}

/** Open (creating if needed) `file`, or ":memory:", and apply `schema`. */
export function openSqlite(file: string, schema: string, options: OpenOptions = {}): DatabaseSync {
  if (file !== ":memory:") {
    try {
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      closeSync(openSync(file, "a", 0o600));
      chmodSync(file, 0o600);
    } catch (e) {
      throw new FerryError("FERRY_ERR_INTERNAL", `${file}: cannot create the store: ${e instanceof Error ? e.message : String(e)} (check that the config's stateDir is writable by this user and its disk has space)`, { cause: e, details: { path: file } });
    }
  }
  const db = new DatabaseSync(file, { timeout: options.busyTimeoutMs ?? 5000 });
  db.exec("PRAGMA journal_mode = WAL");
  db.exec(`PRAGMA synchronous = ${options.synchronous ?? "FULL"}`);
  db.exec("PRAGMA foreign_keys = ON");
  db.exec(schema);
  return db;
}
