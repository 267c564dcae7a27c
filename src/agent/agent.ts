// The host agent: wiring for one hypervisor host. It reads the host config,
// the sysfs inventory and the SQLite state (leases), reconnects to the QEMU
// instances already running under the run dir, and offers the operations
// the HTTP routes expose. It never sees HTTP: routes parse requests into
// calls on this object (Firecracker's api_server → VMM split).
//
// QEMU instances are detached processes: closing the agent closes their QMP
// connections only, and a new agent on the same config adopts them again.
import type { DatabaseSync } from "node:sqlite";
import { rmdir } from "node:fs/promises";
import { dirname } from "node:path";
import { systemClock } from "../core/clock.ts";
import type { Clock } from "../core/clock.ts";
import { FerryError, invalid, toFerryError } from "../core/errors.ts";
import { silentLogger } from "../core/log.ts";
import type { Logger } from "../core/log.ts";
import { run as defaultRun } from "../core/run.ts";
import { probeQemuCaps } from "../host/qemu-caps.ts";
import { calcDirtyRate, queryDirtyRate, queryMigrate, queryMigrationLimits } from "../qmp/commands.ts";
import type { DirtyRateReply } from "../wire/instance-ops.ts";
import type { QemuCaps } from "../host/qemu-caps.ts";
import type { Runner } from "../core/run.ts";
import { stateFile, usableVfs } from "../host/config.ts";
import type { HostConfig, UsableVf } from "../host/config.ts";
import { LeaseStore, openStateDb, RecordStore } from "../host/leases.ts";
import type { Lease, LeaseHolder } from "../host/leases.ts";
import { readInventory } from "../host/sysfs.ts";
import { realVfSeam } from "../host/vf-setup.ts";
import { probeNativeVfioMigration } from "../host/native-migration.ts";
import type { NativeVfioMigration } from "../host/native-migration.ts";
import type { VfSeam } from "../host/vf-setup.ts";
import type { Inventory } from "../host/sysfs.ts";
import * as v from "../model/validate.ts";
import type { VmSpec } from "../model/vm.ts";
import { detectAccel } from "../qemu/accel.ts";
import type { AccelChoice } from "../qemu/accel.ts";
import { INSTANCE_ID_RE, INSTANCE_ID_RULE, newInstanceId } from "../qemu/instance.ts";
import { migrationUnderWay } from "../qemu/migration.ts";
import type { Instance } from "../qemu/instance.ts";
import pkg from "../../package.json" with { type: "json" };
import { admitSpec, allowedQemuBinary } from "./admission.ts";
import type { GoneInstanceT, HealthView, InstanceListView, InstanceViewT, InventoryView, StoppedView } from "../wire/agent-api.ts";
import { holdsGuest } from "../wire/agent-api.ts";
import { Faults } from "./faults.ts";
import { startNew } from "./instance-start.ts";
import type { StartOptions } from "./instance-start.ts";
import { viewInstance } from "./instance-view.ts";
import { buildInventoryView } from "./inventory.ts";
import type { StepContext } from "./migration/context.ts";
import { reapStaleDestinations } from "./migration/destination.ts";
import { pruneEnded } from "./migration/ended.ts";
import { knownMigrations, reconcileEnded } from "./migration/reconcile.ts";
import { releaseRamFile } from "./migration/wiring.ts";
import { hostStepContext } from "./step-context.ts";
import { setUpTransport } from "./migration/transport.ts";
import type { MigrationTransport } from "./migration/transport.ts";
import { keepRearming, reapDead, recover } from "./recovery.ts";
import type { RecoveryReport } from "./recovery.ts";
import type { AgentState } from "./state.ts";
import { instanceHolder } from "./state.ts";
import { releaseHeld, vfLife } from "./vf-life.ts";
import type { VfLife } from "./vf-life.ts";

export const AGENT_VERSION: string = pkg.version;
export const DEFAULT_RECLAIM_INTERVAL_MS = 10_000;

export interface AgentOptions {
  config: HostConfig;
  clock?: Clock;
  log?: Logger;
  /** Default: detectAccel() once at startup. */
  accel?: AccelChoice;
  qemuBinary?: string;
  /** Host commands (ip …) for migration steps; default core/run.ts. */
  run?: Runner;
  /** Where the VF lifecycle's sysfs writes and `ip … vf N …` commands go (default: the real one over `run`); tests pass a recording stand-in. */
  vfSeam?: VfSeam;
  /** How often expired migration leases are reclaimed and dead instances reaped (default 10 s). */
  reclaimIntervalMs?: number;
  signal?: AbortSignal;
}

export type { RecoveryReport } from "./recovery.ts";
export type { StartOptions } from "./instance-start.ts";

interface Parts {
  config: HostConfig;
  clock: Clock;
  log: Logger;
  accel: AccelChoice;
  qemuBinary: string | undefined;
  run: Runner;
  vfSeam: VfSeam;
  db: DatabaseSync;
  inventory: Inventory;
  vfs: UsableVf[];
  interval: number;
  transport: MigrationTransport | null;
}

export class Agent {
  readonly config: HostConfig;
  readonly accel: AccelChoice;
  readonly version = AGENT_VERSION;
  /** This host's migration network, ready (host.yaml migration:); null: incoming migrations listen on 127.0.0.1. */
  readonly transport: MigrationTransport | null;
  readonly startedAt: number;
  readonly leases: LeaseStore;
  readonly records: RecordStore;
  readonly faults: Faults;
  /** Real VFs set up before QEMU sees them and reset when let go (vf-life.ts). */
  readonly vfLife: VfLife;
  /** Native VFIO device-state migration on this host, probed at open (host/native-migration.ts). */
  vfioMigration: NativeVfioMigration = { available: false, reason: "not probed yet" };
  /** This host's QEMU: version, machine types, CPU models (host/qemu-caps.ts), probed at open; null when QEMU could not be asked. */
  qemuCaps: QemuCaps | null = null;
  recovery: RecoveryReport = { reconnected: [], gone: [], unreachable: [], orphanLeases: [], rearmPending: [] };

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
  /** What recovery.ts, instance-start.ts and instance-view.ts work on. */
  readonly #s: AgentState;
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
    this.vfLife = vfLife({ config: p.config, seam: p.vfSeam, records: this.records, leases: this.leases, vfs: this.#vfs, log: p.log });
    this.#interval = p.interval;
    this.transport = p.transport;
    this.startedAt = p.clock.now();
    this.#s = { config: p.config, clock: p.clock, log: p.log, leases: this.leases, instances: this.#instances, unreachable: this.#unreachable, gone: this.#gone, ctx: () => this.#ctx() };
    this.#startedMono = p.clock.monotonic();
  }

  /** Load the host: inventory, state, accelerator; adopt running instances; start the reclaim loop. */
  static async open(o: AgentOptions): Promise<Agent> {
    const clock = o.clock ?? systemClock;
    const log = (o.log ?? silentLogger).child({ host: o.config.name });
    const inventory = await readInventory({ root: o.config.sysfsRoot, signal: o.signal });
    const vfs = usableVfs(o.config, inventory);
    const accel = o.accel ?? (await detectAccel());
    // the migration address must be this host's, and TLS files readable, before anything starts
    const transport = o.config.migration ? await setUpTransport(o.config.migration, o.config.runDir, o.run ? { run: o.run } : {}) : null;
    if (transport === null) log.warn({}, "no migration network configured (host.yaml migration:): incoming migrations listen on 127.0.0.1, so only a source on this same machine can reach them");
    else if (transport.tls === null) log.warn({ address: transport.address }, "migration.tls: false: migration streams to and from this host are plain TCP (guest memory readable on the migration network)");
    const db = openStateDb(stateFile(o.config));
    const agent = new Agent({ config: o.config, clock, log, accel, qemuBinary: o.qemuBinary, run: o.run ?? defaultRun, vfSeam: o.vfSeam ?? realVfSeam(o.run ?? defaultRun), db, inventory, vfs, interval: o.reclaimIntervalMs ?? DEFAULT_RECLAIM_INTERVAL_MS, transport });
    try {
      agent.recovery = await recover(agent.#s, o.signal);
      await agent.vfLife.sweep();
      const [vfio, caps] = await Promise.all([
        probeNativeVfioMigration({ run: o.run ?? defaultRun, qemuBinary: o.qemuBinary, sysfsRoot: o.config.sysfsRoot, vfs: vfs.map((x) => ({ vendor: x.vendor, standIn: x.standIn !== null })), signal: o.signal }),
        probeQemuCaps(o.run ?? defaultRun, o.qemuBinary, o.signal),
      ]);
      agent.vfioMigration = vfio;
      agent.qemuCaps = caps.caps;
      if (caps.caps === null) log.warn({ reason: caps.reason }, "cannot tell the controller this host's QEMU version, machine types and CPU models: migration plans will not check them");
    } catch (e) {
      await agent.close();
      throw e;
    }
    void agent.#runLoop();
    void keepRearming(agent.#s, agent.recovery.rearmPending, agent.#loop.signal);
    log.info({ accel: accel.accel, vfs: vfs.length, vfioMigration: agent.vfioMigration, ...agent.#recoverySummary() }, "agent ready");
    return agent;
  }

  #recoverySummary(): Record<string, unknown> {
    const r = this.recovery;
    return { reconnected: r.reconnected, gone: r.gone.map((g) => g.instanceId), unreachable: r.unreachable, orphanLeases: r.orphanLeases.map((l) => l.vf) };
  }

  // ---- recovery and the periodic tick

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
    const now = this.#clock.now();
    const expired = this.leases.list().filter((l) => l.holder.kind === "migration" && l.holder.expiresAt <= now);
    await this.vfLife.release(expired.map((l) => l.vf));
    for (const l of this.leases.reclaimExpired(now)) this.#log.info({ vf: l.vf, holder: l.holder }, "reclaimed expired migration lease");
    await this.vfLife.sweep();
    pruneEnded(this.records, this.#clock.now());
    await reapDead(this.#s);
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

  /** The controller says these migrations have ended: release what this host holds of them (migration/reconcile.ts). */
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
    return buildInventoryView(this.config, this.#inventory, this.leases.list(), this.vfioMigration);
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
    const parts = { vf: (bdf: string, field: string) => this.vf(bdf, field), ctx: () => this.stepContext(), stop: (id: string) => this.stopInstance(id) };
    return viewInstance(this.#s, await startNew(this.#s, parts, spec, instanceId, o));
  }

  /**
   * A VM spec from an API body, validated (parseVmSpec), and its kernel and
   * initrd real files inside this host's image dirs: a body may name only
   * those (every other file QEMU is given, the agent chooses itself).
   */
  admitSpec(raw: unknown): Promise<VmSpec> {
    return admitSpec(this.config, raw);
  }

  /**
   * A QEMU binary an API body names (local migration): an executable file
   * that the host config allows (qemuBinaries: the file, or its dir), or
   * this agent's own QEMU.
   */
  allowedQemuBinary(field: string, value: string): Promise<string> {
    return allowedQemuBinary(this.config, this.#qemuBinary, field, value);
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

  /**
   * Measure instance `id`'s guest dirty rate for `seconds` (QEMU
   * calc-dirty-rate, then query-dirty-rate until measured), with the
   * migration parameters it holds now: a migration plan's prediction.
   */
  async dirtyRate(id: string, seconds: number, signal?: AbortSignal): Promise<DirtyRateReply> {
    const inst = this.#get(id);
    const o = { timeoutMs: 2_000, ...(signal ? { signal } : {}) };
    // not while its migration streams: QEMU's sampler and its migration thread both walk the dirty bitmap (a sample left
    // running under a migration that was then cancelled is the suspect of a monitor that stopped answering)
    const m = await queryMigrate(inst.qmp, o);
    if (migrationUnderWay(m.status)) {
      throw new FerryError("FERRY_ERR_STATE", `instance ${id} is migrating (QEMU: ${m.status}): its dirty rate is not sampled now; the migration's progress has QEMU's dirty-pages rate ('ferry migration watch')`, { details: { instanceId: id, migrationStatus: m.status } });
    }
    await calcDirtyRate(inst.qmp, seconds, o).catch(async (e: unknown) => {
      // one measurement at a time per instance: another one running is waited for below
      if ((await queryDirtyRate(inst.qmp, o)).status !== "measuring") throw e;
    });
    const until = this.#clock.monotonic() + seconds * 1000 + 5_000;
    for (;;) {
      await this.#clock.sleep(100, signal);
      const r = await queryDirtyRate(inst.qmp, o);
      if (r.status === "measured" && r.dirtyRateMiBps !== undefined) {
        const limits = await queryMigrationLimits(inst.qmp, o);
        return { dirtyRateMiBps: r.dirtyRateMiBps, seconds: r.calcSeconds, mode: r.mode, ramBytes: inst.meta.spec.memoryMiB * 2 ** 20, maxBandwidthBytes: limits.maxBandwidth, downtimeLimitMs: limits.downtimeLimit };
      }
      if (this.#clock.monotonic() > until) throw new FerryError("FERRY_ERR_TIMEOUT", `instance ${id}: QEMU did not finish measuring the dirty rate within ${seconds + 5} s (status ${r.status}); try again`);
    }
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
    const releasedVfs = await releaseHeld(this.vfLife, this.leases, instanceHolder(inst));
    await inst.remove();
    await rmdir(dirname(inst.paths.dir)).catch(() => undefined);
    await releaseRamFile(this.stepContext(), inst.meta);
    this.#log.info({ instanceId: id, vm: inst.meta.vmName, releasedVfs }, "instance stopped");
    return { instanceId: id, stopped: true, releasedVfs };
  }

  #view(inst: Instance): Promise<InstanceViewT> {
    return viewInstance(this.#s, inst);
  }

  /** What the migration steps (./migration/steps.ts) need from this host. */
  stepContext(): StepContext {
    this.#open();
    return this.#ctx();
  }

  #ctx(): StepContext {
    return hostStepContext({
      config: this.config, accel: this.accel.accel, clock: this.#clock, leases: this.leases, records: this.records, run: this.#run,
      vfs: this.#vfs, instances: this.#instances, qemuBinary: this.#qemuBinary, vfLife: this.vfLife, faults: this.faults, log: this.#log, transport: this.transport,
    });
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
