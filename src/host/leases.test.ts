import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Worker } from "node:worker_threads";
import { FakeClock } from "../core/clock.ts";
import { isFerryError } from "../core/errors.ts";
import type { LeaseHolder } from "./leases.ts";
import { LeaseStore, openStateDb, RecordStore } from "./leases.ts";

const base = await mkdtemp(join(tmpdir(), "ferry-leases-"));
after(() => rm(base, { recursive: true, force: true }));
let n = 0;
const freshFile = (): string => join(base, `s${n++}`, "state", "state.db");

const VM_A = "11111111-1111-4111-8111-111111111111";
const VM_B = "22222222-2222-4222-8222-222222222222";
const instA: LeaseHolder = { kind: "instance", vmUuid: VM_A, instanceId: "i-a1" };
const instA2: LeaseHolder = { kind: "instance", vmUuid: VM_A, instanceId: "i-a2" };
const instB: LeaseHolder = { kind: "instance", vmUuid: VM_B, instanceId: "i-b1" };
const VF1 = "0000:3b:10.0";
const VF2 = "0000:3b:10.1";

describe("leases", () => {
  test("state file is owner-only (dir 0700, file 0600) and leases survive a restart", async () => {
    const file = freshFile();
    const clock = new FakeClock();
    const db = openStateDb(file);
    new LeaseStore(db, clock).lease(VF1, instA);
    db.close();
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(join(file, ".."))).mode & 0o777, 0o700);
    const db2 = openStateDb(file);
    const again = new LeaseStore(db2, clock);
    assert.deepEqual(again.list().map((l) => [l.vf, l.holder]), [[VF1, instA]]);
    db2.close();
  });

  test("idempotent by holder; a different holder is refused, naming the holder", () => {
    const clock = new FakeClock();
    const db = openStateDb(freshFile());
    const s = new LeaseStore(db, clock);
    const first = s.lease(VF1, instA);
    clock.advance(1000);
    assert.deepEqual(s.lease(VF1, { ...instA }), first);
    assert.throws(() => s.lease(VF1, instB), (e: unknown) => {
      assert.ok(isFerryError(e, "FERRY_ERR_LEASE_HELD"));
      assert.match(e.message, /0000:3b:10.0 is leased to instance i-a1 of VM 11111111/);
      return true;
    });
    assert.throws(() => s.lease(VF1, instA2), (e: unknown) => isFerryError(e, "FERRY_ERR_LEASE_HELD"));
    assert.throws(() => s.lease("../etc", instA), (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"));
    // release: only by the holder, and idempotent
    assert.throws(() => s.release(VF1, instB), (e: unknown) => isFerryError(e, "FERRY_ERR_LEASE_HELD"));
    assert.equal(s.release(VF1, instA), true);
    assert.equal(s.release(VF1, instA), false);
    assert.deepEqual(s.list(), []);
    db.close();
  });

  test("transfer: migration lease → instance lease at Finish, instance → new instance (local migration), atomic and idempotent", () => {
    const clock = new FakeClock();
    const db = openStateDb(freshFile());
    const s = new LeaseStore(db, clock);
    const mig: LeaseHolder = { kind: "migration", migrationId: "m-1", vmUuid: VM_A, expiresAt: clock.now() + 60_000 };
    s.lease(VF1, mig);
    assert.deepEqual(s.transfer(VF1, mig, instA).holder, instA);
    assert.deepEqual(s.transfer(VF1, mig, instA).holder, instA); // retried Finish
    assert.throws(() => s.transfer(VF1, mig, instB), (e: unknown) => isFerryError(e, "FERRY_ERR_LEASE_HELD"));
    assert.deepEqual(s.transfer(VF1, instA, instA2).holder, instA2);
    assert.throws(() => s.transfer(VF2, instA, instB), (e: unknown) => isFerryError(e, "FERRY_ERR_NOT_FOUND"));
    assert.deepEqual(s.list().map((l) => [l.vf, l.holder]), [[VF1, instA2]]);
    db.close();
  });

  test("expired migration leases are reclaimed and returned; an expired one does not block a new holder", () => {
    const clock = new FakeClock();
    const db = openStateDb(freshFile());
    const s = new LeaseStore(db, clock);
    const now = clock.now();
    s.lease(VF1, { kind: "migration", migrationId: "m-1", vmUuid: VM_A, expiresAt: now + 1000 });
    s.lease(VF2, { kind: "migration", migrationId: "m-2", vmUuid: VM_B, expiresAt: now + 5000 });
    s.lease("0000:3b:10.2", instA);
    assert.deepEqual(s.reclaimExpired(now + 999), []);
    const gone = s.reclaimExpired(now + 1000);
    assert.deepEqual(gone.map((l) => l.vf), [VF1]);
    assert.deepEqual(s.list().map((l) => l.vf), [VF2, "0000:3b:10.2"]);
    clock.advance(5000);
    assert.deepEqual(s.lease(VF2, instB).holder, instB);
    db.close();
  });

  test("two threads, each with its own connection, race for the same VF 200 times: exactly one wins each round", async () => {
    const file = freshFile();
    openStateDb(file).close();
    const rounds = 200;
    const vfs = Array.from({ length: rounds }, (_, i) => `0000:${(0x40 + Math.floor(i / 64)).toString(16)}:${(0x10 + Math.floor((i % 64) / 8)).toString(16)}.${i % 8}`);
    const barrier = new SharedArrayBuffer(rounds * 4);
    const url = new URL("./testdata/lease-race-worker.ts", import.meta.url);
    const start = (instanceId: string, vmUuid: string): Promise<{ wins: boolean[]; errors: string[] }> =>
      new Promise((resolve, reject) => {
        const w = new Worker(url, { workerData: { file, vfs, instanceId, vmUuid, barrier, parties: 2 } });
        w.once("message", resolve);
        w.once("error", reject);
      });
    const [a, b] = await Promise.all([start("i-a1", VM_A), start("i-b1", VM_B)]);
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
    const db = openStateDb(file);
    const leases = new Map(new LeaseStore(db, new FakeClock()).list().map((l) => [l.vf, l.holder]));
    db.close();
    let aWins = 0;
    for (let i = 0; i < rounds; i++) {
      assert.notEqual(a.wins[i], b.wins[i], `round ${i}: exactly one winner`);
      const holder = leases.get(vfs[i]!);
      assert.equal(holder?.kind === "instance" ? holder.instanceId : undefined, a.wins[i] ? "i-a1" : "i-b1");
      if (a.wins[i]) aWins++;
    }
    assert.equal(leases.size, rounds);
    // Both really raced (neither won every round), or the test proves little.
    assert.ok(aWins > 0 && aWins < rounds, `A won ${aWins} of ${rounds}`);
  });

  test("records: feature state by namespace and key, surviving a restart", () => {
    const file = freshFile();
    const clock = new FakeClock();
    const db = openStateDb(file);
    const r = new RecordStore(db, clock);
    assert.equal(r.putIfAbsent("vf-setup", VF1, { mac: "00:00:00:00:00:00", vlan: 0 }), true);
    assert.equal(r.putIfAbsent("vf-setup", VF1, { mac: "52:54:00:00:00:01", vlan: 5 }), false);
    r.put("other", "k", [1, 2]);
    db.close();
    const db2 = openStateDb(file);
    const r2 = new RecordStore(db2, clock);
    assert.deepEqual(r2.get("vf-setup", VF1), { mac: "00:00:00:00:00:00", vlan: 0 });
    assert.deepEqual(r2.list("other"), [{ key: "k", value: [1, 2] }]);
    assert.equal(r2.delete("vf-setup", VF1), true);
    assert.equal(r2.get("vf-setup", VF1), undefined);
    db2.close();
  });
  test("by holder: heldBy, releaseHeldBy and transferHeldBy sweep one holder's leases, expired migration leases included", () => {
    const clock = new FakeClock();
    const db = openStateDb(freshFile());
    const s = new LeaseStore(db, clock);
    const VF3 = "0000:3b:10.2";
    const mig: LeaseHolder = { kind: "migration", migrationId: "m-1", vmUuid: VM_A, expiresAt: clock.now() + 1_000 };
    s.lease(VF1, instA);
    s.lease(VF2, instA);
    s.lease(VF3, instB);
    // by id alone, or by id and VM (as sameHolder)
    assert.deepEqual(s.heldBy({ kind: "instance", instanceId: "i-a1" }).map((l) => l.vf), [VF1, VF2]);
    assert.deepEqual(s.heldBy(instA).map((l) => l.vf), [VF1, VF2]);
    assert.deepEqual(s.heldBy({ kind: "instance", instanceId: "i-a1", vmUuid: VM_B }), []);
    assert.deepEqual(s.heldBy({ kind: "migration", migrationId: "i-a1" }), []);
    // transfer: every lease of the instance to the migration, none of another holder's
    assert.deepEqual(s.transferHeldBy({ kind: "instance", instanceId: "i-a1" }, mig), [VF1, VF2]);
    assert.deepEqual(s.heldBy(instA), []);
    assert.deepEqual(s.list().map((l) => [l.vf, l.holder]), [[VF1, mig], [VF2, mig], [VF3, instB]]);
    assert.deepEqual(s.transferHeldBy(instA, instA2), [], "nothing held: nothing moved");
    // an expired migration lease is still the migration's until reclaimed
    clock.advance(5_000);
    assert.deepEqual(s.heldBy({ kind: "migration", migrationId: "m-1" }).map((l) => l.vf), [VF1, VF2]);
    assert.deepEqual(s.releaseHeldBy({ kind: "migration", migrationId: "m-1" }), [VF1, VF2]);
    assert.deepEqual(s.releaseHeldBy({ kind: "migration", migrationId: "m-1" }), [], "idempotent");
    assert.deepEqual(s.list().map((l) => l.vf), [VF3]);
    assert.deepEqual(s.releaseHeldBy(instB), [VF3]);
    assert.deepEqual(s.list(), []);
    db.close();
  });
});
