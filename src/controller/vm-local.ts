// What happens to a VM on one host: local migration (a QEMU upgrade in
// place), save to a state file on its host, restore from one.
import type { VmRecord } from "../store/cluster.ts";
import type { LocalMigrateReply } from "../wire/instance-ops.ts";
import { FerryError } from "../core/errors.ts";
import type { ControllerContext } from "./context.ts";
import type { Vms } from "./vms.ts";

export class VmLocal {
  readonly #c: ControllerContext;
  readonly #vms: Vms;

  constructor(c: ControllerContext, vms: Vms) {
    this.#c = c;
    this.#vms = vms;
  }

  /**
   * Local migration (a QEMU upgrade in place): a new instance of the VM on the
   * same host, RAM shared (not copied), VF leases moved to the new instance.
   * The VM record then names the new instance.
   */
  async localMigrate(name: string, o: { qemuBinary?: string } = {}): Promise<{ vm: VmRecord; result: LocalMigrateReply }> {
    const vm = await this.#vms.get(name);
    return this.#c.exclusive(vm.uuid, `local migration of ${name}`, async () => {
      if (vm.state !== "running" || vm.instanceId === null) throw new FerryError("FERRY_ERR_STATE", `vm ${name} is not running (state ${vm.state})`);
      const result = await this.#c.agent(vm.host).localMigrate(vm.instanceId, o.qemuBinary === undefined ? {} : { qemuBinary: o.qemuBinary }, { timeoutMs: 600_000, signal: this.#c.signal });
      const next = await this.#c.d.cluster.putVm({ ...vm, instanceId: result.newInstanceId, updatedAt: this.#c.d.clock.now() });
      this.#c.events.publish({ type: "vm-moved", vm: name, host: vm.host, instanceId: next.instanceId, at: this.#c.d.clock.now() });
      return { vm: next, result };
    });
  }

  /** Save a running VM to a state file on its host (its VFs are released); the record remembers it. */
  async save(name: string, file: string): Promise<VmRecord> {
    const vm = await this.#vms.get(name);
    return this.#c.exclusive(vm.uuid, `save ${name}`, async () => {
      if (vm.state !== "running" || vm.instanceId === null) throw new FerryError("FERRY_ERR_STATE", `vm ${name} is not running (state ${vm.state})`);
      await this.#c.agent(vm.host).save(vm.instanceId, { name: file }, { timeoutMs: 600_000, signal: this.#c.signal });
      const next = await this.#c.d.cluster.putVm({ ...vm, instanceId: null, state: "saved", savedAs: file, nics: vm.nics.map((n) => ({ ...n, vf: null })), updatedAt: this.#c.d.clock.now() });
      this.#c.events.publish({ type: "vm-stopped", vm: name, host: vm.host, instanceId: null, at: this.#c.d.clock.now() });
      return next;
    });
  }

  /** Restore a saved VM on `host` (default: where it was saved) with VFs chosen anew there. */
  async restore(name: string, o: { host?: string } = {}): Promise<VmRecord> {
    const vm = await this.#vms.get(name);
    return this.#c.exclusive(vm.uuid, `restore ${name}`, async () => {
      if (vm.state !== "saved" || vm.savedAs === undefined) throw new FerryError("FERRY_ERR_STATE", `vm ${name} is not saved (state ${vm.state}): 'ferry vm save' it first`);
      const host = o.host ?? vm.host;
      await this.#vms.refuseIfRunning(vm, "restore");
      const { vfs } = await this.#vms.pickVfs(vm, host, false);
      const nics = vm.nics.map((n, i) => ({ name: n.name, vf: n.mode === "emulated" ? null : (vfs[i] ?? null) }));
      const r = await this.#c.agent(host).restore({ name: vm.savedAs, nics }, { timeoutMs: 600_000, signal: this.#c.signal });
      const { savedAs: _saved, ...rest } = vm;
      const next = await this.#c.d.cluster.putVm({ ...rest, host, instanceId: r.instanceId, state: "running", nics: vm.nics.map((n, i) => ({ ...n, vf: nics[i]!.vf })), updatedAt: this.#c.d.clock.now() });
      this.#c.events.publish({ type: "vm-started", vm: name, host, instanceId: r.instanceId, at: this.#c.d.clock.now() });
      return next;
    });
  }
}
