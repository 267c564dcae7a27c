// The behaviour every ClusterStore backend must have, as node:test cases
// (SQLite: cluster.test.ts; etcd: etcd.test.ts). A backend's test file calls
// clusterContract with a factory that gives an empty store.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ClusterStore, VmRecord } from "./cluster.ts";

export const contractVm = (name: string, uuid: string): Omit<VmRecord, "seq"> => ({
  uuid, name, memoryMiB: 256, vcpus: 1, host: "host-a", instanceId: "i-0000000a", state: "running", noOs: false, createdAt: 1, updatedAt: 1,
  nics: [{ name: "net0", network: "physnet1", mode: "failover", policy: "mandatory", mac: "52:54:00:00:00:01", guestPorts: { standby: 1, primary: 2 }, address: "10.1.1.10/24", vf: "0000:3b:10.0" }],
});

export function clusterContract(name: string, make: () => ClusterStore): void {
  void describe(`ClusterStore contract: ${name}`, () => {
    void test("hosts: upsert, state, list by name; unknown hosts are undefined", async () => {
      const s = make();
      await s.upsertHost({ name: "host-b", url: "http://127.0.0.1:7602", version: "0.1.0", accel: "tcg", state: "up", lastHeartbeat: 5, registeredAt: 1 });
      await s.upsertHost({ name: "host-a", url: "http://127.0.0.1:7601", version: "0.1.0", accel: "tcg", state: "up", lastHeartbeat: 5, registeredAt: 1, drain: true });
      assert.equal((await s.setHostState("host-a", "down"))?.state, "down");
      assert.equal(await s.setHostState("nope", "down"), undefined);
      assert.deepEqual((await s.listHosts()).map((h) => [h.name, h.state, h.drain ?? false]), [["host-a", "down", true], ["host-b", "up", false]]);
      assert.equal(await s.getHost("nope"), undefined);
      s.close();
    });

    void test("updateHost: read-modify-write in one step, none lost when writers race; undefined writes nothing", async () => {
      const s = make();
      const base = { name: "host-a", url: "http://127.0.0.1:7601", version: "0.1.0", accel: "tcg", state: "up", lastHeartbeat: 0, registeredAt: 1 } as const;
      assert.equal(await s.updateHost("host-a", () => undefined), undefined);
      assert.equal(await s.getHost("host-a"), undefined);
      assert.equal((await s.updateHost("host-a", (h) => (h === undefined ? base : undefined)))?.lastHeartbeat, 0);
      // twenty writers at once, each adding one: a lost update would leave fewer
      await Promise.all(Array.from({ length: 20 }, () => s.updateHost("host-a", (h) => (h ? { ...h, lastHeartbeat: h.lastHeartbeat + 1 } : undefined))));
      assert.equal((await s.getHost("host-a"))?.lastHeartbeat, 20);
      // a drain and heartbeats racing: the drain stays
      await Promise.all([
        s.updateHost("host-a", (h) => (h ? { ...h, drain: true, state: "draining" } : undefined)),
        ...Array.from({ length: 5 }, () => s.updateHost("host-a", (h) => (h ? { ...h, lastHeartbeat: h.lastHeartbeat + 1 } : undefined))),
      ]);
      const h = await s.getHost("host-a");
      assert.deepEqual([h?.drain, h?.state, h?.lastHeartbeat], [true, "draining", 25]);
      assert.equal((await s.updateHost("host-a", () => undefined))?.lastHeartbeat, 25, "no change: the stored host");
      await assert.rejects(s.updateHost("host-a", (x) => (x ? { ...x, name: "host-b" } : undefined)), { code: "FERRY_ERR_INTERNAL" });
      s.close();
    });

    void test("VMs: seq in creation order, unique names and uuids, found by either, replaced, deleted", async () => {
      const s = make();
      const a = await s.createVm(contractVm("web", "6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab"));
      const b = await s.createVm(contractVm("db", "7f1b0c9e-2d3a-4b5c-8d7e-0123456789ab"));
      assert.deepEqual([a.seq, b.seq], [1, 2]);
      await assert.rejects(s.createVm(contractVm("web", "8f1b0c9e-2d3a-4b5c-8d7e-0123456789ab")), { code: "FERRY_ERR_CONFLICT" });
      await assert.rejects(s.createVm(contractVm("web2", a.uuid)), { code: "FERRY_ERR_CONFLICT" });
      await s.putVm({ ...a, host: "host-b", nics: [{ ...a.nics[0]!, vf: null }] });
      const web = await s.getVm("web");
      assert.deepEqual([web?.host, web?.nics[0]?.vf, (await s.getVm(a.uuid))?.name], ["host-b", null, "web"]);
      await assert.rejects(s.putVm({ ...a, uuid: "af1b0c9e-2d3a-4b5c-8d7e-0123456789ab", name: "ghost" }), { code: "FERRY_ERR_NOT_FOUND" });
      assert.deepEqual((await s.listVms()).map((v) => v.name), ["web", "db"]);
      assert.equal(await s.deleteVm(b.uuid), true);
      assert.equal(await s.deleteVm(b.uuid), false);
      assert.equal(await s.getVm("db"), undefined);
      // a new VM's seq is above every live VM's (a deleted VM's may be given again: SQLite does, etcd does not)
      assert.ok((await s.createVm(contractVm("db", b.uuid))).seq > a.seq);
      s.close();
    });

    void test("updateVm: read-modify-write in one step, none lost when writers race; undefined writes nothing; no rename", async () => {
      const s = make();
      const a = await s.createVm(contractVm("u1", "bf1b0c9e-2d3a-4b5c-8d7e-0123456789ab"));
      assert.deepEqual(await s.updateVm("cf1b0c9e-2d3a-4b5c-8d7e-0123456789ab", () => assert.fail("a missing VM is not passed to change")), { vm: undefined, written: false });
      // twenty writers at once, each adding one: a lost update would leave fewer
      await Promise.all(Array.from({ length: 20 }, () => s.updateVm(a.uuid, (v) => ({ ...v, updatedAt: v.updatedAt + 1 }))));
      assert.equal((await s.getVm("u1"))?.updatedAt, a.updatedAt + 20);
      // a policy change racing writers that move the VM: both stay
      await Promise.all([
        s.updateVm(a.uuid, (v) => ({ ...v, convergence: "off" })),
        ...Array.from({ length: 5 }, (_, i) => s.updateVm(a.uuid, (v) => ({ ...v, instanceId: `i-0000010${i}`, updatedAt: v.updatedAt + 1 }))),
      ]);
      const v = await s.getVm("u1");
      assert.deepEqual([v?.convergence, v?.updatedAt, v?.instanceId?.startsWith("i-000001")], ["off", a.updatedAt + 25, true]);
      const same = await s.updateVm(a.uuid, () => undefined);
      assert.deepEqual([same.written, same.vm?.updatedAt], [false, a.updatedAt + 25]);
      await assert.rejects(s.updateVm(a.uuid, (x) => ({ ...x, name: "u2" })), { code: "FERRY_ERR_INTERNAL" });
      assert.equal((await s.getVm("u1"))?.name, "u1");
      // a guest panic is about one instance: read back while the VM runs as it, gone once it runs as another
      const at = v?.instanceId ?? "";
      await s.updateVm(a.uuid, (x) => ({ ...x, guestPanicked: { instanceId: at, at: 1_800_000_000_000 } }));
      assert.deepEqual((await s.getVm("u1"))?.guestPanicked, { instanceId: at, at: 1_800_000_000_000 });
      await s.updateVm(a.uuid, (x) => ({ ...x, instanceId: "i-0000020a" }));
      assert.equal((await s.getVm("u1"))?.guestPanicked, undefined);
      s.close();
    });

    void test("putVmIf writes only while the VM is where the caller expects it", async () => {
      const s = make();
      const a = await s.createVm(contractVm("r1", "9f1b0c9e-2d3a-4b5c-8d7e-0123456789ab"));
      const moved = await s.putVmIf({ ...a, host: "host-b", instanceId: "i-0000000b" }, { host: "host-a", instanceId: "i-0000000a" });
      assert.deepEqual([moved?.host, moved?.instanceId], ["host-b", "i-0000000b"]);
      assert.equal(await s.putVmIf({ ...a, host: "host-c", instanceId: "i-0000000c" }, { host: "host-a", instanceId: "i-0000000a" }), undefined);
      assert.deepEqual([(await s.getVm("r1"))?.host, (await s.getVm("r1"))?.instanceId], ["host-b", "i-0000000b"]);
      assert.equal(await s.putVmIf({ ...a, uuid: "af1b0c9e-2d3a-4b5c-8d7e-0123456789ab", name: "ghost" }, { host: "host-a", instanceId: "i-0000000a" }), undefined);
      s.close();
    });
  });
}
