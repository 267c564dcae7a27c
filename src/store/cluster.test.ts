import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { parseHostRecord, SqliteClusterStore } from "./cluster.ts";
import type { VmRecord } from "./cluster.ts";
import { clusterContract } from "./cluster-contract.ts";
import { SqliteStore } from "./sqlite.ts";

const base = await mkdtemp(join(tmpdir(), "ferry-cluster-"));
after(() => rm(base, { recursive: true, force: true }));

const vm = (name: string, uuid: string): Omit<VmRecord, "seq"> => ({
  uuid, name, memoryMiB: 256, vcpus: 1, host: "host-a", instanceId: "i-0000000a", state: "running", noOs: false, createdAt: 1, updatedAt: 1,
  nics: [{ name: "net0", network: "physnet1", mode: "failover", policy: "mandatory", mac: "52:54:00:00:00:01", guestPorts: { standby: 1, primary: 2 }, address: "10.1.1.10/24", vf: "0000:3b:10.0" }],
});

test("hosts and VMs share the migrations' file (0600) and survive a reopen; names and uuids are unique", async () => {
  const file = join(base, "c", "controller.db");
  const migrations = new SqliteStore(file);
  let s = new SqliteClusterStore(file);
  await s.upsertHost({ name: "host-a", url: "http://127.0.0.1:7601", version: "0.1.0", accel: "tcg", state: "up", lastHeartbeat: 5, registeredAt: 1 });
  await s.setHostState("host-a", "down");
  const a = await s.createVm(vm("web", "6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab"));
  const b = await s.createVm(vm("db", "7f1b0c9e-2d3a-4b5c-8d7e-0123456789ab"));
  assert.deepEqual([a.seq, b.seq], [1, 2]);
  await assert.rejects(s.createVm(vm("web", "8f1b0c9e-2d3a-4b5c-8d7e-0123456789ab")), { code: "FERRY_ERR_CONFLICT" });
  await s.putVm({ ...a, host: "host-b", nics: [{ ...a.nics[0]!, vf: null }] });
  s.close();
  s = new SqliteClusterStore(file);
  assert.equal((await s.getHost("host-a"))?.state, "down");
  const web = await s.getVm(a.uuid);
  assert.deepEqual([web?.host, web?.nics[0]?.vf], ["host-b", null]);
  assert.deepEqual((await s.listVms()).map((v) => v.name), ["web", "db"]);
  assert.equal(await s.deleteVm(b.uuid), true);
  assert.equal(await s.getVm("db"), undefined);
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.deepEqual(await migrations.listMigrations(), []);
  s.close();
  migrations.close();
});

// putVmIf: the cluster contract (cluster-contract.ts), run below

clusterContract("sqlite (:memory:)", () => new SqliteClusterStore(":memory:"));

test("a host's QEMU and memory, as its agent reported them, are kept and validated", () => {
  const h = { name: "host-a", url: "http://127.0.0.1:7601", version: "0.1.0", accel: "tcg", state: "up", lastHeartbeat: 5, registeredAt: 1, qemu: { version: "7.2.22", machines: [{ name: "q35", aliasOf: "pc-q35-7.2" }, { name: "pc-q35-7.2" }], cpuModels: ["qemu64"] }, memory: { totalMiB: 4096, availableMiB: 3000 } };
  assert.deepEqual(parseHostRecord(JSON.parse(JSON.stringify(h))), h);
  assert.throws(() => parseHostRecord({ ...h, memory: { totalMiB: 4096, availableMiB: -1 } }), /memory\.availableMiB/);
  assert.throws(() => parseHostRecord({ ...h, qemu: { ...h.qemu, cpuModels: [1] } }), /qemu\.cpuModels\[0\]/);
});
