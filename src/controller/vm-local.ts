// What happens to a VM on one host: local migration (a QEMU upgrade in
// place), save to a state file on its host, restore from one. Each is
// recorded when it ends, succeeded or failed, like a migration between hosts
// (vm-records.ts).
import type { VmRecord } from "../store/cluster.ts";
import type { LocalMigrateReply } from "../wire/instance-ops.ts";
import { FerryError } from "../core/errors.ts";
import type { ControllerContext } from "./context.ts";
import type { Vms } from "./vms.ts";
import type { MigrationRecord, NicResult, VfRef } from "../migration/types.ts";
import type { ArrivedNic } from "../wire/steps.ts";
import { pfsOf, tryRecord } from "./vm-records.ts";

function arrivedStatus(n: { mode: string }, a: ArrivedNic | undefined): { status: NicResult["status"]; error?: string } {
  if (n.mode === "emulated") return { status: "emulated" };
  if (!a) return { status: "absent" };
  if (a.attached) return { status: "attached" };
  return { status: n.mode === "failover" ? "standby-only" : "absent", ...(a.error === undefined ? {} : { error: a.error }) };
}

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
  async localMigrate(name: string, o: { qemuBinary?: string } = {}): Promise<{ vm: VmRecord; result: LocalMigrateReply; migration?: MigrationRecord }> {
    const vm = await this.#vms.get(name);
    return this.#c.exclusive(vm.uuid, `local migration of ${name}`, async () => {
      if (vm.state !== "running" || vm.instanceId === null) throw new FerryError("FERRY_ERR_STATE", `vm ${name} is not running (state ${vm.state}); nothing was changed: start it first ('ferry vm start ${name}'${vm.state === "saved" ? ", or 'ferry vm restore'" : ""})`);
      const source = { host: vm.host, instanceId: vm.instanceId };
      const startedAt = this.#c.d.clock.now();
      const pfs = await pfsOf(this.#c, vm.host);
      const here = (vf: string | null): VfRef | null => (vf === null ? null : { host: vm.host, vf, pf: pfs.get(vf) ?? "" });
      const base = { kind: "local" as const, vm, source, destination: vm.host, startedAt, ...(o.qemuBinary === undefined ? {} : { qemuBinary: o.qemuBinary }) };
      let result: LocalMigrateReply;
      try {
        result = await this.#c.agent(vm.host).localMigrate(vm.instanceId, o.qemuBinary === undefined ? {} : { qemuBinary: o.qemuBinary }, { timeoutMs: 600_000, signal: this.#c.signal });
      } catch (e) {
        await tryRecord(this.#c, { ...base, endedAt: this.#c.d.clock.now(), error: e, runsOn: source, nics: vm.nics.map((n) => ({ name: n.name, before: here(n.vf), after: here(n.vf), status: n.mode === "emulated" ? "emulated" : "attached" })) });
        throw e;
      }
      const next = await this.#c.d.cluster.putVm({ ...vm, instanceId: result.newInstanceId, updatedAt: this.#c.d.clock.now() });
      this.#c.events.publish({ type: "vm-moved", vm: name, host: vm.host, instanceId: next.instanceId, at: this.#c.d.clock.now() });
      const migration = await tryRecord(this.#c, {
        ...base, qemuBinary: result.qemuBinary, endedAt: this.#c.d.clock.now(), runsOn: { host: vm.host, instanceId: result.newInstanceId },
        nics: vm.nics.map((n) => {
          const st = arrivedStatus(n, result.nics.find((a) => a.name === n.name));
          return { name: n.name, before: here(n.vf), after: st.status === "attached" ? here(n.vf) : null, ...st };
        }),
        switchover: { totalMs: result.totalMs, downtimeMs: result.downtimeMs }, dataMovedBytes: result.transferredBytes, result,
      });
      return { vm: next, result, ...(migration ? { migration } : {}) };
    });
  }

  /** Save a running VM to a state file on its host (its VFs are released); the record remembers it. */
  async save(name: string, file: string): Promise<VmRecord> {
    const vm = await this.#vms.get(name);
    return this.#c.exclusive(vm.uuid, `save ${name}`, async () => {
      if (vm.state !== "running" || vm.instanceId === null) throw new FerryError("FERRY_ERR_STATE", `vm ${name} is not running (state ${vm.state}); nothing was changed: start it first ('ferry vm start ${name}'${vm.state === "saved" ? ", or 'ferry vm restore'" : ""})`);
      const source = { host: vm.host, instanceId: vm.instanceId };
      const startedAt = this.#c.d.clock.now();
      const pfs = await pfsOf(this.#c, vm.host);
      const here = (vf: string | null): VfRef | null => (vf === null ? null : { host: vm.host, vf, pf: pfs.get(vf) ?? "" });
      const base = { kind: "save" as const, vm, source, destination: vm.host, startedAt, file };
      let saved;
      try {
        saved = await this.#c.agent(vm.host).save(vm.instanceId, { name: file }, { timeoutMs: 600_000, signal: this.#c.signal });
      } catch (e) {
        await tryRecord(this.#c, { ...base, endedAt: this.#c.d.clock.now(), error: e, runsOn: source, nics: vm.nics.map((n) => ({ name: n.name, before: here(n.vf), after: here(n.vf), status: n.mode === "emulated" ? "emulated" : "attached" })) });
        throw e;
      }
      const next = await this.#c.d.cluster.putVm({ ...vm, instanceId: null, state: "saved", savedAs: file, nics: vm.nics.map((n) => ({ ...n, vf: null })), updatedAt: this.#c.d.clock.now() });
      this.#c.events.publish({ type: "vm-stopped", vm: name, host: vm.host, instanceId: null, at: this.#c.d.clock.now() });
      await tryRecord(this.#c, {
        ...base, endedAt: this.#c.d.clock.now(), runsOn: null, dataMovedBytes: saved.bytes, result: { file: saved.file, bytes: saved.bytes, releasedVfs: saved.releasedVfs },
        nics: vm.nics.map((n) => ({ name: n.name, before: here(n.vf), after: null, status: n.mode === "emulated" ? "emulated" : "absent" })),
      });
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
      const { vfs, release } = await this.#vms.pickVfs(vm, host, false);
      // the VFs are held until the restored instance has leased them
      try {
        const nics = vm.nics.map((n, i) => ({ name: n.name, vf: n.mode === "emulated" ? null : (vfs[i] ?? null) }));
        const startedAt = this.#c.d.clock.now();
        const pfs = await pfsOf(this.#c, host);
        const there = (vf: string | null): VfRef | null => (vf === null ? null : { host, vf, pf: pfs.get(vf) ?? "" });
        const base = { kind: "restore" as const, vm, source: { host: vm.host, instanceId: "" }, destination: host, startedAt, file: vm.savedAs };
        let r;
        try {
          // the primaries' deadline is the cluster's (as a migration's finish has it), not the agent's own default (its API takes up to an hour)
          r = await this.#c.agent(host).restore({ name: vm.savedAs, nics, primaryBackMs: Math.min(this.#c.d.config.deadlines.primaryBackMs, 3_600_000) }, { timeoutMs: 600_000, signal: this.#c.signal });
        } catch (e) {
          await tryRecord(this.#c, { ...base, endedAt: this.#c.d.clock.now(), error: e, runsOn: null, nics: vm.nics.map((n) => ({ name: n.name, before: null, after: null, status: n.mode === "emulated" ? "emulated" : "absent" })) });
          throw e;
        }
        const { savedAs: _saved, ...rest } = vm;
        const next = await this.#c.d.cluster.putVm({ ...rest, host, instanceId: r.instanceId, state: "running", nics: vm.nics.map((n, i) => ({ ...n, vf: nics[i]!.vf })), updatedAt: this.#c.d.clock.now() });
        this.#c.events.publish({ type: "vm-started", vm: name, host, instanceId: r.instanceId, at: this.#c.d.clock.now() });
        const arrived = r.nics;
        await tryRecord(this.#c, {
          ...base, endedAt: this.#c.d.clock.now(), runsOn: { host, instanceId: r.instanceId }, result: r,
          nics: vm.nics.map((n, i) => {
            const st = arrivedStatus(n, arrived.find((a) => a.name === n.name));
            return { name: n.name, before: null, after: st.status === "attached" ? there(nics[i]!.vf) : null, ...st };
          }),
        });
        return next;
      } finally {
        release();
      }
    });
  }
}
