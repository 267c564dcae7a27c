// The controller: hosts (registered by their agents' heartbeats, marked down
// when they stop), VMs (created and started through the agents), migrations
// (planned with the scheduler, run by the durable coordinator in the
// background, the VM record updated from the outcome). The HTTP layer
// (src/api) turns requests into calls here; nothing here knows HTTP.
import { randomBytes, randomUUID } from "node:crypto";
import type { InstanceViewT, InventoryView } from "../agent/api.ts";
import { holdsGuest } from "../agent/api.ts";
import { AgentClient } from "../agent/client.ts";
import type { Clock } from "../core/clock.ts";
import { FerryError, isFerryError, toFerryError } from "../core/errors.ts";
import { didYouMean } from "../core/suggest.ts";
import type { Logger } from "../core/log.ts";
import type { CancelReport, RunnerDeps } from "../migration/runner.ts";
import { cancel, createMigration, resumeAll, runMigration } from "../migration/runner.ts";
import { Type } from "typebox";
import type { Connectivity, Deadlines, MigrationPlan, MigrationRecord, NicPlan } from "../migration/types.ts";
import { isTerminal } from "../migration/types.ts";
import type { ClusterSnapshot, PlacementVm } from "../model/cluster.ts";
import type { EventLog } from "../model/events.ts";
import type { NicMode, NicPolicy } from "../model/vm.ts";
import { place } from "../scheduler/place.ts";
import type { Rejection } from "../scheduler/rejections.ts";
import type { Destination } from "../scheduler/types.ts";
import type { ClusterStore, HostRecord, VmNicRecord, VmPlace, VmRecord } from "../store/cluster.ts";
import type { Store } from "../migration/store-port.ts";
import { HttpAgentPort } from "./agent-port.ts";
import type { ControllerConfig } from "./config.ts";
import { heartbeatIntervalMs } from "./config.ts";
import { EventBus } from "./events.ts";
import type { ControllerEvent } from "./events.ts";
import { buildSnapshot } from "./snapshot.ts";
import { assignGuestPorts, buildVmSpec, checkGuestFill, checkNicNetworks, guestAddress, newMac, noVfWarning } from "./vm-spec.ts";

const LooseObject = Type.Object({}, { additionalProperties: true });

export interface ControllerDeps {
  config: Pick<ControllerConfig, "heartbeatTimeoutMs" | "hostCapacity" | "deadlines">;
  store: Store;
  cluster: ClusterStore;
  clock: Clock;
  log: Logger;
  /** The cluster's agent token. */
  agentToken: string;
  guestImage: () => Promise<{ kernel: string; initrd: string }>;
  /** Randomness for MACs (default crypto). */
  random?: (n: number) => Buffer;
  /** The agents' I/O seam (tests). */
  fetch?: typeof fetch;
  /** Lab: measures each NIC's connectivity during a migration (a peer probing the guest). */
  connectivity?: ConnectivityWatch;
  /** Where events are written down (the SQLite file); without it they live in memory only. */
  eventLog?: EventLog<ControllerEvent>;
}

/** Watches a VM's NICs from the start of a migration until each answers steadily past its end. */
export interface ConnectivityWatch {
  start(vm: VmRecord): Promise<ConnectivityHandle>;
}

export interface SettleOptions {
  /** Epoch ms the migration started (figures count from then). */
  from: number;
  /** Epoch ms its outcome was decided. */
  endedAt: number;
  /** Aborted: stop now, with the figures so far (a NIC not yet steady: time until stable null). */
  signal?: AbortSignal;
}

export interface ConnectivityHandle {
  /** Watch on until every NIC has answered steadily for the settle window past `endedAt` (or the watch's deadline); each NIC's figures. */
  settle(o: SettleOptions): Promise<Record<string, Connectivity>>;
}

/**
 * A NIC out for longer than this after the migration's end was out *after*
 * the migration (a failover NIC's switchover outage runs ≈ 100–150 ms past
 * the end: Finish deems a primary back once QEMU lists it, the guest passes
 * traffic on it a moment later; a lone ≈ 100 ms stall of a TCG guest on a
 * busy host, seconds later, is not an outage of its network either).
 */
export const LATE_OUTAGE_MS = 1000;

/** What an operator should hear about a NIC's connectivity (pure): not steady in time, or out well after the migration had ended. */
export function connectivityWarnings(c: Readonly<Record<string, Connectivity>>): string[] {
  const out: string[] = [];
  for (const [nic, x] of Object.entries(c)) {
    if (x.untilStableMs === null) {
      out.push(`NIC ${nic} did not answer steadily for ${x.settleMs ?? "?"} ms within the ${x.watchedMs ?? "?"} ms it was watched (longest gap ${x.longestGapMs} ms): check the guest's network ('ferry migration show')`);
    } else if (x.outAfterEndMs !== undefined) {
      if (x.outAfterEndMs > LATE_OUTAGE_MS) {
        const steady = x.untilStableMs !== undefined && x.endMs !== undefined ? `; it answered steadily from ${Math.max(0, x.untilStableMs - x.endMs)} ms after the end` : "";
        out.push(`NIC ${nic} was unreachable for ${x.outAfterEndMs} ms after the migration had ended (longest gap ${x.longestGapMs} ms${steady}): check the guest's network and the switch's ARP/MAC tables`);
      }
    } else if (x.untilStableMs !== undefined && x.endMs !== undefined && x.untilStableMs > x.endMs + LATE_OUTAGE_MS) {
      // a record from before outAfterEndMs: only the time until stable tells
      out.push(`NIC ${nic} was unreachable after the migration had ended: it answered steadily only ${x.untilStableMs - x.endMs} ms after the end (longest gap ${x.longestGapMs} ms)`);
    }
  }
  return out;
}

/** How many of a host's VFs on one network are leased (to an instance or a migration). */
export interface VfUse {
  network: string;
  used: number;
  total: number;
}

export interface HeartbeatInput {
  name: string;
  url: string;
  version: string;
  accel: string;
  /** Migrations the agent holds anything of (records, VF leases). */
  migrations?: string[];
}

export interface CreateVmInput {
  name: string;
  host: string;
  memoryMiB: number;
  vcpus?: number;
  nics: { network: string; mode: NicMode; policy: NicPolicy }[];
  noOs?: boolean;
  /** Lab/test guest: fill this much guest RAM with random data at boot (benchmarks); ≤ memoryMiB / 2 − 64. */
  guestFillMiB?: number;
  /** Guest RAM in a shared file: local migrations copy no RAM. */
  sharedMemory?: boolean;
}

export interface MigrateInput {
  vm: string;
  to?: string;
  deadlines?: Partial<Deadlines>;
  /** Use this destination (host and VFs) from an evacuation plan instead of the scheduler's first; the host must still accept the VM. */
  destination?: Destination;
  /** The migration stream's bandwidth cap (bytes/s), for the agent's perform step. */
  maxBandwidthBytes?: number;
}

export interface PlanView {
  vm: string;
  source: string;
  destinations: Destination[];
  rejections: Rejection[];
  message: string | null;
}

export interface DeviceRow {
  host: string;
  vf: string;
  pf: string;
  network: string;
  vendor: string;
  device: string;
  numaNode: number | null;
  mac: string | null;
  model: string;
  lease: string | null;
  vm: string | null;
}

export class Controller {
  readonly events: EventBus;
  readonly #d: ControllerDeps;
  readonly #clients = new Map<string, AgentClient>();
  readonly #busy = new Set<string>();
  readonly #running = new Map<string, Promise<MigrationRecord>>();
  /** Migrations whose NICs are still watched after the outcome (lab), by id: cut ends the watch now. */
  readonly #measuring = new Map<string, { vm: string; cut: AbortController; done: Promise<void> }>();
  readonly #stop = new AbortController();
  #liveness: Promise<void> | null = null;
  #vmCheckAt = 0;
  /** Agents could not reach a controller that was not running: their silence before this does not count. */
  #startedAt = 0;

  constructor(deps: ControllerDeps) {
    this.#d = deps;
    this.events = new EventBus(2000, {
      ...(deps.eventLog ? { log: deps.eventLog } : {}),
      onLogError: (e) => deps.log.warn({ err: e instanceof Error ? e.message : String(e) }, "event log: cannot write or read events"),
    });
  }

  get #runner(): RunnerDeps {
    return {
      store: this.#d.store,
      port: new HttpAgentPort((h) => this.agent(h)),
      clock: this.#d.clock,
      log: this.#d.log,
      signal: this.#stop.signal,
      onEvent: (e) => this.events.publish(e),
    };
  }

  /** The client of a host's agent (from its last heartbeat). */
  agent(host: string): AgentClient {
    const c = this.#clients.get(host);
    if (!c) throw new FerryError("FERRY_ERR_AGENT", `no agent known for host ${host} (it has not sent a heartbeat)`, { details: { host } });
    return c;
  }

  #client(h: HostRecord): AgentClient {
    const c = this.#clients.get(h.name);
    if (c && c.baseUrl === h.url.replace(/\/+$/, "")) return c;
    const fresh = new AgentClient({ baseUrl: h.url, token: this.#d.agentToken, ...(this.#d.fetch ? { fetch: this.#d.fetch } : {}) });
    this.#clients.set(h.name, fresh);
    return fresh;
  }

  /** Load the hosts, start the liveness loop, resume every migration not yet done (in the background). */
  async start(): Promise<void> {
    for (const h of await this.#d.cluster.listHosts()) this.#client(h);
    this.#liveness = this.#livenessLoop();
    this.#startedAt = this.#d.clock.now();
    const active = await this.#d.store.listActiveMigrations();
    const runner = this.#runner;
    for (const r of active) if (!r.plan.link) this.#busy.add(r.plan.vm.uuid);
    const vmOf = new Map(active.map((r) => [r.id, r.plan.vm.uuid]));
    void resumeAll(runner).then(
      async (results) => {
        for (const r of results) {
          if (r.record) await this.#settle(r.record).catch((e: unknown) => this.#d.log.error({ err: e, id: r.id }, "cannot update the VM after its migration"));
          else if (r.error && r.error.code !== "FERRY_ERR_ABORTED") this.#d.log.error({ id: r.id, err: r.error.message }, "resumed migration failed");
          if (r.error?.code !== "FERRY_ERR_ABORTED") this.#busy.delete(vmOf.get(r.id) ?? "");
        }
      },
      (e: unknown) => this.#d.log.error({ err: e }, "resume failed"),
    );
  }

  async close(): Promise<void> {
    this.#stop.abort(new FerryError("FERRY_ERR_ABORTED", "controller shutting down"));
    await this.#liveness;
    await Promise.allSettled(this.#running.values());
    for (const m of this.#measuring.values()) m.cut.abort();
    await Promise.allSettled([...this.#measuring.values()].map((m) => m.done));
  }

  // ------------------------------------------------------------------ hosts

  async heartbeat(h: HeartbeatInput): Promise<{ intervalMs: number; ended?: string[] }> {
    const now = this.#d.clock.now();
    const prev = await this.#d.cluster.getHost(h.name);
    // an operator's drain outlives heartbeats and a down spell (evacuation.ts)
    const state = prev?.state === "draining" || prev?.drain === true ? "draining" : "up";
    const rec = await this.#d.cluster.upsertHost({ name: h.name, url: h.url, version: h.version, accel: h.accel, state, lastHeartbeat: now, registeredAt: prev?.registeredAt ?? now, ...(prev?.drain === true ? { drain: true } : {}) });
    this.#client(rec);
    if (!prev) this.events.publish({ type: "host-registered", host: h.name, reason: `agent ${h.url} (${h.version}, ${h.accel})`, at: now });
    else if (prev.state === "down") this.events.publish({ type: "host-up", host: h.name, reason: "heartbeat received", at: now });
    const intervalMs = heartbeatIntervalMs(this.#d.config.heartbeatTimeoutMs);
    if (h.migrations === undefined) return { intervalMs };
    // a migration this store never recorded is no migration of this cluster: as good as ended
    const ended: string[] = [];
    for (const id of h.migrations) {
      const r = await this.#d.store.getMigration(id);
      if (!r || isTerminal(r)) ended.push(id);
    }
    return { intervalMs, ended };
  }

  /** Mark down every host whose last heartbeat is older than the timeout. */
  async checkLiveness(): Promise<void> {
    const now = this.#d.clock.now();
    for (const h of await this.#d.cluster.listHosts()) {
      const silent = now - Math.max(h.lastHeartbeat, this.#startedAt);
      if (h.state === "down" || silent <= this.#d.config.heartbeatTimeoutMs) continue;
      await this.#d.cluster.setHostState(h.name, "down");
      const reason = `no heartbeat for ${now - h.lastHeartbeat} ms (timeout ${this.#d.config.heartbeatTimeoutMs} ms)`;
      this.#d.log.warn({ host: h.name }, `host down: ${reason}`);
      this.events.publish({ type: "host-down", host: h.name, reason, at: now });
    }
  }

  async #livenessLoop(): Promise<void> {
    const every = Math.max(100, Math.min(1000, Math.floor(this.#d.config.heartbeatTimeoutMs / 4)));
    while (!this.#stop.signal.aborted) {
      try {
        await this.#d.clock.sleep(every, this.#stop.signal);
      } catch {
        return;
      }
      await this.checkLiveness().catch((e: unknown) => this.#d.log.error({ err: e }, "liveness check failed"));
      if (this.#d.clock.monotonic() >= this.#vmCheckAt) {
        this.#vmCheckAt = this.#d.clock.monotonic() + 3_000;
        await this.checkVms().catch((e: unknown) => this.#d.log.error({ err: e }, "VM check failed"));
      }
    }
  }

  /**
   * A VM recorded running whose QEMU its agent reports gone (exited, reaped)
   * is down: its record says so (state unknown, no instance), never
   * "running" on a dead instance. Only the agent's positive report counts,
   * and VMs busy with a migration or another operation are left alone.
   */
  async checkVms(): Promise<void> {
    const vms = (await this.#d.cluster.listVms()).filter((v) => v.state === "running" && v.instanceId !== null && !this.#busy.has(v.uuid));
    const hosts = new Set(vms.map((v) => v.host));
    for (const h of (await this.#d.cluster.listHosts()).filter((x) => hosts.has(x.name) && x.state !== "down")) {
      const list = await this.#client(h).instances({ timeoutMs: 3_000, signal: this.#stop.signal }).catch(() => undefined);
      if (!list) continue;
      const gone = new Map(list.gone.map((g) => [g.instanceId, g]));
      for (const vm of vms.filter((v) => v.host === h.name)) {
        const g = gone.get(vm.instanceId ?? "");
        if (!g || this.#busy.has(vm.uuid)) continue;
        // never down while another agent runs it: the record follows that instance
        const found = (await this.#runningInstances(vm.uuid)).found.find((i) => i.running);
        const now = this.#d.clock.now();
        const was: VmPlace = { host: vm.host, instanceId: vm.instanceId };
        if (found) {
          if (!(await this.#d.cluster.putVmIf(this.#runningAt(vm, found, now), was))) continue;
          this.#d.log.warn({ vm: vm.name, host: found.host, instanceId: found.instanceId }, `VM's recorded instance is gone (${g.reason}), but ${found.host} runs it: the record follows that instance`);
          this.events.publish({ type: "vm-moved", vm: vm.name, host: found.host, instanceId: found.instanceId, at: now });
          continue;
        }
        if (!(await this.#d.cluster.putVmIf({ ...vm, instanceId: null, state: "unknown", updatedAt: now }, was))) continue;
        this.#d.log.warn({ vm: vm.name, host: h.name, instanceId: g.instanceId }, `VM down: ${g.reason}`);
        this.events.publish({ type: "vm-stopped", vm: vm.name, host: h.name, instanceId: g.instanceId, at: now });
      }
    }
  }

  listHosts(): Promise<HostRecord[]> {
    return this.#d.cluster.listHosts();
  }

  /** The hosts with each one's VF use per network, from its agent's inventory (null: it did not answer). */
  async hostsWithVfs(): Promise<(HostRecord & { vfs: VfUse[] | null })[]> {
    const hosts = await this.#d.cluster.listHosts();
    const invs = await this.#inventories(hosts);
    return hosts.map((h) => {
      const inv = invs.get(h.name);
      return { ...h, vfs: inv === undefined ? null : inv.networks.map((n) => ({ network: n.name, used: n.vfs - n.free, total: n.vfs })) };
    });
  }

  /** For evacuation (./evacuation.ts): the cluster store and a fresh snapshot. */
  get cluster(): ClusterStore {
    return this.#d.cluster;
  }

  async snapshot(): Promise<{ snapshot: ClusterSnapshot; vms: VmRecord[] }> {
    const { snapshot, vms } = await this.#snapshot();
    return { snapshot, vms };
  }

  async #inventories(hosts: readonly HostRecord[]): Promise<Map<string, InventoryView>> {
    const live = hosts.filter((h) => h.state !== "down");
    const got = await Promise.all(
      live.map((h) =>
        this.#client(h)
          .inventory({ timeoutMs: 3_000, signal: this.#stop.signal })
          .then(
            (inv) => [h.name, inv] as const,
            (e: unknown) => {
              this.#d.log.warn({ host: h.name, err: toFerryError(e).message }, "inventory unavailable");
              return undefined;
            },
          ),
      ),
    );
    return new Map(got.filter((x) => x !== undefined));
  }

  async #snapshot(): Promise<{ snapshot: ClusterSnapshot; inventories: Map<string, InventoryView>; vms: VmRecord[] }> {
    const hosts = await this.#d.cluster.listHosts();
    const vms = await this.#d.cluster.listVms();
    const inventories = await this.#inventories(hosts);
    return { snapshot: buildSnapshot({ hosts, vms, inventories, capacity: this.#d.config.hostCapacity }), inventories, vms };
  }

  async devices(filter: { host?: string; network?: string } = {}): Promise<DeviceRow[]> {
    const hosts = (await this.#d.cluster.listHosts()).filter((h) => filter.host === undefined || h.name === filter.host);
    if (filter.host !== undefined && hosts.length === 0) throw new FerryError("FERRY_ERR_NOT_FOUND", `host ${filter.host} not found`, { details: { host: filter.host } });
    const invs = await this.#inventories(hosts);
    const vms = await this.#d.cluster.listVms();
    const byInstance = new Map(vms.filter((v) => v.instanceId !== null).map((v) => [`${v.host}/${v.instanceId ?? ""}`, v.name]));
    const byUuid = new Map(vms.map((v) => [v.uuid, v.name]));
    const rows: DeviceRow[] = [];
    for (const [host, inv] of [...invs].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      for (const v of inv.vfs) {
        if (filter.network !== undefined && v.network !== filter.network) continue;
        const l = v.lease;
        rows.push({
          host, vf: v.bdf, pf: v.pf, network: v.network, vendor: v.vendor, device: v.device, numaNode: v.numaNode, mac: v.mac,
          model: v.standIn ? `stand-in ${v.standIn.model}` : "vfio",
          lease: l === null ? null : l.kind === "instance" ? `instance ${l.instanceId}` : `migration ${l.migrationId}`,
          vm: l === null ? null : l.kind === "instance" ? (byInstance.get(`${host}/${l.instanceId}`) ?? byUuid.get(l.vmUuid) ?? null) : (byUuid.get(l.vmUuid) ?? null),
        });
      }
    }
    return rows;
  }

  // ------------------------------------------------------------------ VMs

  listVms(): Promise<VmRecord[]> {
    return this.#d.cluster.listVms();
  }

  async getVm(name: string): Promise<VmRecord> {
    const vm = await this.#d.cluster.getVm(name);
    if (!vm) throw new FerryError("FERRY_ERR_NOT_FOUND", `vm ${name} not found`, { details: { vm: name } });
    return vm;
  }

  async #exclusive<T>(uuid: string, what: string, fn: () => Promise<T>): Promise<T> {
    if (this.#busy.has(uuid)) throw new FerryError("FERRY_ERR_STATE", `${what}: the VM is busy: a migration or another operation on it is in progress; nothing was changed: wait for it to end ('ferry migrations', 'ferry events') and try again`, { details: { vm: uuid } });
    this.#busy.add(uuid);
    try {
      return await fn();
    } finally {
      this.#busy.delete(uuid);
    }
  }

  /**
   * Every instance of VM `uuid` that holds its guest (api.ts holdsGuest),
   * asked of every agent whose host is not down; `unanswered`: the hosts
   * whose agents did not say.
   */
  async #runningInstances(uuid: string): Promise<{ found: (InstanceViewT & { host: string })[]; unanswered: string[] }> {
    const hosts = (await this.#d.cluster.listHosts()).filter((h) => h.state !== "down");
    const found: (InstanceViewT & { host: string })[] = [];
    const unanswered: string[] = [];
    await Promise.all(hosts.map(async (h) => {
      const list = await this.#client(h).instances({ timeoutMs: 5_000, signal: this.#stop.signal }).catch(() => undefined);
      if (!list) unanswered.push(h.name);
      else for (const i of list.instances) if (i.vmUuid === uuid && holdsGuest(i)) found.push({ ...i, host: h.name });
    }));
    return { found: found.sort((a, b) => (a.host < b.host ? -1 : 1)), unanswered: unanswered.sort() };
  }

  /** Before `vm start` / `vm restore`: FERRY_ERR_VM_RUNNING when any agent runs the VM (nothing is started); FERRY_ERR_AGENT when one cannot say. */
  async #refuseIfRunning(vm: VmRecord, what: "start" | "restore"): Promise<void> {
    const { found, unanswered } = await this.#runningInstances(vm.uuid);
    const f = found[0];
    if (f) {
      throw new FerryError("FERRY_ERR_VM_RUNNING", `vm ${vm.name} already runs on host ${f.host} (instance ${f.instanceId}, ${f.state}): nothing was done; a VM runs in one instance only: 'ferry vm stop ${vm.name}' first to ${what} it anew`, {
        details: { vm: vm.name, host: f.host, instanceId: f.instanceId, state: f.state },
      });
    }
    if (unanswered.length > 0) {
      throw new FerryError("FERRY_ERR_AGENT", `cannot ${what} vm ${vm.name}: the agent of ${unanswered.join(", ")} did not say whether it runs the VM; nothing was done: try again once it answers (or is marked down, 'ferry hosts')`, {
        details: { vm: vm.name, hosts: unanswered },
      });
    }
  }

  /** The VM's record as it runs in instance `i` (each NIC's VF as the agent reports it). */
  #runningAt(vm: VmRecord, i: InstanceViewT & { host: string }, now: number): VmRecord {
    const vfs = new Map((i.nics ?? []).map((n) => [n.name, n.vf]));
    return { ...vm, host: i.host, instanceId: i.instanceId, state: "running", nics: vm.nics.map((n) => ({ ...n, vf: vfs.get(n.name) ?? null })), updatedAt: now };
  }

  /**
   * Pick a free VF on `host` for every NIC that wants one (the scheduler,
   * restricted to that host). `newNics` (vm create): refuse NICs on a network
   * no live host has. Also returns each network's hosts.
   */
  async #pickVfs(vm: Pick<VmRecord, "uuid" | "name" | "memoryMiB" | "vcpus" | "nics">, host: string, keep: boolean, o: { newNics?: boolean } = {}): Promise<{ vfs: (string | null)[]; inventory: InventoryView; networks: Map<string, string[]> }> {
    const { snapshot, inventories } = await this.#snapshot();
    const inventory = inventories.get(host);
    const h = snapshot.hosts.find((x) => x.name === host);
    if (!h) {
      const names = snapshot.hosts.map((x) => x.name).sort();
      throw new FerryError("FERRY_ERR_NOT_FOUND", `host ${host} not found: no agent registered under that name${didYouMean(host, names)}; hosts: ${names.join(", ") || "none"} ('ferry hosts')`, { details: { host } });
    }
    if (!inventory || h.state === "down") throw new FerryError("FERRY_ERR_STATE", `host ${host} is down: start its agent, or pick another host ('ferry hosts')`, { details: { host } });
    const networks = new Map<string, string[]>();
    for (const [name, inv] of [...inventories].sort((a, b) => (a[0] < b[0] ? -1 : 1))) for (const n of inv.networks) networks.set(n.name, [...(networks.get(n.name) ?? []), name]);
    if (o.newNics) checkNicNetworks(vm.nics, networks);
    // a recorded VF that is still free on this host is kept (vm start)
    const free = new Set(inventory.vfs.filter((v) => v.lease === null).map((v) => v.bdf));
    const pvm: PlacementVm = {
      uuid: vm.uuid, name: vm.name, memoryMiB: vm.memoryMiB, vcpus: vm.vcpus, host: "(new)",
      nics: vm.nics.filter((n) => !(keep && n.vf !== null && free.has(n.vf))).map((n) => ({ name: n.name, network: n.network, mode: n.mode, policy: n.policy })),
    };
    const p = place(snapshot, { vm: pvm, options: { to: host, limit: 1 } });
    if (p.kind === "unplaceable") {
      const code = (p.rejected.byCode.NO_VF ?? 0) > 0 ? "FERRY_ERR_NO_VF" : "FERRY_ERR_NO_HOST";
      throw new FerryError(code, p.message, { details: { rejections: p.rejected.list() } });
    }
    const dest = p.destinations[0]!;
    const vfs = vm.nics.map((n) => {
      if (keep && n.vf !== null && free.has(n.vf)) return n.vf;
      return dest.nics.find((a) => a.nic === n.name)?.vf?.bdf ?? null;
    });
    return { vfs, inventory, networks };
  }

  async #startOn(vm: VmRecord, inventory: InventoryView): Promise<VmRecord> {
    const facts = new Map(inventory.vfs.map((v) => [v.bdf, { standIn: v.standIn?.model ?? null }]));
    const spec = buildVmSpec(vm, await this.#d.guestImage(), (vf) => facts.get(vf) ?? { standIn: null });
    const inst = await this.agent(vm.host).startInstance(spec, { signal: this.#stop.signal });
    return this.#d.cluster.putVm({ ...vm, instanceId: inst.instanceId, state: "running", updatedAt: this.#d.clock.now() });
  }

  /** Create a VM and start it; `warnings`: what runs degraded from the start (an optional NIC with no VF). */
  async createVm(input: CreateVmInput): Promise<{ vm: VmRecord; warnings: string[] }> {
    if (await this.#d.cluster.getVm(input.name)) throw new FerryError("FERRY_ERR_CONFLICT", `a VM named ${input.name} already exists`, { details: { vm: input.name } });
    if (input.guestFillMiB !== undefined) checkGuestFill(input);
    const all = await this.#d.cluster.listVms();
    const macs = new Set(all.flatMap((v) => v.nics.map((n) => n.mac)));
    const random = this.#d.random ?? randomBytes;
    const ports = assignGuestPorts(input.nics.map((n) => n.mode));
    const uuid = randomUUID();
    const nicsNoAddr = input.nics.map((n, i) => {
      const mac = newMac(macs, () => random(3));
      macs.add(mac);
      return { name: `net${i}`, network: n.network, mode: n.mode, policy: n.policy, mac, guestPorts: ports[i]!, address: "", vf: null };
    });
    const draft = { uuid, name: input.name, memoryMiB: input.memoryMiB, vcpus: input.vcpus ?? 1, nics: nicsNoAddr };
    return this.#exclusive(uuid, `create ${input.name}`, async () => {
      const { vfs, inventory, networks } = await this.#pickVfs(draft, input.host, false, { newNics: true });
      const missing = draft.nics.filter((n, i) => n.mode !== "emulated" && vfs[i] === null && n.policy !== "optional");
      if (missing.length > 0) throw new FerryError("FERRY_ERR_NO_VF", `no free VF on ${input.host} for ${missing.map((n) => `${n.name} (${n.network}, ${n.policy})`).join(", ")}: nothing was created; free one ('ferry devices --host ${input.host}'), pick another host, or make the NIC optional`);
      const warnings = draft.nics.filter((n, i) => n.mode !== "emulated" && vfs[i] === null).map((n) => noVfWarning(n, input.host, (networks.get(n.network) ?? []).filter((x) => x !== input.host)));
      const now = this.#d.clock.now();
      let vm = await this.#d.cluster.createVm({
        ...draft, host: input.host, instanceId: null, state: "stopped", noOs: input.noOs === true, createdAt: now, updatedAt: now,
        ...(input.guestFillMiB === undefined ? {} : { guestFillMiB: input.guestFillMiB }),
        ...(input.sharedMemory === true && input.noOs !== true ? { sharedMemory: true } : {}),
        nics: draft.nics.map((n, i) => ({ ...n, vf: vfs[i] ?? null })),
      });
      vm = await this.#d.cluster.putVm({ ...vm, nics: vm.nics.map((n) => ({ ...n, address: guestAddress(n.network, vm.seq) })) });
      try {
        vm = await this.#startOn(vm, inventory);
      } catch (e) {
        await this.#d.cluster.deleteVm(vm.uuid);
        throw e;
      }
      this.events.publish({ type: "vm-created", vm: vm.name, host: vm.host, instanceId: vm.instanceId, at: this.#d.clock.now() });
      return { vm, warnings };
    });
  }

  async startVm(name: string): Promise<VmRecord> {
    const vm = await this.getVm(name);
    return this.#exclusive(vm.uuid, `start ${name}`, async () => {
      await this.#refuseIfRunning(vm, "start");
      const { vfs, inventory } = await this.#pickVfs(vm, vm.host, true);
      const next: VmRecord = { ...vm, nics: vm.nics.map((n, i) => ({ ...n, vf: n.mode === "emulated" ? null : (vfs[i] ?? null) })) };
      const started = await this.#startOn(next, inventory);
      this.events.publish({ type: "vm-started", vm: name, host: started.host, instanceId: started.instanceId, at: this.#d.clock.now() });
      return started;
    });
  }

  async stopVm(name: string): Promise<VmRecord> {
    const vm = await this.getVm(name);
    return this.#exclusive(vm.uuid, `stop ${name}`, async () => {
      if (vm.instanceId !== null) {
        await this.agent(vm.host).stopInstance(vm.instanceId, { signal: this.#stop.signal }).catch((e: unknown) => {
          if (!isFerryError(e, "FERRY_ERR_NOT_FOUND")) throw e;
        });
      }
      const out = await this.#d.cluster.putVm({ ...vm, instanceId: null, state: "stopped", updatedAt: this.#d.clock.now() });
      this.events.publish({ type: "vm-stopped", vm: name, host: vm.host, instanceId: vm.instanceId, at: this.#d.clock.now() });
      return out;
    });
  }

  async deleteVm(name: string): Promise<{ deleted: string }> {
    const vm = await this.getVm(name);
    if (vm.instanceId !== null) await this.stopVm(name);
    return this.#exclusive(vm.uuid, `delete ${name}`, async () => {
      await this.#d.cluster.deleteVm(vm.uuid);
      this.events.publish({ type: "vm-deleted", vm: name, host: vm.host, instanceId: null, at: this.#d.clock.now() });
      return { deleted: name };
    });
  }

  // ------------------------------------------------------------------ local migration, save, restore

  /**
   * Local migration (a QEMU upgrade in place): a new instance of the VM on the
   * same host, RAM shared (not copied), VF leases moved to the new instance.
   * The VM record then names the new instance.
   */
  async localMigrate(name: string, o: { qemuBinary?: string } = {}): Promise<{ vm: VmRecord; result: Record<string, unknown> }> {
    const vm = await this.getVm(name);
    return this.#exclusive(vm.uuid, `local migration of ${name}`, async () => {
      if (vm.state !== "running" || vm.instanceId === null) throw new FerryError("FERRY_ERR_STATE", `vm ${name} is not running (state ${vm.state})`);
      const result = (await this.agent(vm.host).request("POST", `/v1/instances/${vm.instanceId}/local-migrate`, LooseObject, o.qemuBinary === undefined ? {} : { qemuBinary: o.qemuBinary }, { timeoutMs: 600_000, signal: this.#stop.signal })) as Record<string, unknown>;
      const next = await this.#d.cluster.putVm({ ...vm, instanceId: String(result["newInstanceId"]), updatedAt: this.#d.clock.now() });
      this.events.publish({ type: "vm-moved", vm: name, host: vm.host, instanceId: next.instanceId, at: this.#d.clock.now() });
      return { vm: next, result };
    });
  }

  /** Save a running VM to a state file on its host (its VFs are released); the record remembers it. */
  async saveVm(name: string, file: string): Promise<VmRecord> {
    const vm = await this.getVm(name);
    return this.#exclusive(vm.uuid, `save ${name}`, async () => {
      if (vm.state !== "running" || vm.instanceId === null) throw new FerryError("FERRY_ERR_STATE", `vm ${name} is not running (state ${vm.state})`);
      await this.agent(vm.host).request("POST", `/v1/instances/${vm.instanceId}/save`, LooseObject, { name: file }, { timeoutMs: 600_000, signal: this.#stop.signal });
      const next = await this.#d.cluster.putVm({ ...vm, instanceId: null, state: "saved", savedAs: file, nics: vm.nics.map((n) => ({ ...n, vf: null })), updatedAt: this.#d.clock.now() });
      this.events.publish({ type: "vm-stopped", vm: name, host: vm.host, instanceId: null, at: this.#d.clock.now() });
      return next;
    });
  }

  /** Restore a saved VM on `host` (default: where it was saved) with VFs chosen anew there. */
  async restoreVm(name: string, o: { host?: string } = {}): Promise<VmRecord> {
    const vm = await this.getVm(name);
    return this.#exclusive(vm.uuid, `restore ${name}`, async () => {
      if (vm.state !== "saved" || vm.savedAs === undefined) throw new FerryError("FERRY_ERR_STATE", `vm ${name} is not saved (state ${vm.state}): 'ferry vm save' it first`);
      const host = o.host ?? vm.host;
      await this.#refuseIfRunning(vm, "restore");
      const { vfs } = await this.#pickVfs(vm, host, false);
      const nics = vm.nics.map((n, i) => ({ name: n.name, vf: n.mode === "emulated" ? null : (vfs[i] ?? null) }));
      const r = (await this.agent(host).request("POST", "/v1/instances/restore", LooseObject, { name: vm.savedAs, nics }, { timeoutMs: 600_000, signal: this.#stop.signal })) as { instanceId: string };
      const { savedAs: _saved, ...rest } = vm;
      const next = await this.#d.cluster.putVm({ ...rest, host, instanceId: r.instanceId, state: "running", nics: vm.nics.map((n, i) => ({ ...n, vf: nics[i]!.vf })), updatedAt: this.#d.clock.now() });
      this.events.publish({ type: "vm-started", vm: name, host, instanceId: r.instanceId, at: this.#d.clock.now() });
      return next;
    });
  }

  // ------------------------------------------------------------------ migrations

  #placementVm(vm: VmRecord): PlacementVm {
    return {
      uuid: vm.uuid, name: vm.name, memoryMiB: vm.memoryMiB, vcpus: vm.vcpus, host: vm.host,
      nics: vm.nics.map((n) => ({ name: n.name, network: n.network, mode: n.mode, policy: n.policy, ...(n.vf === null ? {} : { currentVf: n.vf }) })),
    };
  }

  async plan(input: MigrateInput): Promise<PlanView & { snapshot: ClusterSnapshot; vmRecord: VmRecord }> {
    const vm = await this.getVm(input.vm);
    const { snapshot } = await this.#snapshot();
    const p = place(snapshot, { vm: this.#placementVm(vm), options: input.to === undefined ? {} : { to: input.to } });
    return {
      vm: vm.name, source: vm.host,
      destinations: p.kind === "placed" ? [...p.destinations] : [],
      rejections: [...p.rejected.list()],
      message: p.kind === "unplaceable" ? p.message : null,
      snapshot, vmRecord: vm,
    };
  }

  /** Plan, record and start a migration; resolves once it is recorded (it runs in the background). */
  async migrate(input: MigrateInput): Promise<MigrationRecord> {
    const probe = await this.getVm(input.vm);
    if (this.#busy.has(probe.uuid)) throw new FerryError("FERRY_ERR_STATE", `vm ${probe.name} is busy: a migration or another operation on it is in progress; nothing was changed: wait for it to end ('ferry migrations', 'ferry events') and try again`, { details: { vm: probe.name } });
    this.#busy.add(probe.uuid);
    let started = false;
    try {
      const p = await this.plan(input);
      const vm = p.vmRecord;
      if (vm.state !== "running" || vm.instanceId === null) throw new FerryError("FERRY_ERR_STATE", `vm ${vm.name} is not running (state ${vm.state})`);
      const dest = p.destinations[0] === undefined ? undefined : (input.destination ?? p.destinations[0]);
      if (!dest) {
        const noVf = p.rejections.some((r) => r.code === "NO_VF");
        throw new FerryError(noVf ? "FERRY_ERR_NO_VF" : "FERRY_ERR_NO_HOST", `migration of ${vm.name} refused, nothing changed: ${p.message ?? "no destination"}`, {
          details: { vm: vm.name, rejections: p.rejections },
        });
      }
      const pfOf = new Map(p.snapshot.vfs.filter((v) => v.host === vm.host).map((v) => [v.bdf, v.pf]));
      const nics: NicPlan[] = vm.nics.map((n) => {
        const a = dest.nics.find((x) => x.nic === n.name)?.vf ?? null;
        return {
          name: n.name, network: n.network, mode: n.mode, policy: n.policy, mac: n.mac, guestPorts: { ...n.guestPorts },
          before: n.vf === null ? null : { host: vm.host, vf: n.vf, pf: pfOf.get(n.vf) ?? "" },
          after: a === null ? null : { host: dest.host, vf: a.bdf, pf: a.pf },
        };
      });
      const plan: MigrationPlan = {
        id: `m-${randomBytes(4).toString("hex")}`,
        vm: { uuid: vm.uuid, name: vm.name, memoryMiB: vm.memoryMiB, vcpus: vm.vcpus },
        source: { host: vm.host, instanceId: vm.instanceId },
        destination: { host: dest.host },
        nics,
        deadlines: { ...this.#d.config.deadlines, ...input.deadlines },
        ...(input.maxBandwidthBytes === undefined ? {} : { maxBandwidthBytes: input.maxBandwidthBytes }),
      };
      const runner = this.#runner;
      // an earlier migration's watch still running would count this migration's outage as its own
      for (const m of this.#measuring.values()) if (m.vm === vm.uuid) m.cut.abort();
      const watching = await this.#d.connectivity?.start(vm).catch((e: unknown) => {
        this.#d.log.warn({ err: e, vm: vm.name }, "connectivity probe did not start; the migration runs without it");
        return undefined;
      });
      let rec: MigrationRecord;
      try {
        rec = await createMigration(plan, runner);
      } catch (e) {
        await watching?.settle({ from: this.#d.clock.now(), endedAt: this.#d.clock.now(), signal: AbortSignal.abort() }).catch(() => undefined);
        throw e;
      }
      await this.#d.cluster.putVm({ ...vm, state: "migrating", updatedAt: this.#d.clock.now() });
      const run = runMigration(plan.id, runner)
        .then(async (ended) => {
          await this.#settle(ended);
          return ended;
        })
        .finally(() => {
          this.#busy.delete(vm.uuid);
          this.#running.delete(plan.id);
        });
      run.catch((e: unknown) => {
        if (!isFerryError(e, "FERRY_ERR_ABORTED")) this.#d.log.error({ err: e, id: plan.id }, "migration runner failed");
      });
      this.#running.set(plan.id, run);
      if (watching) this.#watch(rec, vm.uuid, watching, run);
      started = true;
      return rec;
    } finally {
      if (!started) this.#busy.delete(probe.uuid);
    }
  }

  /**
   * The outcome is not held back by the watch: once the migration has ended
   * (VM record settled) the NICs are watched on until steady, then the figures
   * (and a warning per NIC that was not steady in time, or only after the end)
   * are written into the record.
   */
  #watch(rec: MigrationRecord, vm: string, watching: ConnectivityHandle, run: Promise<MigrationRecord>): void {
    const cut = new AbortController();
    const signal = AbortSignal.any([cut.signal, this.#stop.signal]);
    const done = (async () => {
      const ended = await run.catch(() => undefined);
      const endedAt = ended?.updatedAt ?? this.#d.clock.now();
      const connectivity = await watching.settle({ from: rec.createdAt, endedAt, signal });
      const warnings = connectivityWarnings(connectivity);
      for (let attempt = 0; attempt < 5; attempt++) {
        const now = await this.#d.store.getMigration(rec.id);
        if (!now) return;
        try {
          // updatedAt stays the end: a migration's total time is createdAt → updatedAt
          await this.#d.store.updateMigration({ ...now, connectivity, warnings: [...now.warnings, ...warnings] }, now.version);
          break;
        } catch (e) {
          if (!isFerryError(e, "FERRY_ERR_CONFLICT")) throw e;
        }
      }
      for (const w of warnings) this.#d.log.warn({ id: rec.id, vm: rec.plan.vm.name }, w);
    })()
      .catch((e: unknown) => this.#d.log.error({ err: e, id: rec.id }, "cannot record the migration's connectivity"))
      .finally(() => this.#measuring.delete(rec.id));
    this.#measuring.set(rec.id, { vm, cut, done });
  }

  /**
   * A migration ended: the VM record follows it (host, instance, each NIC's
   * VF) — only while the record still names the migration's source instance,
   * i.e. only the migration that owns the VM settles it (compare-and-set in
   * the store). An old migration's late settle (a cancel or a resume of one
   * that ended long ago, the VM moved on since) changes nothing. An outcome
   * that says the guest runs nowhere is checked with every agent first.
   */
  async #settle(rec: MigrationRecord): Promise<void> {
    if (!isTerminal(rec) || rec.plan.link) return;
    const vm = await this.#d.cluster.getVm(rec.plan.vm.uuid);
    if (!vm) return;
    const owner: VmPlace = { host: rec.plan.source.host, instanceId: rec.plan.source.instanceId };
    if (vm.host !== owner.host || vm.instanceId !== owner.instanceId) {
      this.#d.log.info({ id: rec.id, vm: vm.name, host: vm.host, instanceId: vm.instanceId }, "migration ended earlier; the VM has moved on since: its record is left as it is");
      return;
    }
    const now = this.#d.clock.now();
    let next: VmRecord;
    const found = rec.runsOn ? undefined : (await this.#runningInstances(vm.uuid)).found.find((i) => i.running);
    if (found) {
      this.#d.log.warn({ id: rec.id, vm: vm.name, host: found.host, instanceId: found.instanceId }, `migration ${rec.id} ended with the guest nowhere, but ${found.host} runs it (${found.instanceId}, ${found.state}): the record follows the running instance`);
      next = this.#runningAt(vm, found, now);
    } else if (rec.runsOn) {
      const host = rec.runsOn.host;
      const nics: VmNicRecord[] = vm.nics.map((n) => {
        const r = rec.nics.find((x) => x.name === n.name);
        return { ...n, vf: r?.vf && r.vf.host === host ? r.vf.vf : null };
      });
      next = { ...vm, host, instanceId: rec.runsOn.instanceId, state: "running", nics, updatedAt: now };
    } else {
      next = { ...vm, instanceId: null, state: "unknown", updatedAt: now };
    }
    if (!(await this.#d.cluster.putVmIf(next, owner))) return;
    if (next.host !== vm.host || next.instanceId !== vm.instanceId) this.events.publish({ type: "vm-moved", vm: vm.name, host: next.host, instanceId: next.instanceId, at: now });
  }

  listMigrations(): Promise<MigrationRecord[]> {
    return this.#d.store.listMigrations();
  }

  /**
   * A migration; `settling` while the controller still follows up its outcome
   * (the VM record), `measuring` while it still watches the NICs' connectivity
   * (lab: until each answers steadily past the end; the figures come then).
   */
  async getMigration(id: string): Promise<MigrationRecord & { settling: boolean; measuring: boolean; progress?: Record<string, unknown> }> {
    const r = await this.#d.store.getMigration(id);
    if (!r) throw new FerryError("FERRY_ERR_NOT_FOUND", `migration ${id} not found`, { details: { id } });
    const progress = r.phase === "perform" ? await this.#progress(r) : undefined;
    return { ...r, settling: this.#running.has(id), measuring: this.#measuring.has(id), ...(progress ? { progress } : {}) };
  }

  /** RAM progress from the source QEMU while RAM streams (best effort, bounded). */
  async #progress(r: MigrationRecord): Promise<Record<string, unknown> | undefined> {
    return this.agent(r.plan.source.host)
      .request("GET", `/v1/instances/${r.plan.source.instanceId}/migration`, LooseObject, undefined, { timeoutMs: 1_000 })
      .then((p) => p as Record<string, unknown>, () => undefined);
  }

  async cancelMigration(id: string): Promise<CancelReport> {
    await this.getMigration(id);
    const report = await cancel(id, this.#runner);
    await this.#settle(report.record);
    return report;
  }
}
