// The host agent: wiring for one hypervisor host. It reads the host config,
// the sysfs inventory and the SQLite state (leases), reconnects to the QEMU
// instances already running under the run dir, and offers the operations
// the HTTP routes expose. It never sees HTTP: routes parse requests into
// calls on this object (Firecracker's api_server → VMM split).
//
// QEMU instances are detached processes: closing the agent closes their QMP
// connections only, and a new agent on the same config adopts them again.
import { constants } from "node:fs";
import { access, readdir, readFile, realpath, rm, rmdir, stat } from "node:fs/promises";
import { delimiter, dirname, isAbsolute, join, sep } from "node:path";
import type { DatabaseSync } from "node:sqlite";
import { systemClock } from "../core/clock.ts";
import type { Clock } from "../core/clock.ts";
import { FerryError, invalid, isFerryError, toFerryError } from "../core/errors.ts";
import { silentLogger } from "../core/log.ts";
import type { Logger } from "../core/log.ts";
import { run as defaultRun } from "../core/run.ts";
import type { Runner } from "../core/run.ts";
import { stateFile, usableVfs } from "../host/config.ts";
import type { HostConfig, UsableVf } from "../host/config.ts";
import { LeaseStore, openStateDb, RecordStore } from "../host/leases.ts";
import type { Lease, LeaseHolder } from "../host/leases.ts";
import { readInventory } from "../host/sysfs.ts";
import type { Inventory } from "../host/sysfs.ts";
import * as v from "../model/validate.ts";
import { parseVmSpec } from "../model/vm.ts";
import type { VmSpec } from "../model/vm.ts";
import { detectAccel } from "../qemu/accel.ts";
import type { AccelChoice } from "../qemu/accel.ts";
import { INSTANCE_ID_RE, INSTANCE_ID_RULE, instancePaths, listInstanceDirs, newInstanceId, processAlive, reconnectInstance, removeInstanceDir } from "../qemu/instance.ts";
import type { Instance } from "../qemu/instance.ts";
import { listDeviceIds, queryStatus } from "../qmp/commands.ts";
import pkg from "../../package.json" with { type: "json" };
import type { GoneInstanceT, HealthView, InstanceListView, InstanceViewT, InventoryView, StoppedView } from "./api.ts";
import { holdsGuest } from "./api.ts";
import { buildInventoryView } from "./inventory.ts";
import type { StepContext } from "./migration/context.ts";
import { Faults } from "./faults.ts";
import { launchInstance } from "./migration/lifecycle.ts";
import { attachTaps, releaseRamFile, steerInitial, withTaps } from "./migration/wiring.ts";
import { reapStaleDestinations } from "./migration/destination.ts";
import { knownMigrations, reconcileEnded } from "./migration/reconcile.ts";
import { rearmSources } from "./migration/source.ts";
import { pruneEnded } from "./migration/ended.ts";

export const AGENT_VERSION: string = pkg.version;
export const DEFAULT_RECLAIM_INTERVAL_MS = 10_000;
const QMP_QUERY_TIMEOUT_MS = 2_000;

export interface AgentOptions {
  config: HostConfig;
  clock?: Clock;
  log?: Logger;
  /** Default: detectAccel() once at startup. */
  accel?: AccelChoice;
  qemuBinary?: string;
  /** Host commands (ip …) for migration steps; default core/run.ts. */
  run?: Runner;
  /** How often expired migration leases are reclaimed and dead instances reaped (default 10 s). */
  reclaimIntervalMs?: number;
  signal?: AbortSignal;
}

export interface RecoveryReport {
  reconnected: string[];
  gone: GoneInstanceT[];
  /** Alive but QMP did not answer: left alone (no lease released), retried every tick. */
  unreachable: string[];
  /** Instance leases whose instance has no runtime dir here: reported, not released. */
  orphanLeases: Lease[];
}

export interface StartOptions {
  incoming?: boolean;
  instanceId?: string;
  signal?: AbortSignal;
}

interface Parts {
  config: HostConfig;
  clock: Clock;
  log: Logger;
  accel: AccelChoice;
  qemuBinary: string | undefined;
  run: Runner;
  db: DatabaseSync;
  inventory: Inventory;
  vfs: UsableVf[];
  interval: number;
}

const instanceHolder = (i: Instance): LeaseHolder => ({ kind: "instance", vmUuid: i.meta.vmUuid, instanceId: i.id });

/** The VF a NIC's primary refers to, if any. */
function primaryVf(spec: VmSpec): { nic: number; bdf: string; kind: "vfio" | "stand-in" }[] {
  return spec.nics.flatMap((n, i) =>
    n.primary === undefined ? [] : [{ nic: i, bdf: n.primary.kind === "vfio" ? n.primary.host : n.primary.vf, kind: n.primary.kind }],
  );
}

export class Agent {
  readonly config: HostConfig;
  readonly accel: AccelChoice;
  readonly version = AGENT_VERSION;
  readonly startedAt: number;
  readonly leases: LeaseStore;
  readonly records: RecordStore;
  readonly faults: Faults;
  recovery: RecoveryReport = { reconnected: [], gone: [], unreachable: [], orphanLeases: [] };

  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #qemuBinary: string | undefined;
  readonly #run: Runner;
  readonly #db: DatabaseSync;
  readonly #inventory: Inventory;
  readonly #vfs: Map<string, UsableVf>;
  readonly #instances = new Map<string, Instance>();
  readonly #unreachable = new Map<string, string>();
  readonly #gone: GoneInstanceT[] = [];
  /** VMs (uuid) with a start or restore under way here: a second one waits its turn and is refused. */
  readonly #starting = new Set<string>();
  readonly #startedMono: number;
  readonly #loop = new AbortController();
  readonly #interval: number;
  #closed = false;

  /** Use Agent.open(). */
  private constructor(p: Parts) {
    this.config = p.config;
    this.accel = p.accel;
    this.#clock = p.clock;
    this.#log = p.log;
    this.#qemuBinary = p.qemuBinary;
    this.#run = p.run;
    this.#db = p.db;
    this.leases = new LeaseStore(p.db, p.clock);
    this.records = new RecordStore(p.db, p.clock);
    this.faults = new Faults(p.config.lab);
    this.#inventory = p.inventory;
    this.#vfs = new Map(p.vfs.map((x) => [x.bdf, x]));
    this.#interval = p.interval;
    this.startedAt = p.clock.now();
    this.#startedMono = p.clock.monotonic();
  }

  /** Load the host: inventory, state, accelerator; adopt running instances; start the reclaim loop. */
  static async open(o: AgentOptions): Promise<Agent> {
    const clock = o.clock ?? systemClock;
    const log = (o.log ?? silentLogger).child({ host: o.config.name });
    const inventory = await readInventory({ root: o.config.sysfsRoot, signal: o.signal });
    const vfs = usableVfs(o.config, inventory);
    const accel = o.accel ?? (await detectAccel());
    const db = openStateDb(stateFile(o.config));
    const agent = new Agent({ config: o.config, clock, log, accel, qemuBinary: o.qemuBinary, run: o.run ?? defaultRun, db, inventory, vfs, interval: o.reclaimIntervalMs ?? DEFAULT_RECLAIM_INTERVAL_MS });
    try {
      agent.recovery = await agent.#recover(o.signal);
    } catch (e) {
      await agent.close();
      throw e;
    }
    void agent.#runLoop();
    log.info({ accel: accel.accel, vfs: vfs.length, ...agent.#recoverySummary() }, "agent ready");
    return agent;
  }

  #recoverySummary(): Record<string, unknown> {
    const r = this.recovery;
    return { reconnected: r.reconnected, gone: r.gone.map((g) => g.instanceId), unreachable: r.unreachable, orphanLeases: r.orphanLeases.map((l) => l.vf) };
  }

  // ---- recovery and the periodic tick

  async #recover(signal?: AbortSignal): Promise<RecoveryReport> {
    const report: RecoveryReport = { reconnected: [], gone: [], unreachable: [], orphanLeases: [] };
    for (const dir of await listInstanceDirs(this.config.runDir)) {
      const r = await this.#adoptDir(dir, signal);
      if (r.kind === "adopted") report.reconnected.push(r.id);
      else if (r.kind === "gone") report.gone.push(r.gone);
      else report.unreachable.push(r.id);
    }
    const known = (h: LeaseHolder): boolean =>
      h.kind !== "instance" || this.#instances.has(h.instanceId) || this.#unreachable.has(h.instanceId);
    report.orphanLeases = this.leases.list().filter((l) => !known(l.holder));
    for (const l of report.orphanLeases) this.#log.warn({ vf: l.vf, holder: l.holder }, "lease held by an instance with no runtime dir on this host");
    await this.#sweepRamFiles();
    for (const id of await rearmSources(this.#ctx())) this.#log.warn({ migrationId: id }, "a migration from this host waits at pre-switchover (guest paused): its give-up deadline is armed again");
    return report;
  }

  /** RAM files in memoryDir that no instance dir names (left by a crash): removed. */
  async #sweepRamFiles(): Promise<void> {
    const named = new Set<string>();
    for (const dir of await listInstanceDirs(this.config.runDir)) {
      const f = (await readMeta(dir))?.ramFile;
      if (f !== undefined) named.add(f);
    }
    for (const f of await readdir(this.config.memoryDir).catch(() => [] as string[])) {
      const file = join(this.config.memoryDir, f);
      if (f.endsWith(".ram") && !named.has(file)) {
        await rm(file, { force: true });
        this.#log.info({ file }, "removed a guest RAM file no instance maps");
      }
    }
  }

  async #adoptDir(dir: string, signal?: AbortSignal): Promise<{ kind: "adopted" | "unreachable"; id: string } | { kind: "gone"; gone: GoneInstanceT }> {
    try {
      const inst = await reconnectInstance(dir, { clock: this.#clock, signal });
      this.#instances.set(inst.id, inst);
      this.#unreachable.delete(inst.id);
      this.#log.info({ instanceId: inst.id, vm: inst.meta.vmName, pid: inst.pid }, "reconnected to instance");
      return { kind: "adopted", id: inst.id };
    } catch (e) {
      const meta = await readMeta(dir);
      const id = meta?.instanceId ?? dir.split("/").at(-1) ?? dir;
      if (meta && (await processAlive(meta.pid, join(dir, "qmp.sock")))) {
        this.#unreachable.set(id, dir);
        this.#log.warn({ instanceId: id, err: toFerryError(e).message }, "instance alive but QMP unreachable; will retry");
        return { kind: "unreachable", id };
      }
      const holder: LeaseHolder | null = meta ? { kind: "instance", vmUuid: meta.vmUuid, instanceId: meta.instanceId } : null;
      const gone = await this.#bury(dir, holder, { instanceId: id, vmUuid: meta?.vmUuid ?? "", vmName: meta?.vmName ?? "", pid: meta?.pid ?? 0 }, "process gone while the agent was down", meta?.ramFile);
      return { kind: "gone", gone };
    }
  }

  /** Release a dead instance's leases and RAM file, remove its runtime dir, remember it as gone. */
  async #bury(dir: string, holder: LeaseHolder | null, who: Pick<GoneInstanceT, "instanceId" | "vmUuid" | "vmName" | "pid">, reason: string, ramFile: string | undefined): Promise<GoneInstanceT> {
    const releasedVfs = holder ? this.leases.releaseHeldBy(holder) : [];
    await removeInstanceDir(dir);
    await releaseRamFile(this.#ctx(), { instanceId: who.instanceId, ...(ramFile === undefined ? {} : { ramFile }) });
    await rmdir(dirname(dir)).catch(() => undefined); // the VM's dir, if now empty
    const gone: GoneInstanceT = { ...who, at: this.#clock.now(), reason, releasedVfs };
    this.#gone.push(gone);
    if (this.#gone.length > 100) this.#gone.shift();
    this.#log.warn({ instanceId: who.instanceId, vm: who.vmName, releasedVfs, logs: join(this.config.runDir, "logs", who.instanceId) }, `instance gone: ${reason}`);
    return gone;
  }

  async #runLoop(): Promise<void> {
    for (;;) {
      try {
        await this.#clock.sleep(this.#interval, this.#loop.signal);
      } catch {
        return; // closed
      }
      await this.tick().catch((e: unknown) => this.#log.error({ err: toFerryError(e).message }, "agent tick failed"));
    }
  }

  /** One round of housekeeping: reclaim expired migration leases, reap dead instances, retry unreachable ones. */
  async tick(): Promise<void> {
    if (this.#closed) return;
    for (const id of await reapStaleDestinations(this.stepContext())) this.#log.warn({ migrationId: id }, "aborted a prepared destination whose migration was never finished before its leases expired");
    for (const l of this.leases.reclaimExpired()) this.#log.info({ vf: l.vf, holder: l.holder }, "reclaimed expired migration lease");
    pruneEnded(this.records, this.#clock.now());
    for (const inst of [...this.#instances.values()]) {
      if (inst.qmp.closed && !(await inst.alive())) {
        this.#instances.delete(inst.id);
        inst.qmp.close();
        const m = inst.meta;
        await this.#bury(inst.paths.dir, instanceHolder(inst), { instanceId: m.instanceId, vmUuid: m.vmUuid, vmName: m.vmName, pid: m.pid }, "QEMU exited", m.ramFile);
      }
    }
    for (const dir of [...this.#unreachable.values()]) await this.#adoptDir(dir);
  }

  /** The agent's clock, epoch ms (lease expiry is computed on it). */
  now(): number {
    return this.#clock.now();
  }

  // ---- reconciling with the controller (heartbeat.ts)

  /** The migrations this host holds anything of (records, VF leases, an end not yet confirmed). */
  knownMigrations(): string[] {
    return this.#closed ? [] : knownMigrations(this.#ctx());
  }

  /** The controller says these migrations have ended: release what this host holds of them (steps.ts reconcileEnded). */
  async reconcileEnded(ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      if (this.#closed) return;
      const r = await reconcileEnded(this.#ctx(), id);
      if (r && (r.releasedVfs.length > 0 || r.keptByInstance.length > 0 || r.aborted)) {
        this.#log.warn({ migrationId: id, releasedVfs: r.releasedVfs, keptByInstance: r.keptByInstance, abortedIncoming: r.aborted }, "the controller reports this migration ended: released what it held here");
      }
    }
  }

  // ---- inventory and leases

  inventory(): InventoryView {
    return buildInventoryView(this.config, this.#inventory, this.leases.list());
  }

  /** The usable VF at `bdf`; FERRY_ERR_INVALID if not an address, FERRY_ERR_NOT_FOUND if not in this host's inventory. */
  vf(bdf: string, field = "vf"): UsableVf {
    const b = v.pciAddress(field, bdf);
    const vf = this.#vfs.get(b);
    if (!vf) {
      throw new FerryError("FERRY_ERR_NOT_FOUND", `${field}: ${b} is not a VF of any uplink of host ${this.config.name}`, { details: { field, vf: b } });
    }
    return vf;
  }

  listLeases(): Lease[] {
    return this.leases.list();
  }

  acquireLease(vf: string, holder: LeaseHolder): Lease {
    return this.leases.lease(this.vf(vf).bdf, holder);
  }

  releaseLease(vf: string, holder: LeaseHolder): boolean {
    return this.leases.release(this.vf(vf).bdf, holder);
  }

  transferLease(vf: string, from: LeaseHolder, to: LeaseHolder): Lease {
    return this.leases.transfer(this.vf(vf).bdf, from, to);
  }

  // ---- instances

  /** Start an instance of `spec` (validated here) on this host; its NICs' VFs are leased to it first. */
  async startInstance(rawSpec: unknown, o: StartOptions = {}): Promise<InstanceViewT> {
    this.#open();
    const spec = await this.admitSpec(rawSpec);
    const instanceId = o.instanceId ?? newInstanceId();
    if (!INSTANCE_ID_RE.test(instanceId)) throw invalid("instanceId", instanceId, INSTANCE_ID_RULE);
    if (this.#instances.has(instanceId)) throw new FerryError("FERRY_ERR_CONFLICT", `instance ${instanceId} already runs`, { details: { instanceId } });
    if (o.incoming === true) return this.#start(spec, instanceId, o);
    return this.oneCopy(spec.uuid, spec.name, () => this.#start(spec, instanceId, o));
  }

  /**
   * Run `fn` (a start or a restore of VM `vmUuid`) unless an instance of
   * that VM here already holds its guest (api.ts holdsGuest) or another
   * start of it is under way: a VM never runs twice, whatever a client asks.
   * FERRY_ERR_VM_RUNNING names the instance.
   */
  async oneCopy<T>(vmUuid: string, vmName: string, fn: () => Promise<T>): Promise<T> {
    this.#open();
    if (this.#starting.has(vmUuid)) throw this.#running(vmName, vmUuid, null, "starting");
    this.#starting.add(vmUuid);
    try {
      for (const inst of [...this.#instances.values()].filter((i) => i.meta.vmUuid === vmUuid)) {
        const view = await this.#view(inst);
        if (holdsGuest(view)) throw this.#running(vmName, vmUuid, inst.id, view.state);
      }
      return await fn();
    } finally {
      this.#starting.delete(vmUuid);
    }
  }

  #running(vmName: string, vmUuid: string, instanceId: string | null, state: string): FerryError {
    const host = this.config.name;
    const what = instanceId === null ? "another start of it is under way" : `instance ${instanceId} runs it (${state})`;
    return new FerryError("FERRY_ERR_VM_RUNNING", `VM ${vmName} already runs on host ${host}: ${what}; nothing was started: a VM runs in one instance only (stop that one first, or use it)`, {
      details: { host, vmUuid, instanceId, state },
    });
  }

  async #start(spec: VmSpec, instanceId: string, o: StartOptions): Promise<InstanceViewT> {
    const holder: LeaseHolder = { kind: "instance", vmUuid: spec.uuid, instanceId };

    const wanted = primaryVf(spec);
    const netns = new Set<string>();
    const seen = new Set<string>();
    for (const w of wanted) {
      const field = `spec.nics[${w.nic}].primary.${w.kind === "vfio" ? "host" : "vf"}`;
      if (seen.has(w.bdf)) throw invalid(field, w.bdf, "VF used by two NICs");
      seen.add(w.bdf);
      const vf = this.vf(w.bdf, field);
      if (vf.standIn && w.kind === "vfio") throw invalid(field, w.bdf, "is a stand-in VF on this host: use a primary of kind stand-in");
      if (!vf.standIn && w.kind === "stand-in") throw invalid(field, w.bdf, "is a real VF on this host: use a primary of kind vfio");
      const ns = this.config.networks.find((n) => n.name === vf.network)?.netns;
      if (ns) netns.add(ns);
    }
    // lab: every NIC half on a bridged network gets a tap (QEMU creates it; the agent attaches it)
    const wired = withTaps(this.stepContext(), instanceId, spec);
    if (wired.netns) netns.add(wired.netns);
    if (netns.size > 1) throw invalid("spec.nics", [...netns], "the NICs' networks live in different network namespaces");

    const leased: string[] = [];
    const undo = (): void => {
      for (const b of leased) this.leases.release(b, holder);
    };
    try {
      for (const w of wanted) {
        this.leases.lease(w.bdf, holder);
        leased.push(w.bdf);
      }
    } catch (e) {
      undo();
      throw e;
    }
    let inst: Instance;
    try {
      inst = await launchInstance(this.stepContext(), { spec: wired.spec, instanceId, incoming: o.incoming ?? false, netns: [...netns][0], signal: o.signal });
    } catch (e) {
      undo();
      const dir = instancePaths(this.config.runDir, spec.uuid, instanceId).dir;
      await removeInstanceDir(dir);
      await rmdir(dirname(dir)).catch(() => undefined);
      throw e;
    }
    this.#instances.set(instanceId, inst);
    try {
      const wiring = AbortSignal.any([AbortSignal.timeout(10_000), ...(o.signal ? [o.signal] : [])]);
      await attachTaps(this.stepContext(), wired.spec, wiring);
      await steerInitial(this.stepContext(), wired.spec, wiring);
    } catch (e) {
      await this.stopInstance(instanceId).catch(() => undefined);
      throw e;
    }
    this.#log.info({ instanceId, vm: spec.name, pid: inst.pid, vfs: leased, netns: [...netns][0] }, "instance started");
    return this.#view(inst);
  }

  /**
   * A VM spec from an API body, validated (parseVmSpec), and its kernel and
   * initrd real files inside this host's image dirs: a body may name only
   * those (every other file QEMU is given, the agent chooses itself).
   */
  async admitSpec(raw: unknown): Promise<VmSpec> {
    const spec = parseVmSpec(raw);
    if (spec.noOs) return spec; // QEMU is given no kernel
    const dirs = await Promise.all(this.config.imageDirs.map((d) => realpath(d).catch(() => d)));
    for (const field of ["kernel", "initrd"] as const) {
      const real = await realpath(spec[field]).catch(() => undefined);
      const inside = real !== undefined && dirs.some((d) => real.startsWith(d.endsWith(sep) ? d : d + sep));
      if (!inside || !(await stat(real).then((s) => s.isFile(), () => false))) {
        throw invalid(`spec.${field}`, spec[field], `not a file inside this host's image dirs (${this.config.imageDirs.join(", ")}): the agent boots kernels and initrds from those only; build the test guest there ('npm run setup') or list the dir under imageDirs in the host config`);
      }
    }
    return spec;
  }

  /**
   * A QEMU binary an API body names (local migration): an executable file
   * that the host config allows (qemuBinaries: the file, or its dir), or
   * this agent's own QEMU.
   */
  async allowedQemuBinary(field: string, value: string): Promise<string> {
    const p = v.absPath(field, value);
    if (/[\u0000-\u001f\u007f]/.test(p)) throw invalid(field, value, "contains a control character");
    const own = await this.#ownQemu();
    const allowed = [...this.config.qemuBinaries, ...(own === undefined ? [] : [own])];
    if (!allowed.some((a) => a === p || a === dirname(p))) {
      throw invalid(field, value, `not a QEMU binary host ${this.config.name} allows: list it (or its dir) under qemuBinaries in the host config; allowed now: ${allowed.join(", ") || "none"}`);
    }
    try {
      await access(p, constants.X_OK);
      if (!(await stat(p)).isFile()) throw new Error("not a file");
    } catch {
      throw invalid(field, value, `no executable file at this path on host ${this.config.name}`);
    }
    return p;
  }

  /** This agent's QEMU as an absolute path (a bare name looked up in PATH). */
  async #ownQemu(): Promise<string | undefined> {
    const bin = this.#qemuBinary ?? "qemu-system-x86_64";
    if (isAbsolute(bin)) return bin;
    for (const d of (process.env["PATH"] ?? "").split(delimiter).filter((x) => isAbsolute(x))) {
      if (await access(join(d, bin), constants.X_OK).then(() => true, () => false)) return join(d, bin);
    }
    return undefined;
  }

  #get(id: string): Instance {
    if (!INSTANCE_ID_RE.test(id)) throw invalid("id", id, `not an instance id: ${INSTANCE_ID_RULE}`);
    const inst = this.#instances.get(id);
    if (!inst) throw new FerryError("FERRY_ERR_NOT_FOUND", `no instance ${id} on host ${this.config.name}`, { details: { instanceId: id } });
    return inst;
  }

  /** The live Instance object (for migration steps that drive QMP directly). */
  getInstance(id: string): Instance {
    return this.#get(id);
  }

  async listInstances(): Promise<InstanceListView> {
    const insts = [...this.#instances.values()].sort((a, b) => a.meta.startedAt - b.meta.startedAt);
    return { instances: await Promise.all(insts.map((i) => this.#view(i))), gone: [...this.#gone] };
  }

  async describeInstance(id: string): Promise<InstanceViewT> {
    return this.#view(this.#get(id));
  }

  /** Stop an instance (QMP quit, then SIGKILL), release its leases, remove its runtime dir. */
  async stopInstance(id: string): Promise<StoppedView> {
    const inst = this.#get(id);
    await inst.stop();
    if (await inst.alive()) throw new FerryError("FERRY_ERR_INTERNAL", `instance ${id} (pid ${inst.pid}) survived SIGKILL`);
    this.#instances.delete(id);
    const releasedVfs = this.leases.releaseHeldBy(instanceHolder(inst));
    await inst.remove();
    await rmdir(dirname(inst.paths.dir)).catch(() => undefined);
    await releaseRamFile(this.stepContext(), inst.meta);
    this.#log.info({ instanceId: id, vm: inst.meta.vmName, releasedVfs }, "instance stopped");
    return { instanceId: id, stopped: true, releasedVfs };
  }

  async #view(inst: Instance): Promise<InstanceViewT> {
    const m = inst.meta;
    const holder = instanceHolder(inst);
    const base = {
      instanceId: m.instanceId, vmUuid: m.vmUuid, vmName: m.vmName, pid: m.pid, startedAt: m.startedAt, accel: m.accel,
      netns: m.netns ?? null, incoming: m.incoming, serialLog: inst.paths.serialLog,
      vfs: this.leases.heldBy(holder).map((l) => l.vf),
    };
    const nics = m.spec.nics.map((n) => {
      const vf = n.primary === undefined ? null : n.primary.kind === "vfio" ? n.primary.host : n.primary.vf;
      return { name: n.name, vf: vf !== null && base.vfs.includes(vf) ? vf : null };
    });
    try {
      const status = await queryStatus(inst.qmp, { timeoutMs: QMP_QUERY_TIMEOUT_MS });
      const devices = await listDeviceIds(inst.qmp, { timeoutMs: QMP_QUERY_TIMEOUT_MS });
      return { ...base, nics, state: status.status, running: status.running, devices };
    } catch (e) {
      const alive = await inst.alive();
      return { ...base, nics, state: alive ? "unreachable" : "gone", running: false, devices: [], error: toFerryError(e).message };
    }
  }

  /** What the migration steps (./migration/steps.ts) need from this host. */
  stepContext(): StepContext {
    this.#open();
    return this.#ctx();
  }

  #ctx(): StepContext {
    const instances = this.#instances;
    return {
      host: this.config.name,
      runDir: this.config.runDir,
      memoryDir: this.config.memoryDir,
      accel: this.accel.accel,
      clock: this.#clock,
      leases: this.leases,
      records: this.records,
      run: this.#run,
      vfs: () => [...this.#vfs.values()],
      network: (name) => {
        const n = this.config.networks.find((x) => x.name === name);
        return n ? { bridge: n.bridge, netns: n.netns, forwarding: n.forwarding } : undefined;
      },
      instances: {
        get: (id) => instances.get(id),
        add: (inst) => void instances.set(inst.id, inst),
        remove: (id) => void instances.delete(id),
        all: () => [...instances.values()],
      },
      qemuBinary: this.#qemuBinary,
      faults: this.faults,
      switchoverGraceMs: this.config.switchoverGraceMs,
      log: this.#log,
    };
  }

  // ---- health and lifecycle

  health(): HealthView {
    return {
      host: this.config.name,
      version: this.version,
      accel: this.accel.accel,
      accelReason: this.accel.reason,
      startedAt: this.startedAt,
      uptimeSeconds: Math.round((this.#clock.monotonic() - this.#startedMono) / 100) / 10,
      instances: this.#instances.size,
    };
  }

  #open(): void {
    if (this.#closed) throw new FerryError("FERRY_ERR_STATE", "the agent is shutting down");
  }

  /** Stop the loop, drop QMP connections (QEMU keeps running), close the state file. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#loop.abort();
    for (const inst of this.#instances.values()) inst.qmp.close();
    this.#instances.clear();
    this.#db.close();
    await Promise.resolve();
  }
}

async function readMeta(dir: string): Promise<{ instanceId: string; vmUuid: string; vmName: string; pid: number; ramFile?: string } | null> {
  try {
    const o = v.obj("meta", JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as unknown);
    const legacy = typeof o["spec"] === "object" && o["spec"] !== null ? (o["spec"] as Record<string, unknown>)["sharedMemoryPath"] : undefined;
    const ramFile = o["ramFile"] ?? legacy;
    return {
      instanceId: v.str("instanceId", o["instanceId"]),
      vmUuid: v.str("vmUuid", o["vmUuid"]),
      vmName: v.str("vmName", o["vmName"]),
      pid: v.int("pid", o["pid"], 1, 2 ** 31),
      ...(typeof ramFile === "string" ? { ramFile } : {}),
    };
  } catch (e) {
    if (isFerryError(e) || e instanceof SyntaxError || (e instanceof Error && "code" in e)) return null;
    throw e;
  }
}
