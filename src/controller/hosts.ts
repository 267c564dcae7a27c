// Hosts and liveness: agents register and stay up by heartbeat; a host whose
// heartbeats stop is marked down, and a VM recorded running whose QEMU its
// agent reports gone is marked down too (or follows the instance that runs it).
import { isTerminal } from "../migration/types.ts";
import { isAt } from "../store/cluster.ts";
import type { HostMigrationNet, HostQemu, HostRecord, VmPlace, VmRecord } from "../store/cluster.ts";
import type { ClusterView } from "./cluster-view.ts";
import { heartbeatIntervalMs } from "./config.ts";
import type { ControllerContext } from "./context.ts";
import type { Vms } from "./vms.ts";
import { runningAt } from "./vms.ts";

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
  /** Its migration network; absent: incoming migrations listen on 127.0.0.1 (same machine only). */
  migration?: HostMigrationNet;
  /** The host check's warnings at the agent's start. */
  warnings?: string[];
  /** Its QEMU (version, machine types, CPU models), probed at the agent's start. */
  qemu?: HostQemu;
  /** Its memory now (/proc/meminfo). */
  memory?: { totalMiB: number; availableMiB: number };
}

export class Hosts {
  readonly #c: ControllerContext;
  readonly #view: ClusterView;
  readonly #vms: Vms;
  #liveness: Promise<void> | null = null;
  #vmCheckAt = 0;
  /** Agents could not reach a controller that was not running: their silence before this does not count. */
  #startedAt = 0;

  constructor(c: ControllerContext, view: ClusterView, vms: Vms) {
    this.#c = c;
    this.#view = view;
    this.#vms = vms;
  }

  /** Load the hosts' agents and start the liveness loop (it ends when the controller stops). */
  async start(): Promise<void> {
    for (const h of await this.#c.d.cluster.listHosts()) this.#c.client(h);
    this.#liveness = this.#livenessLoop();
    this.#startedAt = this.#c.d.clock.now();
  }

  /** Resolves once the liveness loop has ended (after the controller's stop). */
  async stopped(): Promise<void> {
    await this.#liveness;
  }

  async heartbeat(h: HeartbeatInput): Promise<{ intervalMs: number; ended?: string[] }> {
    const now = this.#c.d.clock.now();
    let prev: HostRecord | undefined;
    // one read-modify-write: an operator's drain (or undrain) between the read and the write is not undone
    const rec = (await this.#c.d.cluster.updateHost(h.name, (p) => {
      prev = p;
      // an operator's drain outlives heartbeats and a down spell (evacuation.ts)
      const state = p?.state === "draining" || p?.drain === true ? "draining" : "up";
      return { name: h.name, url: h.url, version: h.version, accel: h.accel, state, lastHeartbeat: now, registeredAt: p?.registeredAt ?? now, ...(p?.drain === true ? { drain: true } : {}), ...(p?.evacuating ? { evacuating: p.evacuating } : {}), ...(h.migration ? { migration: h.migration } : {}), ...(h.warnings && h.warnings.length > 0 ? { warnings: h.warnings } : {}), ...(h.qemu ? { qemu: h.qemu } : {}), ...(h.memory ? { memory: h.memory } : {}) };
    }))!;
    this.#c.client(rec);
    if (!prev) this.#c.events.publish({ type: "host-registered", host: h.name, reason: `agent ${h.url} (${h.version}, ${h.accel})`, at: now });
    else if (prev.state === "down") this.#c.events.publish({ type: "host-up", host: h.name, reason: "heartbeat received", at: now });
    const intervalMs = heartbeatIntervalMs(this.#c.d.config.heartbeatTimeoutMs);
    if (h.migrations === undefined) return { intervalMs };
    // a migration this store never recorded is no migration of this cluster: as good as ended
    const ended: string[] = [];
    for (const id of h.migrations) {
      const r = await this.#c.d.store.getMigration(id);
      if (!r || isTerminal(r)) ended.push(id);
    }
    return { intervalMs, ended };
  }

  /** Mark down every host whose last heartbeat is older than the timeout. */
  async checkLiveness(): Promise<void> {
    const now = this.#c.d.clock.now();
    const silentFor = (h: HostRecord): number => now - Math.max(h.lastHeartbeat, this.#startedAt);
    for (const h of await this.#c.d.cluster.listHosts()) {
      if (h.state === "down" || silentFor(h) <= this.#c.d.config.heartbeatTimeoutMs) continue;
      // still silent when written: a heartbeat that came after the list is not overwritten
      const down = await this.#c.d.cluster.updateHost(h.name, (cur) => (cur && cur.state !== "down" && silentFor(cur) > this.#c.d.config.heartbeatTimeoutMs ? { ...cur, state: "down" } : undefined));
      if (down?.state !== "down") continue;
      const reason = `no heartbeat for ${now - down.lastHeartbeat} ms (timeout ${this.#c.d.config.heartbeatTimeoutMs} ms)`;
      this.#c.d.log.warn({ host: h.name }, `host down: ${reason}`);
      this.#c.events.publish({ type: "host-down", host: h.name, reason, at: now });
    }
  }

  async #livenessLoop(): Promise<void> {
    const every = Math.max(100, Math.min(1000, Math.floor(this.#c.d.config.heartbeatTimeoutMs / 4)));
    while (!this.#c.signal.aborted) {
      try {
        await this.#c.d.clock.sleep(every, this.#c.signal);
      } catch {
        return;
      }
      await this.checkLiveness().catch((e: unknown) => this.#c.d.log.error({ err: e }, "liveness check failed"));
      if (this.#c.d.clock.monotonic() >= this.#vmCheckAt) {
        this.#vmCheckAt = this.#c.d.clock.monotonic() + 3_000;
        await this.checkVms().catch((e: unknown) => this.#c.d.log.error({ err: e }, "VM check failed"));
      }
    }
  }

  /**
   * The VM check (every 3 s): each host running VMs is asked for its
   * instances; panics it saw are noted (#notePanics), instances it reports
   * gone reconciled (#reconcileGone). VMs busy with a migration or another
   * operation are left alone.
   */
  async checkVms(): Promise<void> {
    const vms = (await this.#c.d.cluster.listVms()).filter((v) => v.state === "running" && v.instanceId !== null && !this.#c.busy.has(v.uuid));
    const hosts = new Set(vms.map((v) => v.host));
    for (const h of (await this.#c.d.cluster.listHosts()).filter((x) => hosts.has(x.name) && x.state !== "down")) {
      const list = await this.#c.client(h).instances({ timeoutMs: 3_000, signal: this.#c.signal }).catch(() => undefined);
      if (!list) continue;
      const here = vms.filter((v) => v.host === h.name);
      await this.#notePanics(here, list.instances);
      await this.#reconcileGone(h.name, here, list.gone);
    }
  }

  /** The agent saw the guest's kernel panic in a VM's instance (pvpanic): the VM record says so, once (VmRecord.guestPanicked). */
  async #notePanics(vms: readonly VmRecord[], instances: readonly { instanceId: string; guestPanickedAt?: number | undefined }[]): Promise<void> {
    for (const vm of vms) {
      const instanceId = vm.instanceId;
      const panickedAt = instances.find((i) => i.instanceId === instanceId)?.guestPanickedAt;
      if (panickedAt === undefined || instanceId === null || vm.guestPanicked !== undefined) continue;
      const was: VmPlace = { host: vm.host, instanceId };
      const r = await this.#c.d.cluster.updateVm(vm.uuid, (cur) => (isAt(cur, was) && cur.guestPanicked === undefined ? { ...cur, guestPanicked: { instanceId, at: panickedAt } } : undefined));
      if (r.written) this.#c.d.log.warn({ vm: vm.name, host: vm.host, instanceId, at: panickedAt }, "the VM's guest kernel panicked (pvpanic): it runs no more; 'ferry vm stop' then 'ferry vm start' boots it again");
    }
  }

  /**
   * A VM recorded running whose QEMU its agent reports gone (exited, reaped)
   * is down: its record says so (state unknown, no instance), never
   * "running" on a dead instance. Only the agent's positive report counts;
   * when another agent runs the VM, the record follows that instance.
   */
  async #reconcileGone(host: string, vms: readonly VmRecord[], goneList: readonly { instanceId: string; reason: string }[]): Promise<void> {
    const gone = new Map(goneList.map((g) => [g.instanceId, g]));
    for (const vm of vms) {
      const g = gone.get(vm.instanceId ?? "");
      if (!g || this.#c.busy.has(vm.uuid)) continue;
      // never down while another agent runs it: the record follows that instance
      const found = (await this.#vms.runningInstances(vm.uuid)).found.find((i) => i.running);
      const now = this.#c.d.clock.now();
      const was: VmPlace = { host: vm.host, instanceId: vm.instanceId };
      if (found) {
        if (!(await this.#c.d.cluster.updateVm(vm.uuid, (cur) => (isAt(cur, was) ? runningAt(cur, found, now) : undefined))).written) continue;
        this.#c.d.log.warn({ vm: vm.name, host: found.host, instanceId: found.instanceId }, `VM's recorded instance is gone (${g.reason}), but ${found.host} runs it: the record follows that instance`);
        this.#c.events.publish({ type: "vm-moved", vm: vm.name, host: found.host, instanceId: found.instanceId, at: now });
        continue;
      }
      if (!(await this.#c.d.cluster.updateVm(vm.uuid, (cur) => (isAt(cur, was) ? { ...cur, instanceId: null, state: "unknown", updatedAt: now } : undefined))).written) continue;
      this.#c.d.log.warn({ vm: vm.name, host, instanceId: g.instanceId }, `VM down: ${g.reason}`);
      this.#c.events.publish({ type: "vm-stopped", vm: vm.name, host, instanceId: g.instanceId, at: now });
    }
  }

  listHosts(): Promise<HostRecord[]> {
    return this.#c.d.cluster.listHosts();
  }

  /** The hosts with each one's VF use per network, from its agent's inventory (null: it did not answer). */
  async hostsWithVfs(): Promise<(HostRecord & { vfs: VfUse[] | null })[]> {
    const hosts = await this.#c.d.cluster.listHosts();
    const invs = await this.#view.inventories(hosts);
    return hosts.map((h) => {
      const inv = invs.get(h.name);
      return { ...h, vfs: inv === undefined ? null : inv.networks.map((n) => ({ network: n.name, used: n.vfs - n.free, total: n.vfs })) };
    });
  }
}
