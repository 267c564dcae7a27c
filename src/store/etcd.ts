// The coordinator's store on etcd, for several controllers (SQLite, sqlite.ts,
// stays the embedded default). Every write is one etcd transaction that
// compares revisions, as SQLite's compare-and-set compares versions: a
// migration is replaced only while its key's mod_revision is the one read
// (two controllers racing: exactly one wins, the other gets the retryable
// FERRY_ERR_CONFLICT and re-reads); a journal entry takes the next number of
// its migration's counter key in the same txn that writes it, and only while
// the migration exists. A watch (watchMigration, waitForMigration) replaces
// polling where a controller waits for a migration to change.
//
// Keys, under the connection's prefix (default ferry/):
//   migrations/<id>              the record (JSON, with its version)
//   journal-seq/<id>             the journal's last seq
//   journal/<id>/<seq, 16 digits> one journal entry
import { FerryError } from "../core/errors.ts";
import type { JournalEntry, JournalInput, MigrationRecord } from "../migration/types.ts";
import { isTerminal } from "../migration/types.ts";
import type { Store } from "../migration/store-port.ts";
import { decode, parseJournalEntry, parseRecord } from "./codec.ts";
import { seqKey, storeError, stored } from "./etcd-client.ts";
import type { EtcdConnection, Stored } from "./etcd-client.ts";

/** How many times a write retries a race on a counter key before giving up with FERRY_ERR_CONFLICT. */
const RACE_RETRIES = 50;

const migrationKey = (id: string): string => `migrations/${encodeURIComponent(id)}`;
const journalSeqKey = (id: string): string => `journal-seq/${encodeURIComponent(id)}`;
const journalPrefix = (id: string): string => `journal/${encodeURIComponent(id)}/`;

function record(s: Stored): MigrationRecord {
  return decode("migration record", () => parseRecord(JSON.parse(s.value) as unknown));
}

/** The version a stored record carries (read leniently: a compare needs only that). */
function storedVersion(s: Stored): unknown {
  try {
    return (JSON.parse(s.value) as { version?: unknown }).version;
  } catch {
    return undefined;
  }
}

export class EtcdStore implements Store {
  readonly #c: EtcdConnection;
  readonly #ownsConnection: boolean;

  /** A store on `connection`; close() closes the connection only when `owns` (default false: the opener closes it). */
  constructor(connection: EtcdConnection, o: { owns?: boolean } = {}) {
    this.#c = connection;
    this.#ownsConnection = o.owns ?? false;
  }

  async createMigration(r: MigrationRecord): Promise<MigrationRecord> {
    const out: MigrationRecord = { ...r, version: 1 };
    const key = migrationKey(r.id);
    let res;
    try {
      res = await this.#c.txn(`create migration ${r.id}`, key, "Create", "==", 0).then(this.#c.ns.put(key).value(JSON.stringify(out))).commit();
    } catch (e) {
      throw storeError(`create migration ${r.id}`, e);
    }
    if (!res.succeeded) await this.#c.checkFence(`create migration ${r.id}`);
    if (!res.succeeded) throw new FerryError("FERRY_ERR_CONFLICT", `migration ${r.id} already exists`, { details: { id: r.id } });
    return out;
  }

  async getMigration(id: string): Promise<MigrationRecord | undefined> {
    const s = await this.#c.get(migrationKey(id));
    return s === undefined ? undefined : record(s);
  }

  async listMigrations(): Promise<MigrationRecord[]> {
    const { items } = await this.#c.list("migrations/");
    return items.map(record).sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async listActiveMigrations(): Promise<MigrationRecord[]> {
    return (await this.listMigrations()).filter((r) => !isTerminal(r));
  }

  async updateMigration(r: MigrationRecord, expectedVersion: number): Promise<MigrationRecord> {
    const key = migrationKey(r.id);
    const cur = await this.#c.get(key);
    if (cur === undefined) throw new FerryError("FERRY_ERR_NOT_FOUND", `migration ${r.id} not found`, { details: { id: r.id } });
    const conflict = (version: unknown): FerryError =>
      new FerryError("FERRY_ERR_CONFLICT", `migration ${r.id} changed (version ${String(version)}, expected ${expectedVersion})`, {
        retryable: true,
        details: { id: r.id, expectedVersion, version },
      });
    if (storedVersion(cur) !== expectedVersion) throw conflict(storedVersion(cur));
    const out: MigrationRecord = { ...r, version: expectedVersion + 1 };
    let res;
    try {
      // the revision read above is still the key's: nobody wrote in between
      res = await this.#c.txn(`update migration ${r.id}`, key, "Mod", "==", cur.mod).then(this.#c.ns.put(key).value(JSON.stringify(out))).else(this.#c.ns.get(key)).commit();
    } catch (e) {
      throw storeError(`update migration ${r.id}`, e);
    }
    if (!res.succeeded) {
      await this.#c.checkFence(`update migration ${r.id}`);
      const kv = res.responses[0]?.response_range.kvs[0];
      if (kv === undefined) throw new FerryError("FERRY_ERR_NOT_FOUND", `migration ${r.id} not found`, { details: { id: r.id } });
      throw conflict(storedVersion(stored(kv, this.#c.prefix)));
    }
    return out;
  }

  async appendJournal(entry: JournalInput): Promise<JournalEntry> {
    const ns = this.#c.ns;
    const counter = journalSeqKey(entry.migrationId);
    for (let attempt = 0; attempt < RACE_RETRIES; attempt++) {
      const last = await this.#c.get(counter);
      const seq = (last === undefined ? 0 : Number(last.value)) + 1;
      const out: JournalEntry = { ...entry, seq };
      let res;
      try {
        res = await this.#c
          .txn(`append to the journal of ${entry.migrationId}`, migrationKey(entry.migrationId), "Version", ">", 0)
          .and(counter, "Mod", "==", last?.mod ?? 0)
          .then(ns.put(counter).value(String(seq)), ns.put(`${journalPrefix(entry.migrationId)}${seqKey(seq)}`).value(JSON.stringify(out)))
          .else(ns.get(migrationKey(entry.migrationId)))
          .commit();
      } catch (e) {
        throw storeError(`append to the journal of ${entry.migrationId}`, e);
      }
      if (res.succeeded) return out;
      await this.#c.checkFence(`append to the journal of ${entry.migrationId}`);
      if (res.responses[0]?.response_range.kvs.length === 0) {
        throw new FerryError("FERRY_ERR_NOT_FOUND", `journal: migration ${entry.migrationId}: no such migration`, { details: { id: entry.migrationId } });
      }
      // another writer took this seq: read the counter again
    }
    throw new FerryError("FERRY_ERR_CONFLICT", `journal: migration ${entry.migrationId}: lost ${RACE_RETRIES} races for the next seq`, { retryable: true, details: { id: entry.migrationId } });
  }

  async listJournal(migrationId: string): Promise<JournalEntry[]> {
    const { items } = await this.#c.list(journalPrefix(migrationId));
    return items.map((s) => decode("journal entry", () => parseJournalEntry(JSON.parse(s.value) as unknown)));
  }

  /**
   * Call `onChange` with the migration as stored after each change to it
   * (undefined: deleted), from now on, until the returned function is called.
   */
  async watchMigration(id: string, onChange: (r: MigrationRecord | undefined) => void, onError: (e: unknown) => void = () => undefined): Promise<() => Promise<void>> {
    const { watcher: w, cancel } = await this.#c.watch(`migration ${id}`, (ns) => ns.watch().key(migrationKey(id)).create());
    w.on("put", (kv) => {
      try {
        onChange(record(stored(kv, this.#c.prefix)));
      } catch (e) {
        onError(e);
      }
    });
    w.on("delete", () => onChange(undefined));
    w.on("error", onError);
    return cancel;
  }

  /**
   * Wait until the migration satisfies `until` (checked now, then on each
   * change: a watch, no polling); FERRY_ERR_TIMEOUT after timeoutMs,
   * FERRY_ERR_ABORTED on signal.
   */
  async waitForMigration(id: string, until: (r: MigrationRecord | undefined) => boolean, o: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<MigrationRecord | undefined> {
    let settle: (r: MigrationRecord | undefined) => void = () => undefined;
    let fail: (e: unknown) => void = () => undefined;
    const done = new Promise<MigrationRecord | undefined>((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    const check = (r: MigrationRecord | undefined): void => {
      if (until(r)) settle(r);
    };
    const unwatch = await this.watchMigration(id, check, fail);
    const timer = setTimeout(() => fail(new FerryError("FERRY_ERR_TIMEOUT", `migration ${id}: the awaited change did not come within ${o.timeoutMs} ms`)), o.timeoutMs ?? 2 ** 31 - 1);
    const onAbort = (): void => fail(new FerryError("FERRY_ERR_ABORTED", `migration ${id}: wait aborted`));
    o.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (o.signal?.aborted) onAbort();
      // read after the watch exists: a change in between is seen by one or the other
      check(await this.getMigration(id));
      return await done;
    } finally {
      clearTimeout(timer);
      o.signal?.removeEventListener("abort", onAbort);
      await unwatch();
    }
  }

  close(): void {
    if (this.#ownsConnection) this.#c.close();
  }
}
