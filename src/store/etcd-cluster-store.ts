// The controller's cluster view (hosts, VMs) on etcd: the ClusterStore of
// cluster.ts for several controllers. Each read-modify-write is a txn that
// compares the key's mod_revision with the one read and retries on a race
// (setHostState, putVm, updateVm, deleteVm); putVmIf is updateVm writing
// only while the VM is still where the caller expects it. createVm takes the
// next seq from a counter key and claims the name and uuid in the same txn.
//
// Keys, under the connection's prefix:
//   hosts/<name>      a host record
//   vms/<uuid>        a VM record
//   vm-names/<name>   the uuid of the VM with that name (names are unique)
//   vm-seq            the last VM seq given
import { FerryError } from "../core/errors.ts";
import type { HostState } from "../model/cluster.ts";
import { checkVmChange, parseHostRecord, parseVmRecord, putVmIfVia } from "./cluster.ts";
import type { ClusterStore, HostRecord, VmPlace, VmRecord } from "./cluster.ts";
import { storeError } from "./etcd-client.ts";
import type { EtcdConnection, Stored } from "./etcd-client.ts";

const RACE_RETRIES = 50;
const hostKey = (name: string): string => `hosts/${encodeURIComponent(name)}`;
const vmKey = (uuid: string): string => `vms/${encodeURIComponent(uuid)}`;
const nameKey = (name: string): string => `vm-names/${encodeURIComponent(name)}`;
const SEQ_KEY = "vm-seq";

function parse<T>(what: string, s: Stored, f: (x: unknown) => T): T {
  try {
    return f(JSON.parse(s.value) as unknown);
  } catch (e) {
    throw new FerryError("FERRY_ERR_INTERNAL", `store: corrupt ${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

function raced(what: string): FerryError {
  return new FerryError("FERRY_ERR_CONFLICT", `etcd store: ${what}: lost ${RACE_RETRIES} races with other writers`, { retryable: true });
}

export class EtcdClusterStore implements ClusterStore {
  readonly #c: EtcdConnection;
  readonly #owns: boolean;

  constructor(connection: EtcdConnection, o: { owns?: boolean } = {}) {
    this.#c = connection;
    this.#owns = o.owns ?? false;
  }

  /** Commit a txn; false when its compares failed (FERRY_ERR_NOT_LEADER when it failed for the leadership fence). */
  async #txn(what: string, build: () => Promise<{ succeeded: boolean }>): Promise<boolean> {
    let ok: boolean;
    try {
      ok = (await build()).succeeded;
    } catch (e) {
      throw storeError(what, e);
    }
    if (!ok) await this.#c.checkFence(what);
    return ok;
  }

  async upsertHost(h: HostRecord): Promise<HostRecord> {
    const clean = parseHostRecord(h);
    const what = `put host ${clean.name}`;
    // "any revision": a txn only for the leadership fence
    await this.#txn(what, () => this.#c.txn(what, hostKey(clean.name), "Mod", ">", -1).then(this.#c.ns.put(hostKey(clean.name)).value(JSON.stringify(clean))).commit());
    return clean;
  }

  async #host(name: string): Promise<{ h: HostRecord; s: Stored } | undefined> {
    const s = await this.#c.get(hostKey(name));
    return s === undefined ? undefined : { h: parse(`host ${name}`, s, parseHostRecord), s };
  }

  async getHost(name: string): Promise<HostRecord | undefined> {
    return (await this.#host(name))?.h;
  }

  async listHosts(): Promise<HostRecord[]> {
    const { items } = await this.#c.list("hosts/");
    return items.map((s) => parse("host", s, parseHostRecord)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  setHostState(name: string, state: HostState): Promise<HostRecord | undefined> {
    return this.updateHost(name, (h) => (h ? { ...h, state } : undefined));
  }

  async updateHost(name: string, change: (h: HostRecord | undefined) => HostRecord | undefined): Promise<HostRecord | undefined> {
    const what = `update host ${name}`;
    for (let i = 0; i < RACE_RETRIES; i++) {
      const cur = await this.#host(name);
      const want = change(cur?.h);
      if (want === undefined) return cur?.h;
      if (want.name !== name) throw new FerryError("FERRY_ERR_INTERNAL", `${what}: the change renamed the host to ${want.name}`);
      const next = parseHostRecord(want);
      // written only while the key is as read (absent: still absent)
      const guard = cur === undefined ? this.#c.txn(what, hostKey(name), "Create", "==", 0) : this.#c.txn(what, hostKey(name), "Mod", "==", cur.s.mod);
      if (await this.#txn(what, () => guard.then(this.#c.ns.put(hostKey(name)).value(JSON.stringify(next))).commit())) return next;
    }
    throw raced(what);
  }

  async createVm(vm: Omit<VmRecord, "seq">): Promise<VmRecord> {
    const ns = this.#c.ns;
    for (let i = 0; i < RACE_RETRIES; i++) {
      const last = await this.#c.get(SEQ_KEY);
      const seq = (last === undefined ? 0 : Number(last.value)) + 1;
      const out = parseVmRecord({ ...vm, seq });
      let res;
      try {
        res = await this.#c
          .txn(`create vm ${out.name}`, vmKey(out.uuid), "Create", "==", 0)
          .and(nameKey(out.name), "Create", "==", 0)
          .and(SEQ_KEY, "Mod", "==", last?.mod ?? 0)
          .then(ns.put(vmKey(out.uuid)).value(JSON.stringify(out)), ns.put(nameKey(out.name)).value(out.uuid), ns.put(SEQ_KEY).value(String(seq)))
          .else(ns.get(vmKey(out.uuid)), ns.get(nameKey(out.name)))
          .commit();
      } catch (e) {
        throw storeError(`create vm ${out.name}`, e);
      }
      if (res.succeeded) return out;
      await this.#c.checkFence(`create vm ${out.name}`);
      if (res.responses.some((r) => r.response_range.kvs.length > 0)) {
        throw new FerryError("FERRY_ERR_CONFLICT", `a VM named ${vm.name} (or with uuid ${vm.uuid}) already exists`, { details: { name: vm.name } });
      }
      // another VM took this seq: again
    }
    throw raced(`create vm ${vm.name}`);
  }

  async #vm(nameOrUuid: string): Promise<{ vm: VmRecord; s: Stored } | undefined> {
    let s = await this.#c.get(vmKey(nameOrUuid));
    if (s === undefined) {
      const byName = await this.#c.get(nameKey(nameOrUuid));
      if (byName !== undefined) s = await this.#c.get(vmKey(byName.value));
    }
    return s === undefined ? undefined : { vm: parse(`vm ${nameOrUuid}`, s, parseVmRecord), s };
  }

  async getVm(nameOrUuid: string): Promise<VmRecord | undefined> {
    return (await this.#vm(nameOrUuid))?.vm;
  }

  async listVms(): Promise<VmRecord[]> {
    const { items } = await this.#c.list("vms/");
    return items.map((s) => parse("vm", s, parseVmRecord)).sort((a, b) => a.seq - b.seq);
  }

  /** Replace the VM while its key is still at the revision read (and move its name when it changed). */
  async #replace(cur: { vm: VmRecord; s: Stored }, next: VmRecord): Promise<boolean> {
    const ns = this.#c.ns;
    const key = vmKey(next.uuid);
    return this.#txn(`put vm ${next.name}`, () => {
      const tx = this.#c.txn(`put vm ${next.name}`, key, "Mod", "==", cur.s.mod);
      if (cur.vm.name === next.name) return tx.then(ns.put(key).value(JSON.stringify(next))).commit();
      return tx
        .and(nameKey(next.name), "Create", "==", 0)
        .then(ns.put(key).value(JSON.stringify(next)), ns.delete().key(nameKey(cur.vm.name)), ns.put(nameKey(next.name)).value(next.uuid))
        .commit();
    });
  }

  async putVm(vm: VmRecord): Promise<VmRecord> {
    const clean = parseVmRecord(vm);
    for (let i = 0; i < RACE_RETRIES; i++) {
      const s = await this.#c.get(vmKey(clean.uuid));
      if (s === undefined) throw new FerryError("FERRY_ERR_NOT_FOUND", `vm ${vm.name} not found`, { details: { vm: vm.name } });
      if (await this.#replace({ vm: parse(`vm ${clean.uuid}`, s, parseVmRecord), s }, clean)) return clean;
    }
    throw raced(`put vm ${vm.name}`);
  }

  putVmIf(vm: VmRecord, expected: VmPlace): Promise<VmRecord | undefined> {
    return putVmIfVia(this, vm, expected);
  }

  async updateVm(uuid: string, change: (vm: VmRecord) => VmRecord | undefined): Promise<{ vm: VmRecord | undefined; written: boolean }> {
    for (let i = 0; i < RACE_RETRIES; i++) {
      const s = await this.#c.get(vmKey(uuid));
      if (s === undefined) return { vm: undefined, written: false };
      const cur = parse(`vm ${uuid}`, s, parseVmRecord);
      const want = change(cur);
      if (want === undefined) return { vm: cur, written: false };
      const next = checkVmChange(cur, want);
      // written only while the key is as read; else read again and change again
      if (await this.#replace({ vm: cur, s }, next)) return { vm: next, written: true };
    }
    throw raced(`update vm ${uuid}`);
  }

  async deleteVm(uuid: string): Promise<boolean> {
    const ns = this.#c.ns;
    for (let i = 0; i < RACE_RETRIES; i++) {
      const s = await this.#c.get(vmKey(uuid));
      if (s === undefined) return false;
      const cur = parse(`vm ${uuid}`, s, parseVmRecord);
      if (await this.#txn(`delete vm ${uuid}`, () => this.#c.txn(`delete vm ${uuid}`, vmKey(uuid), "Mod", "==", s.mod).then(ns.delete().key(vmKey(uuid)), ns.delete().key(nameKey(cur.name))).commit())) return true;
    }
    throw raced(`delete vm ${uuid}`);
  }

  close(): void {
    if (this.#owns) this.#c.close();
  }
}
