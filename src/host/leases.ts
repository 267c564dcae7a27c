// VF leases and small feature-state records in the agent's embedded SQLite
// state file (node:sqlite, WAL). The database enforces the invariant "a VF is
// leased to at most one holder": the VF is the leases table's PRIMARY KEY and
// every change runs in a BEGIN IMMEDIATE transaction, so two agents (or two
// processes of one) racing for the same VF cannot both win.
//
// Calls are synchronous (SQLite in-process); the only wait is SQLite's busy
// timeout (default 5 s) when another connection holds the write lock, after
// which the call fails with FERRY_ERR_CONFLICT (retryable).
import { chmodSync, closeSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { Clock } from "../core/clock.ts";
import { FerryError } from "../core/errors.ts";
import * as v from "../model/validate.ts";

export type LeaseHolder =
  | { kind: "instance"; vmUuid: string; instanceId: string }
  | { kind: "migration"; migrationId: string; vmUuid: string; expiresAt: number };

/**
 * Whose leases to find: an instance or a migration by its id, and by its VM
 * too when `vmUuid` is given (a full LeaseHolder then matches as sameHolder
 * does; expiresAt does not count).
 */
export type HolderMatch =
  | { kind: "instance"; instanceId: string; vmUuid?: string }
  | { kind: "migration"; migrationId: string; vmUuid?: string };

export interface Lease {
  vf: string;
  holder: LeaseHolder;
  createdAt: number;
  updatedAt: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS leases (
  vf           TEXT PRIMARY KEY NOT NULL,
  kind         TEXT NOT NULL CHECK (kind IN ('instance', 'migration')),
  vm_uuid      TEXT NOT NULL,
  instance_id  TEXT,
  migration_id TEXT,
  expires_at   INTEGER,
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL,
  CHECK ((kind = 'instance' AND instance_id IS NOT NULL AND migration_id IS NULL AND expires_at IS NULL)
      OR (kind = 'migration' AND migration_id IS NOT NULL AND instance_id IS NULL AND expires_at IS NOT NULL))
) STRICT;
CREATE TABLE IF NOT EXISTS records (
  ns         TEXT NOT NULL,
  key        TEXT NOT NULL,
  value      TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (ns, key)
) STRICT;
`;

function errno(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

/**
 * Open (creating if needed) the state file: directory 0700, file 0600, WAL,
 * schema in place. The caller owns the returned handle (close it).
 */
export function openStateDb(file: string, options: { busyTimeoutMs?: number } = {}): DatabaseSync {
  v.absPath("state file", file);
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    chmodSync(dirname(file), 0o700);
    closeSync(openSync(file, "a", 0o600));
    chmodSync(file, 0o600);
  } catch (e) {
    throw new FerryError("FERRY_ERR_INTERNAL", `${file}: cannot create the state file: ${e instanceof Error ? e.message : String(e)}`, {
      cause: e,
      details: { path: file, errno: errno(e) },
    });
  }
  const db = new DatabaseSync(file, { timeout: options.busyTimeoutMs ?? 5000 });
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = NORMAL");
  db.exec(SCHEMA);
  return db;
}

/** Run fn in a write transaction (BEGIN IMMEDIATE: the write lock is taken up front). */
export function writeTx<T>(db: DatabaseSync, fn: () => T): T {
  try {
    db.exec("BEGIN IMMEDIATE");
  } catch (e) {
    throw new FerryError("FERRY_ERR_CONFLICT", `state database busy: ${e instanceof Error ? e.message : String(e)}`, { cause: e, retryable: true });
  }
  try {
    const out = fn();
    db.exec("COMMIT");
    return out;
  } catch (e) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw e;
  }
}

function rowStr(row: Record<string, unknown>, k: string): string {
  const x = row[k];
  if (typeof x !== "string") throw new FerryError("FERRY_ERR_INTERNAL", `state database: leases.${k} is not text`);
  return x;
}
function rowInt(row: Record<string, unknown>, k: string): number {
  const x = row[k];
  if (typeof x === "bigint") return Number(x);
  if (typeof x !== "number") throw new FerryError("FERRY_ERR_INTERNAL", `state database: leases.${k} is not an integer`);
  return x;
}

function toLease(row: Record<string, unknown>): Lease {
  const kind = rowStr(row, "kind");
  const vmUuid = rowStr(row, "vm_uuid");
  const holder: LeaseHolder =
    kind === "instance"
      ? { kind, vmUuid, instanceId: rowStr(row, "instance_id") }
      : { kind: "migration", migrationId: rowStr(row, "migration_id"), vmUuid, expiresAt: rowInt(row, "expires_at") };
  return { vf: rowStr(row, "vf"), holder, createdAt: rowInt(row, "created_at"), updatedAt: rowInt(row, "updated_at") };
}

/** Same holder: same instance (VM + instance id), or same migration (id + VM). expiresAt does not count. */
export function sameHolder(a: LeaseHolder, b: LeaseHolder): boolean {
  if (a.kind === "instance" && b.kind === "instance") return a.vmUuid === b.vmUuid && a.instanceId === b.instanceId;
  if (a.kind === "migration" && b.kind === "migration") return a.migrationId === b.migrationId && a.vmUuid === b.vmUuid;
  return false;
}

export function describeHolder(h: LeaseHolder): string {
  return h.kind === "instance" ? `instance ${h.instanceId} of VM ${h.vmUuid}` : `migration ${h.migrationId} of VM ${h.vmUuid}`;
}

function matches(h: LeaseHolder, m: HolderMatch): boolean {
  if (m.vmUuid !== undefined && h.vmUuid !== m.vmUuid) return false;
  return h.kind === "instance" ? m.kind === "instance" && h.instanceId === m.instanceId : m.kind === "migration" && h.migrationId === m.migrationId;
}

function checkHolder(h: LeaseHolder): LeaseHolder {
  v.uuid("holder.vmUuid", h.vmUuid);
  if (h.kind === "instance") v.name("holder.instanceId", h.instanceId);
  else {
    v.name("holder.migrationId", h.migrationId);
    v.int("holder.expiresAt", h.expiresAt, 0, Number.MAX_SAFE_INTEGER);
  }
  return h;
}

function held(vf: string, by: LeaseHolder, wanted: LeaseHolder): FerryError {
  return new FerryError("FERRY_ERR_LEASE_HELD", `VF ${vf} is leased to ${describeHolder(by)}, not to ${describeHolder(wanted)}`, {
    details: { vf, holder: by },
  });
}

export class LeaseStore {
  readonly #db: DatabaseSync;
  readonly #clock: Clock;

  constructor(db: DatabaseSync, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  #row(vf: string): Lease | undefined {
    const row = this.#db.prepare("SELECT * FROM leases WHERE vf = ?").get(vf);
    return row === undefined ? undefined : toLease(row);
  }

  #expired(l: Lease, now: number): boolean {
    return l.holder.kind === "migration" && l.holder.expiresAt <= now;
  }

  /**
   * Lease `vf` to `holder`. Idempotent: the same holder gets its existing
   * lease back. A different holder gets FERRY_ERR_LEASE_HELD naming the
   * current one (an expired migration lease counts as free).
   */
  lease(vf: string, holder: LeaseHolder): Lease {
    v.pciAddress("vf", vf);
    checkHolder(holder);
    return writeTx(this.#db, () => {
      const now = this.#clock.now();
      const cur = this.#row(vf);
      if (cur && sameHolder(cur.holder, holder)) return cur;
      if (cur && !this.#expired(cur, now)) throw held(vf, cur.holder, holder);
      if (cur) this.#db.prepare("DELETE FROM leases WHERE vf = ?").run(vf);
      this.#insert(vf, holder, now);
      return { vf, holder, createdAt: now, updatedAt: now };
    });
  }

  #insert(vf: string, h: LeaseHolder, now: number): void {
    this.#db
      .prepare("INSERT INTO leases (vf, kind, vm_uuid, instance_id, migration_id, expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
      .run(vf, h.kind, h.vmUuid, h.kind === "instance" ? h.instanceId : null, h.kind === "migration" ? h.migrationId : null, h.kind === "migration" ? h.expiresAt : null, now, now);
  }

  /** Release `vf` if `holder` holds it. Idempotent: true if a lease was removed, false if there was none. */
  release(vf: string, holder: LeaseHolder): boolean {
    return writeTx(this.#db, () => {
      const cur = this.#row(vf);
      if (!cur) return false;
      if (!sameHolder(cur.holder, holder)) throw held(vf, cur.holder, holder);
      this.#db.prepare("DELETE FROM leases WHERE vf = ?").run(vf);
      return true;
    });
  }

  /**
   * Hand `vf` from one holder to another atomically (migration → instance at
   * Finish; instance → new instance in a local migration). Idempotent: if `to`
   * already holds it, returns that lease.
   */
  transfer(vf: string, from: LeaseHolder, to: LeaseHolder): Lease {
    checkHolder(to);
    return writeTx(this.#db, () => {
      const now = this.#clock.now();
      const cur = this.#row(vf);
      if (cur && sameHolder(cur.holder, to)) return cur;
      if (!cur) throw new FerryError("FERRY_ERR_NOT_FOUND", `VF ${vf} is not leased (expected ${describeHolder(from)})`, { details: { vf } });
      if (!sameHolder(cur.holder, from)) throw held(vf, cur.holder, from);
      this.#move(vf, to, now);
      return { vf, holder: to, createdAt: cur.createdAt, updatedAt: now };
    });
  }

  #move(vf: string, to: LeaseHolder, now: number): void {
    this.#db
      .prepare("UPDATE leases SET kind = ?, vm_uuid = ?, instance_id = ?, migration_id = ?, expires_at = ?, updated_at = ? WHERE vf = ?")
      .run(to.kind, to.vmUuid, to.kind === "instance" ? to.instanceId : null, to.kind === "migration" ? to.migrationId : null, to.kind === "migration" ? to.expiresAt : null, now, vf);
  }

  get(vf: string): Lease | undefined {
    return this.#row(vf);
  }

  list(): Lease[] {
    return this.#db.prepare("SELECT * FROM leases ORDER BY vf").all().map(toLease);
  }

  /** The leases `m` holds (expired migration leases included), by VF. */
  heldBy(m: HolderMatch): Lease[] {
    return this.list().filter((l) => matches(l.holder, m));
  }

  /** Release every lease `m` holds, in one transaction; returns their VFs. */
  releaseHeldBy(m: HolderMatch): string[] {
    return writeTx(this.#db, () => {
      const vfs = this.heldBy(m).map((l) => l.vf);
      for (const vf of vfs) this.#db.prepare("DELETE FROM leases WHERE vf = ?").run(vf);
      return vfs;
    });
  }

  /** Hand every lease `from` holds to `to`, in one transaction (as transfer does one); returns their VFs. */
  transferHeldBy(from: HolderMatch, to: LeaseHolder): string[] {
    checkHolder(to);
    return writeTx(this.#db, () => {
      const now = this.#clock.now();
      const vfs = this.heldBy(from).map((l) => l.vf);
      for (const vf of vfs) this.#move(vf, to, now);
      return vfs;
    });
  }

  /** Remove migration leases whose expiresAt ≤ now; returns them. */
  reclaimExpired(now: number = this.#clock.now()): Lease[] {
    return writeTx(this.#db, () => {
      const rows = this.#db.prepare("SELECT * FROM leases WHERE kind = 'migration' AND expires_at <= ? ORDER BY vf").all(now).map(toLease);
      this.#db.prepare("DELETE FROM leases WHERE kind = 'migration' AND expires_at <= ?").run(now);
      return rows;
    });
  }
}

/** Small JSON records by (namespace, key) for feature state that must survive a restart. */
export class RecordStore {
  readonly #db: DatabaseSync;
  readonly #clock: Clock;

  constructor(db: DatabaseSync, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /** The stored value (parsed JSON, unvalidated: the caller validates), or undefined. */
  get(ns: string, key: string): unknown {
    const row = this.#db.prepare("SELECT value FROM records WHERE ns = ? AND key = ?").get(ns, key);
    if (row === undefined) return undefined;
    const value = row["value"];
    if (typeof value !== "string") throw new FerryError("FERRY_ERR_INTERNAL", `state database: records ${ns}/${key} is not text`);
    return JSON.parse(value) as unknown;
  }

  put(ns: string, key: string, value: unknown): void {
    this.#db
      .prepare("INSERT INTO records (ns, key, value, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
      .run(ns, key, JSON.stringify(value), this.#clock.now());
  }

  /** Insert only if absent; returns true when inserted. */
  putIfAbsent(ns: string, key: string, value: unknown): boolean {
    const r = this.#db.prepare("INSERT INTO records (ns, key, value, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (ns, key) DO NOTHING").run(ns, key, JSON.stringify(value), this.#clock.now());
    return Number(r.changes) === 1;
  }

  delete(ns: string, key: string): boolean {
    return Number(this.#db.prepare("DELETE FROM records WHERE ns = ? AND key = ?").run(ns, key).changes) === 1;
  }

  list(ns: string): { key: string; value: unknown }[] {
    return this.#db
      .prepare("SELECT key, value FROM records WHERE ns = ? ORDER BY key")
      .all(ns)
      .map((r) => ({ key: String(r["key"]), value: JSON.parse(String(r["value"])) as unknown }));
  }
}
