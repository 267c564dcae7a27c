// Leader election and fencing on a real one-member etcd: one of two
// candidates is elected, with the leader key's create revision as its term;
// the follower's writes are refused before etcd; when the leader gives its
// lease back the other is elected with a higher term, and a write of the old
// term is refused by etcd (the txn's compare on the leader key) and leaves
// the store unchanged.
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, test } from "node:test";
import { pino } from "pino";
import { systemClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import { newRecord } from "../migration/types.ts";
import { contractPlan } from "./contract.ts";
import { EtcdConnection } from "./etcd-client.ts";
import { EtcdElection } from "./etcd-election.ts";
import type { ElectionOptions } from "./etcd-election.ts";
import { EtcdStore } from "./etcd.ts";
import { EtcdCluster } from "./testing/etcd-cluster.ts";

let cluster: EtcdCluster | undefined;
const conns: EtcdConnection[] = [];
before(async () => {
  cluster = await EtcdCluster.start();
});
const elections: EtcdElection[] = [];
after(async () => {
  // also those a failed test left running (their loops would keep the file from ending)
  await Promise.all(elections.map((e) => e.close()));
  for (const c of conns) c.close();
  await cluster?.close();
});

const connect = (prefix: string): EtcdConnection => {
  const c = EtcdConnection.connect({ endpoints: cluster!.endpoints, prefix });
  conns.push(c);
  return c;
};

function candidate(prefix: string, id: string, events: string[], over: Partial<ElectionOptions> = {}): { conn: EtcdConnection; election: EtcdElection; elected: Promise<string> } {
  const conn = connect(prefix);
  let resolve: (t: string) => void = () => undefined;
  const elected = new Promise<string>((r) => (resolve = r));
  const o: ElectionOptions = {
    leaseMs: 2000, renewMs: 200, clock: systemClock, log: silentLogger,
    onElected: (t) => {
      events.push(`${id} elected ${t}`);
      resolve(t);
    },
    onLost: (why) => events.push(`${id} lost: ${why}`),
    ...over,
  };
  const election = new EtcdElection(conn, { id, url: `http://${id}:7600`, startedAt: 1 }, o);
  elections.push(election);
  return { conn, election, elected };
}

test("one of two is elected (term = the leader key's create revision); the follower's writes are refused; after the leader leaves the other leads with a higher term and the old term's writes are refused by etcd", async () => {
  const events: string[] = [];
  const a = candidate("el1/", "a", events);
  await a.election.start();
  const termA = await a.elected;
  const b = candidate("el1/", "b", events);
  await b.election.start();
  assert.equal(a.election.term, termA);
  assert.equal((await b.election.leader())?.id, "a");
  assert.equal((await b.election.leader())?.term, termA);
  assert.deepEqual((await a.election.members()).map((m) => m.id).sort(), ["a", "b"]);

  // the leader writes; the follower is refused before etcd
  const storeA = new EtcdStore(a.conn);
  const storeB = new EtcdStore(b.conn);
  const rec = await storeA.createMigration(newRecord(contractPlan("m-1"), 1000));
  await assert.rejects(storeB.updateMigration({ ...rec, phase: "begin" }, rec.version), { code: "FERRY_ERR_NOT_LEADER" });
  assert.equal((await storeA.getMigration("m-1"))?.phase, rec.phase);

  // a deposed leader: a third connection fenced with a's term, a stale leader's view after a takes over again below
  const stale = connect("el1/");
  stale.setFence({ kind: "leader", term: termA });
  const started = systemClock.monotonic();
  await a.election.close();
  const termB = await b.elected;
  assert.ok(systemClock.monotonic() - started < 2000, "a lease given back: the other is elected at once (watch on the leader key)");
  assert.ok(Number(termB) > Number(termA), `term ${termB} > ${termA}`);
  assert.equal((await b.election.leader())?.id, "b");
  const staleStore = new EtcdStore(stale);
  await assert.rejects(staleStore.updateMigration({ ...rec, phase: "begin" }, rec.version), (e: Error & { code?: string }) => e.code === "FERRY_ERR_NOT_LEADER" && /term .* is over/.test(e.message));
  await assert.rejects(staleStore.appendJournal({ migrationId: "m-1", phase: "begin", kind: "intent", data: { step: "begin" }, at: 2000 }), { code: "FERRY_ERR_NOT_LEADER" });
  assert.equal((await storeB.getMigration("m-1"))?.version, rec.version, "nothing of the old term was written");
  assert.deepEqual(await storeB.listJournal("m-1"), []);
  // the new leader writes
  assert.equal((await storeB.updateMigration({ ...rec, phase: "begin" }, rec.version)).version, rec.version + 1);
  await b.election.close();
  assert.deepEqual(events, [`a elected ${termA}`, `b elected ${termB}`]);
});

test("a leader whose lease lapses (etcd revokes it: as after a pause past the lease) loses: onLost, its writes refused, the follower elected", async () => {
  const events: string[] = [];
  const a = candidate("el2/", "a", events);
  await a.election.start();
  const termA = await a.elected;
  const b = candidate("el2/", "b", events);
  await b.election.start();
  // what a pause past the lease looks like from etcd: the lease is gone
  const leases = await a.conn.client.leaseClient.leaseLeases({});
  for (const l of leases.leases) {
    const ttl = await a.conn.client.leaseClient.leaseTimeToLive({ ID: l.ID, keys: true });
    if (ttl.keys.some((k) => k.toString().startsWith("el2/controllers/a"))) await a.conn.client.leaseClient.leaseRevoke({ ID: l.ID });
  }
  const termB = await b.elected;
  assert.ok(Number(termB) > Number(termA));
  const storeA = new EtcdStore(a.conn);
  await assert.rejects(storeA.createMigration(newRecord(contractPlan("m-2"), 1000)), { code: "FERRY_ERR_NOT_LEADER" });
  for (let i = 0; i < 50 && !events.some((e) => e.startsWith("a lost")); i++) await systemClock.sleep(50);
  assert.ok(events.some((e) => /^a lost: etcd says the lease is gone/.test(e)), events.join("; "));
  assert.equal(a.election.term, null);
  await a.election.close();
  await b.election.close();
});

test("a lease under etcd's minimum (1 s; etcd grants 2 s with its default election timeout) is said once in a warning that names what to change", async (t) => {
  // a member with etcd's default election timeout (1 s; the tests' and the lab's members run with 500 ms, which allows 1 s)
  const slow = await EtcdCluster.start({ electionTimeoutMs: 1000 });
  const c = EtcdConnection.connect({ endpoints: slow.endpoints, prefix: "el3/" });
  conns.push(c);
  t.after(() => slow.close());
  const lines: string[] = [];
  const log = pino({ level: "warn" }, new Writable({ write: (chunk: Buffer, _enc, done) => { lines.push(chunk.toString()); done(); } }));
  let elected: () => void = () => undefined;
  const done = new Promise<void>((r) => (elected = r));
  const e = new EtcdElection(c, { id: "a", url: "http://a:7600", startedAt: 1 }, { leaseMs: 1000, renewMs: 200, clock: systemClock, log, onElected: () => elected(), onLost: () => undefined });
  elections.push(e);
  await e.start();
  await done;
  await e.close();
  const warned = lines.map((l) => (JSON.parse(l) as { msg: string }).msg).filter((m) => /lease/.test(m));
  assert.equal(warned.length, 1, warned.join("\n"));
  assert.match(warned[0]!, /etcd granted a 2 s lease for the 1 s asked .*--election-timeout.*election\.leaseMs to 2000/);
});

test("close() with etcd gone returns within about a second: it does not wait out the calls in flight", async () => {
  const own = await EtcdCluster.start();
  try {
    const events: string[] = [];
    const conn = EtcdConnection.connect({ endpoints: own.endpoints, prefix: "gone/" });
    conns.push(conn);
    const o: ElectionOptions = { leaseMs: 2000, renewMs: 200, clock: systemClock, log: silentLogger, onElected: (t) => events.push(`elected ${t}`), onLost: (why) => events.push(`lost: ${why}`) };
    const leader = new EtcdElection(conn, { id: "a", url: "http://a:7600", startedAt: 1 }, o);
    elections.push(leader);
    await leader.start();
    assert.equal(events.length, 1, events.join("; "));
    const conn2 = EtcdConnection.connect({ endpoints: own.endpoints, prefix: "gone/" });
    conns.push(conn2);
    const follower = new EtcdElection(conn2, { id: "b", url: "http://b:7600", startedAt: 1 }, o);
    elections.push(follower);
    await follower.start();
    await own.kill(0);
    // both loops now wait on calls that etcd will never answer (each under the 5 s call deadline, retried)
    await systemClock.sleep(1_500);
    for (const [name, e] of [["leader", leader], ["follower", follower]] as const) {
      const t0 = systemClock.monotonic();
      await e.close();
      const took = systemClock.monotonic() - t0;
      assert.ok(took < 2_500, `${name}: close() took ${took.toFixed(0)} ms with etcd gone`);
    }
  } finally {
    await own.close();
  }
});
