// The controller's view of the cluster: hosts (registered by their agents'
// heartbeats) and VMs (what the controller created, where each runs, which VF
// each NIC holds). Kept in the same SQLite file as the migrations (its own
// tables, its own connection; WAL lets both write). Rows leave the database
// as unknown JSON and are validated here.
import type { DatabaseSync } from "node:sqlite";
import { FerryError } from "../core/errors.ts";
import { HOST_STATES } from "../model/cluster.ts";
import type { HostState } from "../model/cluster.ts";
import * as v from "../model/validate.ts";
import { NIC_MODES, NIC_POLICIES, parseRamTrim } from "../model/vm.ts";
import type { NicMode, NicPolicy } from "../model/vm.ts";
import { CONVERGENCE_REQUESTS } from "../migration/convergence.ts";
import type { ConvergenceRequest } from "../migration/convergence.ts";
import { openSqlite } from "./open.ts";

export interface HostRecord {
  name: string;
  /** The agent's API base URL, as it reported it. */
  url: string;
  version: string;
  accel: string;
  state: HostState;
  /** Epoch ms of the last heartbeat. */
  lastHeartbeat: number;
  registeredAt: number;
  /** An operator drained the host (ferry host drain, evacuate): it is "draining" whenever it is not down. */
  drain?: boolean;
  /** Its migration network as the agent advertised it; absent: it listens for migrations on 127.0.0.1 only. */
  migration?: HostMigrationNet;
  /** The host check's warnings the agent sent at its last start ('ferry host check'). */
  warnings?: string[];
  /** Its QEMU as the agent probed it at its start: version, machine types, CPU models (a migration's pre-flight checks). */
  qemu?: HostQemu;
  /** Its memory at the last heartbeat (/proc/meminfo). */
  memory?: { totalMiB: number; availableMiB: number };
  /** An evacuation of the host is in progress (its options): a controller that takes over the leadership goes on with it. */
  evacuating?: { parallel: number; maxBandwidthMiBps: number | null; since: number };
}

export interface HostQemu {
  version: string;
  machines: { name: string; aliasOf?: string }[];
  cpuModels: string[];
}

export interface HostMigrationNet {
  address: string;
  tls: boolean;
  /** The subject of its migration certificate: what a destination admits when this host is the source. */
  identity?: string;
}

export const VM_STATES = ["running", "stopped", "migrating", "saved", "unknown"] as const;
export type VmState = (typeof VM_STATES)[number];

export interface VmNicRecord {
  name: string;
  network: string;
  mode: NicMode;
  policy: NicPolicy;
  mac: string;
  /** Guest PCI root-port indexes, chosen once, identical on every host. */
  guestPorts: { standby?: number; primary?: number };
  /** The guest's address on this NIC (10.n.m.x/24), given on its kernel command line. */
  address: string;
  /** The VF (BDF on the VM's current host) the NIC holds; null when it has none. */
  vf: string | null;
}

export interface VmRecord {
  uuid: string;
  name: string;
  memoryMiB: number;
  vcpus: number;
  /** The host the VM runs on (or last ran on). */
  host: string;
  /** The running instance on `host`; null when stopped or unknown. */
  instanceId: string | null;
  state: VmState;
  /** Start with no OS (tests, demos): the guest never answers unplug requests. */
  noOs: boolean;
  /** Lab/test guest: MiB of guest RAM filled with random data at boot (the guest's ferry.fill; benchmarks). */
  guestFillMiB?: number;
  /** Lab/test guest: MiB/s of guest RAM it keeps rewriting (the guest's ferry.dirty; convergence benchmarks). */
  guestDirtyMiBps?: number;
  /** Guest RAM mapped from a shared file (the agent's memoryDir, one per instance): local migrations copy no RAM. */
  sharedMemory?: boolean;
  /** KiB of RAM short of memoryMiB (guests created on a host with QEMU < 9.0 under TCG): model/vm.ts ramTrimKiB. */
  ramTrimKiB?: number;
  /** The VM's convergence policy: what its migrations run with unless one asks for another (absent: "auto"). */
  convergence?: ConvergenceRequest;
  /**
   * The guest's kernel panicked in this instance (its agent saw QEMU's
   * GUEST_PANICKED, pvpanic; epoch ms). Read back only while `instanceId` is
   * still that instance: a new start, restore or migration clears it.
   */
  guestPanicked?: { instanceId: string; at: number };
  nics: VmNicRecord[];
  /** Creation order (1, 2, …): derives the VM's guest addresses. */
  seq: number;
  /** When state is "saved": the state file's name in the host's saveDir. */
  savedAs?: string;
  createdAt: number;
  updatedAt: number;
}

/** Where a VM is: its host and running instance (null: none). */
export type VmPlace = Pick<VmRecord, "host" | "instanceId">;

export interface ClusterStore {
  upsertHost(h: HostRecord): Promise<HostRecord>;
  getHost(name: string): Promise<HostRecord | undefined>;
  listHosts(): Promise<HostRecord[]>;
  /** Set a host's state; returns the host as stored, or undefined when unknown. */
  setHostState(name: string, state: HostState): Promise<HostRecord | undefined>;
  /**
   * Read-modify-write one host as one step: `change` gets the stored record
   * (undefined: none) and returns the record to store, or undefined to write
   * nothing. No other write to the host comes between the read and the write
   * (a heartbeat must not undo an operator's drain, nor an undrain bring one
   * back), so `change` may run more than once and must have no side effects.
   * Returns the host as stored afterwards (undefined: none).
   */
  updateHost(name: string, change: (h: HostRecord | undefined) => HostRecord | undefined): Promise<HostRecord | undefined>;
  /** FERRY_ERR_CONFLICT when the name or uuid exists. Assigns seq. */
  createVm(vm: Omit<VmRecord, "seq">): Promise<VmRecord>;
  getVm(nameOrUuid: string): Promise<VmRecord | undefined>;
  listVms(): Promise<VmRecord[]>;
  putVm(vm: VmRecord): Promise<VmRecord>;
  /**
   * Compare-and-set: replace the VM only while it is still where `expected`
   * says (host and instance), in one transaction. Returns the stored record,
   * or undefined when it has moved on (another operation owns it now) or is
   * gone: then nothing was written.
   */
  putVmIf(vm: VmRecord, expected: VmPlace): Promise<VmRecord | undefined>;
  /**
   * Read-modify-write one VM as one step (like updateHost): `change` gets the
   * stored record and returns the record to store, or undefined to write
   * nothing; it may run more than once and must have no side effects, and
   * may not rename the VM (FERRY_ERR_INTERNAL). A VM that does not exist is
   * not passed to `change`. Returns the VM as stored afterwards and whether
   * this call wrote it.
   */
  updateVm(uuid: string, change: (vm: VmRecord) => VmRecord | undefined): Promise<{ vm: VmRecord | undefined; written: boolean }>;
  deleteVm(uuid: string): Promise<boolean>;
  close(): void;
}

/** The VM is still where `place` says (host and instance): no operation moved it meanwhile. */
export function isAt(vm: VmRecord, place: VmPlace): boolean {
  return vm.host === place.host && vm.instanceId === place.instanceId;
}

/** putVmIf by updateVm (both stores): `vm` is written only while the stored VM is at `expected`. */
export async function putVmIfVia(store: Pick<ClusterStore, "updateVm">, vm: VmRecord, expected: VmPlace): Promise<VmRecord | undefined> {
  const r = await store.updateVm(vm.uuid, (cur) => (isAt(cur, expected) ? vm : undefined));
  return r.written ? r.vm : undefined;
}

/** updateVm's check on what `change` returned: the same VM, under the same name. */
export function checkVmChange(cur: VmRecord, next: VmRecord): VmRecord {
  if (next.uuid !== cur.uuid || next.name !== cur.name) throw new FerryError("FERRY_ERR_INTERNAL", `updateVm ${cur.uuid}: the change turned VM ${cur.name} into ${next.name} (${next.uuid})`);
  return parseVmRecord(next);
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS hosts (
  name   TEXT PRIMARY KEY NOT NULL,
  record TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS vms (
  uuid   TEXT PRIMARY KEY NOT NULL,
  name   TEXT NOT NULL UNIQUE,
  seq    INTEGER NOT NULL,
  record TEXT NOT NULL
) STRICT;
`;

function corrupt(what: string, e: unknown): FerryError {
  return new FerryError("FERRY_ERR_INTERNAL", `store: corrupt ${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

function num(field: string, x: unknown): number {
  if (typeof x !== "number" || !Number.isFinite(x)) throw new Error(`${field} is not a number`);
  return x;
}

export function parseHostRecord(x: unknown): HostRecord {
  const o = v.obj("host", x);
  return {
    name: v.name("name", o["name"]),
    url: v.str("url", o["url"]),
    version: v.str("version", o["version"]),
    accel: v.str("accel", o["accel"]),
    state: v.oneOf("state", o["state"], HOST_STATES),
    lastHeartbeat: num("lastHeartbeat", o["lastHeartbeat"]),
    registeredAt: num("registeredAt", o["registeredAt"]),
    ...(o["drain"] === true ? { drain: true } : {}),
    ...(o["migration"] === undefined ? {} : { migration: parseMigrationNet(o["migration"]) }),
    ...(o["warnings"] === undefined ? {} : { warnings: v.arr("warnings", o["warnings"]).map((w, i) => v.str(`warnings[${i}]`, w)) }),
    ...(o["evacuating"] === undefined ? {} : { evacuating: parseEvacuating(o["evacuating"]) }),
    ...(o["qemu"] === undefined ? {} : { qemu: parseQemu(o["qemu"]) }),
    ...(o["memory"] === undefined ? {} : { memory: parseMemory(o["memory"]) }),
  };
}

function parseQemu(x: unknown): HostQemu {
  const o = v.obj("qemu", x);
  return {
    version: v.str("qemu.version", o["version"]),
    machines: v.arr("qemu.machines", o["machines"]).map((m, i) => {
      const mo = v.obj(`qemu.machines[${i}]`, m);
      return { name: v.str(`qemu.machines[${i}].name`, mo["name"]), ...(mo["aliasOf"] === undefined ? {} : { aliasOf: v.str(`qemu.machines[${i}].aliasOf`, mo["aliasOf"]) }) };
    }),
    cpuModels: v.arr("qemu.cpuModels", o["cpuModels"]).map((c, i) => v.str(`qemu.cpuModels[${i}]`, c)),
  };
}

function parseMemory(x: unknown): NonNullable<HostRecord["memory"]> {
  const o = v.obj("memory", x);
  return { totalMiB: v.int("memory.totalMiB", o["totalMiB"], 0, 1 << 30), availableMiB: v.int("memory.availableMiB", o["availableMiB"], 0, 1 << 30) };
}

function parseEvacuating(x: unknown): NonNullable<HostRecord["evacuating"]> {
  const o = v.obj("evacuating", x);
  const bw = o["maxBandwidthMiBps"];
  return { parallel: v.int("evacuating.parallel", o["parallel"], 1, 1024), maxBandwidthMiBps: bw === null ? null : v.int("evacuating.maxBandwidthMiBps", bw, 1, 1 << 30), since: num("evacuating.since", o["since"]) };
}

function parseMigrationNet(x: unknown): HostMigrationNet {
  const o = v.obj("migration", x);
  if (typeof o["tls"] !== "boolean") throw new FerryError("FERRY_ERR_INVALID", "migration.tls: must be true or false");
  return { address: v.str("migration.address", o["address"]), tls: o["tls"], ...(o["identity"] === undefined ? {} : { identity: v.str("migration.identity", o["identity"]) }) };
}

function parseNic(field: string, x: unknown): VmNicRecord {
  const o = v.obj(field, x);
  const ports = v.obj(`${field}.guestPorts`, o["guestPorts"]);
  const guestPorts: VmNicRecord["guestPorts"] = {};
  if (ports["standby"] !== undefined) guestPorts.standby = v.int(`${field}.guestPorts.standby`, ports["standby"], 1, 64);
  if (ports["primary"] !== undefined) guestPorts.primary = v.int(`${field}.guestPorts.primary`, ports["primary"], 1, 64);
  return {
    name: v.name(`${field}.name`, o["name"]),
    network: v.name(`${field}.network`, o["network"]),
    mode: v.oneOf(`${field}.mode`, o["mode"], NIC_MODES),
    policy: v.oneOf(`${field}.policy`, o["policy"], NIC_POLICIES),
    mac: v.mac(`${field}.mac`, o["mac"]),
    guestPorts,
    address: v.str(`${field}.address`, o["address"]),
    vf: o["vf"] === null ? null : v.pciAddress(`${field}.vf`, o["vf"]),
  };
}

/** A stored guestPanicked, kept only while it is about the VM's current instance (an older instance's panic is history). */
function guestPanickedOf(x: unknown, instanceId: unknown): { guestPanicked?: { instanceId: string; at: number } } {
  if (x === undefined || x === null) return {};
  const o = v.obj("guestPanicked", x);
  const id = v.str("guestPanicked.instanceId", o["instanceId"]);
  return id === instanceId ? { guestPanicked: { instanceId: id, at: num("guestPanicked.at", o["at"]) } } : {};
}

export function parseVmRecord(x: unknown): VmRecord {
  const o = v.obj("vm", x);
  return {
    uuid: v.uuid("uuid", o["uuid"]),
    name: v.name("name", o["name"]),
    memoryMiB: v.int("memoryMiB", o["memoryMiB"], 1, 1 << 30),
    vcpus: v.int("vcpus", o["vcpus"], 1, 1024),
    host: v.name("host", o["host"]),
    instanceId: o["instanceId"] === null ? null : v.str("instanceId", o["instanceId"]),
    state: v.oneOf("state", o["state"], VM_STATES),
    noOs: o["noOs"] === true,
    ...(o["guestFillMiB"] === undefined ? {} : { guestFillMiB: v.int("guestFillMiB", o["guestFillMiB"], 1, 1 << 30) }),
    ...(o["guestDirtyMiBps"] === undefined ? {} : { guestDirtyMiBps: v.int("guestDirtyMiBps", o["guestDirtyMiBps"], 1, 1 << 20) }),
    ...(o["sharedMemory"] === true ? { sharedMemory: true } : {}),
    ...(o["ramTrimKiB"] === undefined ? {} : { ramTrimKiB: parseRamTrim("ramTrimKiB", o["ramTrimKiB"]) }),
    ...(o["convergence"] === undefined ? {} : { convergence: v.oneOf("convergence", o["convergence"], CONVERGENCE_REQUESTS) }),
    ...guestPanickedOf(o["guestPanicked"], o["instanceId"]),
    nics: v.arr("nics", o["nics"]).map((n, i) => parseNic(`nics[${i}]`, n)),
    seq: v.int("seq", o["seq"], 1, Number.MAX_SAFE_INTEGER),
    ...(typeof o["savedAs"] === "string" ? { savedAs: v.str("savedAs", o["savedAs"]) } : {}),
    createdAt: num("createdAt", o["createdAt"]),
    updatedAt: num("updatedAt", o["updatedAt"]),
  };
}

function record<T>(what: string, row: Record<string, unknown> | undefined, parse: (x: unknown) => T): T | undefined {
  if (row === undefined) return undefined;
  try {
    const text = row["record"];
    if (typeof text !== "string") throw new Error("record is not text");
    return parse(JSON.parse(text));
  } catch (e) {
    throw corrupt(what, e);
  }
}

/** The cluster part of the embedded store (same file as SqliteStore is fine). */
export class SqliteClusterStore implements ClusterStore {
  readonly #db: DatabaseSync;

  constructor(file: string, options: { busyTimeoutMs?: number } = {}) {
    this.#db = openSqlite(file, SCHEMA, { ...options, synchronous: "FULL" });
  }

  upsertHost(h: HostRecord): Promise<HostRecord> {
    return Promise.resolve().then(() => this.#putHost(h));
  }

  #putHost(h: HostRecord): HostRecord {
    const clean = parseHostRecord(h);
    this.#db.prepare("INSERT INTO hosts (name, record) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET record = excluded.record").run(clean.name, JSON.stringify(clean));
    return clean;
  }

  getHost(name: string): Promise<HostRecord | undefined> {
    return Promise.resolve().then(() => record(`host ${name}`, this.#db.prepare("SELECT record FROM hosts WHERE name = ?").get(name), parseHostRecord));
  }

  listHosts(): Promise<HostRecord[]> {
    return Promise.resolve().then(() =>
      this.#db.prepare("SELECT record FROM hosts ORDER BY name").all().map((r) => record("host", r, parseHostRecord)!),
    );
  }

  setHostState(name: string, state: HostState): Promise<HostRecord | undefined> {
    return this.updateHost(name, (h) => (h ? { ...h, state } : undefined));
  }

  updateHost(name: string, change: (h: HostRecord | undefined) => HostRecord | undefined): Promise<HostRecord | undefined> {
    return Promise.resolve().then(() => {
      // read and write with nothing awaited between: one controller owns the file, so no other write comes between
      const cur = record(`host ${name}`, this.#db.prepare("SELECT record FROM hosts WHERE name = ?").get(name), parseHostRecord);
      const next = change(cur);
      if (next === undefined) return cur;
      if (next.name !== name) throw new FerryError("FERRY_ERR_INTERNAL", `updateHost ${name}: the change renamed the host to ${next.name}`);
      return this.#putHost(next);
    });
  }

  createVm(vm: Omit<VmRecord, "seq">): Promise<VmRecord> {
    return Promise.resolve().then(() => {
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        const clash = this.#db.prepare("SELECT name FROM vms WHERE uuid = ? OR name = ?").get(vm.uuid, vm.name);
        if (clash !== undefined) throw new FerryError("FERRY_ERR_CONFLICT", `a VM named ${vm.name} (or with uuid ${vm.uuid}) already exists`, { details: { name: vm.name } });
        const last = this.#db.prepare("SELECT MAX(seq) AS seq FROM vms").get();
        const seq = (typeof last?.["seq"] === "number" || typeof last?.["seq"] === "bigint" ? Number(last["seq"]) : 0) + 1;
        const stored = parseVmRecord({ ...vm, seq });
        this.#db.prepare("INSERT INTO vms (uuid, name, seq, record) VALUES (?, ?, ?, ?)").run(stored.uuid, stored.name, seq, JSON.stringify(stored));
        this.#db.exec("COMMIT");
        return stored;
      } catch (e) {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
        throw e;
      }
    });
  }

  getVm(nameOrUuid: string): Promise<VmRecord | undefined> {
    return Promise.resolve().then(() =>
      record(`vm ${nameOrUuid}`, this.#db.prepare("SELECT record FROM vms WHERE name = ? OR uuid = ?").get(nameOrUuid, nameOrUuid), parseVmRecord),
    );
  }

  listVms(): Promise<VmRecord[]> {
    return Promise.resolve().then(() => this.#db.prepare("SELECT record FROM vms ORDER BY seq").all().map((r) => record("vm", r, parseVmRecord)!));
  }

  putVm(vm: VmRecord): Promise<VmRecord> {
    return Promise.resolve().then(() => {
      const clean = parseVmRecord(vm);
      const res = this.#db.prepare("UPDATE vms SET record = ? WHERE uuid = ?").run(JSON.stringify(clean), clean.uuid);
      if (Number(res.changes) !== 1) throw new FerryError("FERRY_ERR_NOT_FOUND", `vm ${vm.name} not found`, { details: { vm: vm.name } });
      return clean;
    });
  }

  putVmIf(vm: VmRecord, expected: VmPlace): Promise<VmRecord | undefined> {
    return putVmIfVia(this, vm, expected);
  }

  updateVm(uuid: string, change: (vm: VmRecord) => VmRecord | undefined): Promise<{ vm: VmRecord | undefined; written: boolean }> {
    return Promise.resolve().then(() => {
      // read and write with nothing awaited between: one controller owns the file, so no other write comes between
      const cur = record(`vm ${uuid}`, this.#db.prepare("SELECT record FROM vms WHERE uuid = ?").get(uuid), parseVmRecord);
      if (cur === undefined) return { vm: undefined, written: false };
      const want = change(cur);
      if (want === undefined) return { vm: cur, written: false };
      const next = checkVmChange(cur, want);
      this.#db.prepare("UPDATE vms SET record = ? WHERE uuid = ?").run(JSON.stringify(next), uuid);
      return { vm: next, written: true };
    });
  }

  deleteVm(uuid: string): Promise<boolean> {
    return Promise.resolve().then(() => Number(this.#db.prepare("DELETE FROM vms WHERE uuid = ?").run(uuid).changes) === 1);
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
