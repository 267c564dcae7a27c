// VMs: create (VFs picked by the scheduler on the chosen host), start, stop,
// delete, each with the VM busy meanwhile; and what the agents say runs each
// VM (a VM runs in one instance only: never started twice).
import { randomBytes, randomUUID } from "node:crypto";
import type { InstanceViewT, InventoryView } from "../wire/agent-api.ts";
import { holdsGuest } from "../wire/agent-api.ts";
import { FerryError, isFerryError } from "../core/errors.ts";
import { didYouMean } from "../core/suggest.ts";
import type { PlacementVm } from "../model/cluster.ts";
import { vfKey } from "../model/cluster.ts";
import type { NicMode, NicPolicy } from "../model/vm.ts";
import { RAM_TRIM_KIB } from "../model/vm.ts";
import { hostFacts, tcgDirtySyncExposed } from "../migration/preflight.ts";
import { place } from "../scheduler/place.ts";
import type { VmRecord } from "../store/cluster.ts";
import type { ConvergenceRequest } from "../migration/convergence.ts";
import type { ClusterView } from "./cluster-view.ts";
import type { ControllerContext } from "./context.ts";
import { assignGuestPorts, buildVmSpec, checkGuestFill, checkNicNetworks, guestAddress, newMac, noVfWarning } from "./vm-spec.ts";

export interface CreateVmInput {
  name: string;
  host: string;
  memoryMiB: number;
  vcpus?: number;
  nics: { network: string; mode: NicMode; policy: NicPolicy }[];
  noOs?: boolean;
  /** Lab/test guest: fill this much guest RAM with random data at boot (benchmarks); ≤ memoryMiB / 2 − 32 (model/guest.ts guestRamDiskRoom). */
  guestFillMiB?: number;
  /** Lab/test guest: keep rewriting this many MiB/s of guest RAM (convergence benchmarks). */
  guestDirtyMiBps?: number;
  /** Guest RAM in a shared file: local migrations copy no RAM. */
  sharedMemory?: boolean;
  /** The VM's convergence policy for its migrations (absent: "auto"). */
  convergence?: ConvergenceRequest;
}

/** An instance that holds a VM's guest, and the host whose agent runs it. */
export type FoundInstance = InstanceViewT & { host: string };

/** The VM's record as it runs in instance `i` (each NIC's VF as the agent reports it). */
export function runningAt(vm: VmRecord, i: FoundInstance, now: number): VmRecord {
  const vfs = new Map((i.nics ?? []).map((n) => [n.name, n.vf]));
  return { ...vm, host: i.host, instanceId: i.instanceId, state: "running", nics: vm.nics.map((n) => ({ ...n, vf: vfs.get(n.name) ?? null })), updatedAt: now };
}

export class Vms {
  readonly #c: ControllerContext;
  readonly #view: ClusterView;

  constructor(c: ControllerContext, view: ClusterView) {
    this.#c = c;
    this.#view = view;
  }

  list(): Promise<VmRecord[]> {
    return this.#c.d.cluster.listVms();
  }

  async get(name: string): Promise<VmRecord> {
    const vm = await this.#c.d.cluster.getVm(name);
    if (!vm) throw new FerryError("FERRY_ERR_NOT_FOUND", `vm ${name} not found`, { details: { vm: name } });
    return vm;
  }

  /**
   * Every instance of VM `uuid` that holds its guest (api.ts holdsGuest),
   * asked of every agent whose host is not down; `unanswered`: the hosts
   * whose agents did not say.
   */
  async runningInstances(uuid: string): Promise<{ found: FoundInstance[]; unanswered: string[] }> {
    const hosts = (await this.#c.d.cluster.listHosts()).filter((h) => h.state !== "down");
    const found: FoundInstance[] = [];
    const unanswered: string[] = [];
    await Promise.all(hosts.map(async (h) => {
      const list = await this.#c.client(h).instances({ timeoutMs: 5_000, signal: this.#c.signal }).catch(() => undefined);
      if (!list) unanswered.push(h.name);
      else for (const i of list.instances) if (i.vmUuid === uuid && holdsGuest(i)) found.push({ ...i, host: h.name });
    }));
    return { found: found.sort((a, b) => (a.host < b.host ? -1 : 1)), unanswered: unanswered.sort() };
  }

  /** Before `vm start` / `vm restore`: FERRY_ERR_VM_RUNNING when any agent runs the VM (nothing is started); FERRY_ERR_AGENT when one cannot say. */
  async refuseIfRunning(vm: VmRecord, what: "start" | "restore"): Promise<void> {
    const { found, unanswered } = await this.runningInstances(vm.uuid);
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

  /**
   * Pick a free VF on `host` for every NIC that wants one (the scheduler,
   * restricted to that host; never a VF another plan holds or a migration in
   * flight is to take). `newNics` (vm create): refuse NICs on a network no
   * live host has. Also returns each network's hosts. The VFs picked are held
   * until `release()`: call it once the instance has leased them (or did not
   * start).
   */
  async pickVfs(vm: Pick<VmRecord, "uuid" | "name" | "memoryMiB" | "vcpus" | "nics">, host: string, keep: boolean, o: { newNics?: boolean } = {}): Promise<{ vfs: (string | null)[]; inventory: InventoryView; networks: Map<string, string[]>; release: () => void }> {
    const { value, release } = await this.#c.vfs.plan(() => this.#view.snapshot(), ({ snapshot, inventories }, reserved) => {
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
      const free = new Set(inventory.vfs.filter((v) => v.lease === null && !reserved.has(vfKey(host, v.bdf))).map((v) => v.bdf));
      const pvm: PlacementVm = {
        uuid: vm.uuid, name: vm.name, memoryMiB: vm.memoryMiB, vcpus: vm.vcpus, host: "(new)",
        nics: vm.nics.filter((n) => !(keep && n.vf !== null && free.has(n.vf))).map((n) => ({ name: n.name, network: n.network, mode: n.mode, policy: n.policy })),
      };
      const p = place(snapshot, { vm: pvm, options: { to: host, limit: 1, reservedVfs: reserved } });
      if (p.kind === "unplaceable") {
        const code = (p.rejected.byCode.NO_VF ?? 0) > 0 ? "FERRY_ERR_NO_VF" : "FERRY_ERR_NO_HOST";
        throw new FerryError(code, p.message, { details: { rejections: p.rejected.list() } });
      }
      const dest = p.destinations[0]!;
      const vfs = vm.nics.map((n) => {
        if (keep && n.vf !== null && free.has(n.vf)) return n.vf;
        return dest.nics.find((a) => a.nic === n.name)?.vf?.bdf ?? null;
      });
      return { value: { vfs, inventory, networks }, hold: vfs.flatMap((v) => (v === null ? [] : [vfKey(host, v)])) };
    });
    return { ...value, release };
  }

  /**
   * Whether a guest booting on `host` gets RAM 8 KiB short of whole MiB (ramTrimKiB): where QEMU < 9.0 runs
   * under TCG, which migrates RAM of whole MiB with lost writes, anonymous and file-backed alike
   * (migration/preflight.ts tcgDirtySyncExposed). Set at creation, or at the next start of a VM created
   * without it; it stays with the VM wherever it goes (a host with no record yet counts as exposed: the trim
   * costs nothing).
   */
  async #trimWanted(host: string): Promise<boolean> {
    const h = await this.#c.d.cluster.getHost(host);
    return h === undefined || tcgDirtySyncExposed(hostFacts(host, h));
  }

  async #startOn(vm: VmRecord, inventory: InventoryView): Promise<VmRecord> {
    const facts = new Map(inventory.vfs.map((v) => [v.bdf, { standIn: v.standIn?.model ?? null }]));
    const spec = buildVmSpec(vm, await this.#c.d.guestImage(), (vf) => facts.get(vf) ?? { standIn: null });
    const inst = await this.#c.agent(vm.host).startInstance(spec, { signal: this.#c.signal });
    return this.#c.d.cluster.putVm({ ...vm, instanceId: inst.instanceId, state: "running", updatedAt: this.#c.d.clock.now() });
  }

  /** Create a VM and start it; `warnings`: what runs degraded from the start (an optional NIC with no VF). */
  async create(input: CreateVmInput): Promise<{ vm: VmRecord; warnings: string[] }> {
    if (await this.#c.d.cluster.getVm(input.name)) throw new FerryError("FERRY_ERR_CONFLICT", `a VM named ${input.name} already exists`, { details: { vm: input.name } });
    if (input.guestFillMiB !== undefined || input.guestDirtyMiBps !== undefined) checkGuestFill(input);
    const all = await this.#c.d.cluster.listVms();
    const macs = new Set(all.flatMap((v) => v.nics.map((n) => n.mac)));
    const random = this.#c.d.random ?? randomBytes;
    const ports = assignGuestPorts(input.nics.map((n) => n.mode));
    const uuid = randomUUID();
    const nicsNoAddr = input.nics.map((n, i) => {
      const mac = newMac(macs, () => random(3));
      macs.add(mac);
      return { name: `net${i}`, network: n.network, mode: n.mode, policy: n.policy, mac, guestPorts: ports[i]!, address: "", vf: null };
    });
    const draft = { uuid, name: input.name, memoryMiB: input.memoryMiB, vcpus: input.vcpus ?? 1, nics: nicsNoAddr };
    return this.#c.exclusive(uuid, `create ${input.name}`, async () => {
      const { vfs, inventory, networks, release } = await this.pickVfs(draft, input.host, false, { newNics: true });
      try {
        const missing = draft.nics.filter((n, i) => n.mode !== "emulated" && vfs[i] === null && n.policy !== "optional");
        if (missing.length > 0) throw new FerryError("FERRY_ERR_NO_VF", `no free VF on ${input.host} for ${missing.map((n) => `${n.name} (${n.network}, ${n.policy})`).join(", ")}: nothing was created; free one ('ferry devices --host ${input.host}'), pick another host, or make the NIC optional`);
        const warnings = draft.nics.filter((n, i) => n.mode !== "emulated" && vfs[i] === null).map((n) => noVfWarning(n, input.host, (networks.get(n.network) ?? []).filter((x) => x !== input.host)));
        const now = this.#c.d.clock.now();
        const trim = await this.#trimWanted(input.host);
        let vm = await this.#c.d.cluster.createVm({
          ...draft, host: input.host, instanceId: null, state: "stopped", noOs: input.noOs === true, createdAt: now, updatedAt: now,
          ...(input.guestFillMiB === undefined ? {} : { guestFillMiB: input.guestFillMiB }),
          ...(input.guestDirtyMiBps === undefined || input.guestDirtyMiBps === 0 ? {} : { guestDirtyMiBps: input.guestDirtyMiBps }),
          ...(input.sharedMemory === true && input.noOs !== true ? { sharedMemory: true } : {}),
          ...(trim ? { ramTrimKiB: RAM_TRIM_KIB } : {}),
          ...(input.convergence === undefined ? {} : { convergence: input.convergence }),
          nics: draft.nics.map((n, i) => ({ ...n, vf: vfs[i] ?? null })),
        });
        vm = await this.#c.d.cluster.putVm({ ...vm, nics: vm.nics.map((n) => ({ ...n, address: guestAddress(n.network, vm.seq) })) });
        try {
          vm = await this.#startOn(vm, inventory);
        } catch (e) {
          await this.#c.d.cluster.deleteVm(vm.uuid);
          throw e;
        }
        this.#c.events.publish({ type: "vm-created", vm: vm.name, host: vm.host, instanceId: vm.instanceId, at: this.#c.d.clock.now() });
        return { vm, warnings };
      } finally {
        release();
      }
    });
  }

  async start(name: string): Promise<VmRecord> {
    const vm = await this.get(name);
    return this.#c.exclusive(vm.uuid, `start ${name}`, async () => {
      await this.refuseIfRunning(vm, "start");
      const { vfs, inventory, release } = await this.pickVfs(vm, vm.host, true);
      // a VM created without the RAM trim gets it now, where it needs it: it boots afresh, nothing has its old size
      // (a restore needs a new save first)
      const trim = vm.ramTrimKiB === undefined && (await this.#trimWanted(vm.host)) ? { ramTrimKiB: RAM_TRIM_KIB } : {};
      const next: VmRecord = { ...vm, ...trim, nics: vm.nics.map((n, i) => ({ ...n, vf: n.mode === "emulated" ? null : (vfs[i] ?? null) })) };
      const started = await this.#startOn(next, inventory).finally(release);
      this.#c.events.publish({ type: "vm-started", vm: name, host: started.host, instanceId: started.instanceId, at: this.#c.d.clock.now() });
      return started;
    });
  }

  /** Change the VM's migration policy (convergence null: back to the default, auto); refused while the VM is busy. */
  async setPolicy(name: string, change: { convergence: ConvergenceRequest | null }): Promise<VmRecord> {
    const vm = await this.get(name);
    return this.#c.exclusive(vm.uuid, `change ${name}`, async () => {
      // one read-modify-write: a writer outside this VM's exclusive (the hosts' reconciliation) cannot undo it
      const r = await this.#c.d.cluster.updateVm(vm.uuid, ({ convergence: _, ...now }) => ({ ...now, ...(change.convergence === null ? {} : { convergence: change.convergence }), updatedAt: this.#c.d.clock.now() }));
      if (r.vm === undefined) throw new FerryError("FERRY_ERR_NOT_FOUND", `vm ${name} was deleted while its policy was being changed: nothing to change ('ferry vm list' shows the VMs)`, { details: { vm: name } });
      return r.vm;
    });
  }

  async stop(name: string): Promise<VmRecord> {
    const vm = await this.get(name);
    return this.#c.exclusive(vm.uuid, `stop ${name}`, async () => {
      if (vm.instanceId !== null) {
        await this.#c.agent(vm.host).stopInstance(vm.instanceId, { signal: this.#c.signal }).catch((e: unknown) => {
          if (!isFerryError(e, "FERRY_ERR_NOT_FOUND")) throw e;
        });
      }
      const out = await this.#c.d.cluster.putVm({ ...vm, instanceId: null, state: "stopped", updatedAt: this.#c.d.clock.now() });
      this.#c.events.publish({ type: "vm-stopped", vm: name, host: vm.host, instanceId: vm.instanceId, at: this.#c.d.clock.now() });
      return out;
    });
  }

  async delete(name: string): Promise<{ deleted: string }> {
    const vm = await this.get(name);
    if (vm.instanceId !== null) await this.stop(name);
    return this.#c.exclusive(vm.uuid, `delete ${name}`, async () => {
      await this.#c.d.cluster.deleteVm(vm.uuid);
      this.#c.events.publish({ type: "vm-deleted", vm: name, host: vm.host, instanceId: null, at: this.#c.d.clock.now() });
      return { deleted: name };
    });
  }
}
