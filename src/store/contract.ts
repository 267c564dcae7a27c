// The behaviour every Store backend must have, as node:test cases. A backend's
// test file calls storeContract with a factory.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { newRecord } from "../migration/types.ts";
import type { MigrationPlan } from "../migration/types.ts";
import type { Store } from "../migration/store-port.ts";

export function contractPlan(id: string): MigrationPlan {
  return {
    id,
    vm: { uuid: "11111111-1111-4111-8111-111111111111", name: "vm1", memoryMiB: 512, vcpus: 2 },
    source: { host: "hv-a", instanceId: "i-1" },
    destination: { host: "hv-b" },
    nics: [
      {
        name: "net0",
        network: "physnet1",
        mode: "failover",
        policy: "mandatory",
        mac: "52:54:00:00:00:01",
        guestPorts: { standby: 1, primary: 2 },
        before: { host: "hv-a", vf: "0000:3b:10.0", pf: "0000:3b:00.0" },
        after: { host: "hv-b", vf: "0000:5e:10.0", pf: "0000:5e:00.0" },
      },
      { name: "net1", network: "physnet1", mode: "emulated", policy: "optional", mac: "52:54:00:00:00:02", guestPorts: { standby: 3 }, before: null, after: null },
    ],
    deadlines: { unplugMs: 1, convergeMs: 2, precheckMs: 3, primaryBackMs: 4, stepMs: 5 },
  };
}

export function storeContract(name: string, make: () => Store): void {
  void describe(`Store contract: ${name}`, () => {
    void test("create, get, list: the record comes back as it went in, at version 1", async () => {
      const s = make();
      const rec = newRecord(contractPlan("m-1"), 1000);
      const created = await s.createMigration(rec);
      assert.equal(created.version, 1);
      assert.deepEqual(await s.getMigration("m-1"), { ...rec, version: 1 });
      assert.equal(await s.getMigration("nope"), undefined);
      await assert.rejects(s.createMigration(rec), { code: "FERRY_ERR_CONFLICT" });
      await s.createMigration(newRecord(contractPlan("m-2"), 2000));
      assert.deepEqual((await s.listMigrations()).map((r) => r.id), ["m-1", "m-2"]);
      s.close();
    });

    void test("update is compare-and-swap on the version", async () => {
      const s = make();
      const v1 = await s.createMigration(newRecord(contractPlan("m-1"), 1000));
      const v2 = await s.updateMigration({ ...v1, phase: "begin", timings: { begin: { startedAt: 1001 } } }, 1);
      assert.equal(v2.version, 2);
      await assert.rejects(s.updateMigration({ ...v1, phase: "prepare" }, 1), { code: "FERRY_ERR_CONFLICT", retryable: true });
      assert.equal((await s.getMigration("m-1"))?.phase, "begin");
      await assert.rejects(s.updateMigration({ ...v1, id: "ghost" }, 1), { code: "FERRY_ERR_NOT_FOUND" });
      s.close();
    });

    void test("connectivity comes back as written: the settle figures, a NIC never stable (null), a record from before settle windows", async () => {
      const s = make();
      const v1 = await s.createMigration(newRecord(contractPlan("m-1"), 1000));
      const connectivity = {
        net0: { probes: 900, lost: 14, longestGapMs: 152, untilStableMs: 3120, endMs: 3400, watchedMs: 8450, settleMs: 5000, outageMs: 100 },
        net1: { probes: 6000, lost: 4100, longestGapMs: 41_000, untilStableMs: null, endMs: 3400, watchedMs: 63_400, settleMs: 5000, outageMs: 100 },
        net2: { probes: 300, lost: 2, longestGapMs: 80 },
      };
      const v2 = await s.updateMigration({ ...v1, connectivity }, 1);
      assert.deepEqual((await s.getMigration("m-1"))?.connectivity, connectivity);
      // what goes in is the coordinator's own; what comes out is checked
      await s.updateMigration({ ...v2, connectivity: { net0: { ...connectivity.net0, untilStableMs: "soon" as unknown as number } } }, 2);
      await assert.rejects(s.getMigration("m-1"), (e) => isFerryError(e, "FERRY_ERR_INTERNAL") && /untilStableMs/.test(e.message));
      s.close();
    });

    void test("active migrations are those not done", async () => {
      const s = make();
      const a = await s.createMigration(newRecord(contractPlan("m-1"), 1000));
      await s.createMigration(newRecord(contractPlan("m-2"), 2000));
      await s.updateMigration({ ...a, phase: "done", outcome: "succeeded", reason: "migrated" }, a.version);
      assert.deepEqual((await s.listActiveMigrations()).map((r) => r.id), ["m-2"]);
      s.close();
    });

    void test("journal: seq per migration, in order, data kept", async () => {
      const s = make();
      await s.createMigration(newRecord(contractPlan("m-1"), 1000));
      await s.createMigration(newRecord(contractPlan("m-2"), 1000));
      const e1 = await s.appendJournal({ migrationId: "m-1", phase: "prepare", kind: "intent", data: { step: "prepare", attempt: 1 }, at: 5 });
      await s.appendJournal({ migrationId: "m-2", phase: "begin", kind: "intent", data: { step: "begin" }, at: 6 });
      const e2 = await s.appendJournal({ migrationId: "m-1", phase: "prepare", kind: "result", data: { step: "prepare", value: { instanceId: "i-9", uri: "tcp:x:1" } }, at: 7 });
      assert.deepEqual([e1.seq, e2.seq], [1, 2]);
      const j = await s.listJournal("m-1");
      assert.deepEqual(j.map((e) => [e.seq, e.kind]), [[1, "intent"], [2, "result"]]);
      assert.deepEqual(j[1]?.data, { step: "prepare", value: { instanceId: "i-9", uri: "tcp:x:1" } });
      assert.deepEqual(await s.listJournal("m-3"), []);
      await assert.rejects(s.appendJournal({ migrationId: "m-3", phase: "begin", kind: "intent", data: {}, at: 1 }));
      s.close();
    });
  });
}
