// The etcd backend against a real etcd (Debian's etcd-server, started per file
// by EtcdCluster on free loopback ports): the Store and ClusterStore contracts
// SQLite passes, then what only several controllers do — racing writers,
// concurrent appends, watches — and a member lost from a three-member cluster.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { newRecord } from "../migration/types.ts";
import type { Store } from "../migration/store-port.ts";
import { contractVm, clusterContract } from "./cluster-contract.ts";
import { contractPlan, storeContract } from "./contract.ts";
import { EtcdClusterStore } from "./etcd-cluster-store.ts";
import { EtcdConnection } from "./etcd-client.ts";
import { EtcdEventLog } from "./etcd-events.ts";
import { EtcdStore } from "./etcd.ts";
import { SqliteStore } from "./sqlite.ts";
import { EtcdCluster } from "./testing/etcd-cluster.ts";

type Ev = { seq: number; at: number; type: string };

let cluster: EtcdCluster | undefined;
const conns: EtcdConnection[] = [];
before(async () => {
  cluster = await EtcdCluster.start();
});
after(async () => {
  for (const c of conns) c.close();
  await cluster?.close();
});

let n = 0;
/** A connection of its own under `prefix` (default: one of its own, so each test starts from an empty store). */
const connect = (prefix = `t${n++}/`): EtcdConnection => {
  const c = EtcdConnection.connect({ endpoints: cluster!.endpoints, prefix });
  conns.push(c);
  return c;
};

storeContract("etcd (one member)", () => new EtcdStore(connect(), { owns: true }));
clusterContract("etcd (one member)", () => new EtcdClusterStore(connect(), { owns: true }));

describe("etcd store: two controllers", () => {
  test("racing updates of one migration: exactly one wins each round, the other gets the retryable conflict", async () => {
    const prefix = `race${n++}/`;
    const [a, b] = [new EtcdStore(connect(prefix)), new EtcdStore(connect(prefix))];
    let cur = await a.createMigration(newRecord(contractPlan("m-1"), 1000));
    for (let round = 0; round < 20; round++) {
      const results = await Promise.allSettled([a.updateMigration({ ...cur, phase: "begin" }, cur.version), b.updateMigration({ ...cur, phase: "prepare" }, cur.version)]);
      const won = results.filter((r) => r.status === "fulfilled");
      assert.equal(won.length, 1, `round ${round}`);
      const lost = results.find((r) => r.status === "rejected");
      assert.equal((lost?.reason as { code?: string; retryable?: boolean }).code, "FERRY_ERR_CONFLICT");
      assert.equal((lost?.reason as { retryable?: boolean }).retryable, true);
      cur = (await a.getMigration("m-1"))!;
      assert.equal(cur.version, round + 2);
      assert.equal(cur.phase, won[0]!.value.phase);
    }
  });

  test("concurrent journal appends from two controllers: every entry kept, seqs 1..n with no gap or double", async () => {
    const prefix = `journal${n++}/`;
    const [a, b] = [new EtcdStore(connect(prefix)), new EtcdStore(connect(prefix))];
    await a.createMigration(newRecord(contractPlan("m-1"), 1000));
    const appends = Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).appendJournal({ migrationId: "m-1", phase: "begin", kind: "intent", data: { i }, at: i }));
    const seqs = (await Promise.all(appends)).map((e) => e.seq).sort((x, y) => x - y);
    assert.deepEqual(seqs, Array.from({ length: 40 }, (_, i) => i + 1));
    const j = await b.listJournal("m-1");
    assert.deepEqual(j.map((e) => e.seq), seqs);
    assert.deepEqual(new Set(j.map((e) => (e.data as { i: number }).i)).size, 40);
  });

  test("racing VM writes: one createVm per name wins; putVmIf from a stale view changes nothing", async () => {
    const prefix = `vms${n++}/`;
    const [a, b] = [new EtcdClusterStore(connect(prefix)), new EtcdClusterStore(connect(prefix))];
    const made = await Promise.allSettled([a.createVm(contractVm("web", "6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab")), b.createVm(contractVm("web", "7f1b0c9e-2d3a-4b5c-8d7e-0123456789ab"))]);
    assert.deepEqual(made.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
    const vm = (made.find((r) => r.status === "fulfilled") as PromiseFulfilledResult<Awaited<ReturnType<typeof a.createVm>>>).value;
    const moves = await Promise.all([
      a.putVmIf({ ...vm, host: "host-b", instanceId: "i-0000000b" }, { host: "host-a", instanceId: "i-0000000a" }),
      b.putVmIf({ ...vm, host: "host-c", instanceId: "i-0000000c" }, { host: "host-a", instanceId: "i-0000000a" }),
    ]);
    assert.equal(moves.filter((m) => m !== undefined).length, 1);
    assert.equal((await a.getVm("web"))?.host, moves.find((m) => m !== undefined)?.host);
  });

  test("waitForMigration wakes on another controller's change (a watch, not a poll)", async () => {
    const prefix = `watch${n++}/`;
    const [a, b] = [new EtcdStore(connect(prefix)), new EtcdStore(connect(prefix))];
    const v1 = await a.createMigration(newRecord(contractPlan("m-1"), 1000));
    const t0 = Date.now();
    const waiting = a.waitForMigration("m-1", (r) => r?.phase === "prepare", { timeoutMs: 5000 });
    setTimeout(() => void b.updateMigration({ ...v1, phase: "prepare" }, 1), 100);
    assert.equal((await waiting)?.version, 2);
    assert.ok(Date.now() - t0 < 2000);
    await assert.rejects(a.waitForMigration("m-1", (r) => r?.phase === "done", { timeoutMs: 200 }), { code: "FERRY_ERR_TIMEOUT" });
  });
});

describe("etcd event log", () => {
  test("appends without waiting stay in order, survive a reopen, and since() gives the newest first-oldest", async () => {
    const prefix = `events${n++}/`;
    const log = await EtcdEventLog.open<Ev>(connect(prefix));
    assert.equal(log.lastSeq(), 0);
    for (let seq = 1; seq <= 150; seq++) log.append({ seq, at: seq, type: "x" });
    await log.flush();
    const again = await EtcdEventLog.open<Ev>(connect(prefix));
    assert.equal(again.lastSeq(), 150);
    assert.deepEqual(again.since(0, 1000).map((e) => e.seq), Array.from({ length: 150 }, (_, i) => i + 1));
    assert.deepEqual(again.since(140, 3).map((e) => e.seq), [148, 149, 150]);
    await log.close();
    await again.close();
  });

  test("a second writer's stale number is refused, not stored out of order; a follower on another connection sees every event once, in order", async () => {
    const prefix = `events${n++}/`;
    const errors: unknown[] = [];
    const a = await EtcdEventLog.open<Ev>(connect(prefix));
    const b = await EtcdEventLog.open<Ev>(connect(prefix), { onError: (e) => errors.push(e) });
    const seen: number[] = [];
    const unwatch = b.watchEvents(0, (e) => seen.push(e.seq));
    for (let seq = 1; seq <= 20; seq++) a.append({ seq, at: seq, type: "a" });
    await a.flush();
    b.append({ seq: 7, at: 0, type: "stale" });
    await b.flush();
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /event 7 refused/);
    const deadline = Date.now() + 5000;
    while (seen.length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(seen, Array.from({ length: 20 }, (_, i) => i + 1));
    assert.equal((await EtcdEventLog.open<Ev>(connect(prefix))).since(6, 1)[0]?.type, "a");
    unwatch();
    await a.close();
    await b.close();
  });

  test("keeps the newest `keep` events in etcd", async () => {
    const prefix = `events${n++}/`;
    const log = await EtcdEventLog.open<Ev>(connect(prefix), { keep: 150 });
    for (let seq = 1; seq <= 300; seq++) log.append({ seq, at: seq, type: "x" });
    await log.close();
    const c = connect(prefix);
    const { items } = await c.list("events/");
    assert.ok(items.length <= 250 && items.length >= 150, `${items.length} events kept`);
    assert.equal((await EtcdEventLog.open<Ev>(c, { keep: 150 })).lastSeq(), 300);
  });
});

describe("etcd store on three members", () => {
  test("a migration is written and read with one member killed (a quorum is left); per-operation latency of etcd vs SQLite", async (t) => {
    const three = await EtcdCluster.start({ members: 3 });
    const dir = await mkdtemp(join(tmpdir(), "ferry-etcd-bench-"));
    try {
      const c = EtcdConnection.connect({ endpoints: three.endpoints });
      const s = new EtcdStore(c, { owns: true });
      await three.kill(0);
      const v1 = await s.createMigration(newRecord(contractPlan("m-1"), 1000));
      assert.equal((await s.updateMigration({ ...v1, phase: "begin" }, 1)).version, 2);
      await three.restart(0);
      const time = async (name: string, store: Store): Promise<string> => {
        const ops = 30;
        const t0 = performance.now();
        for (let i = 0; i < ops; i++) {
          const r = await store.createMigration(newRecord(contractPlan(`bench-${i}`), 2000 + i));
          await store.updateMigration({ ...r, phase: "begin" }, 1);
          await store.appendJournal({ migrationId: r.id, phase: "begin", kind: "intent", data: {}, at: 1 });
          await store.getMigration(r.id);
        }
        return `${name}: ${((performance.now() - t0) / (ops * 4)).toFixed(2)} ms per operation (create, update, append, get; ${ops} each)`;
      };
      const sqlite = new SqliteStore(join(dir, "controller.db"));
      t.diagnostic(await time("sqlite (file, synchronous FULL)", sqlite));
      t.diagnostic(await time("etcd (3 members, loopback)", s));
      sqlite.close();
      s.close();
    } finally {
      await three.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
