// The etcd client against a real one-member etcd that stops and comes back:
// while it is down a call fails with an error that names the store and says
// what to check; once it answers again, a call goes through within about a
// second (etcd3's default left a member that had failed three calls alone for
// 5 s: after a quorum loss, a controller's reads kept failing with "the
// circuit breaker is open" although etcd was back).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { systemClock } from "../core/clock.ts";
import { isFerryError } from "../core/errors.ts";
import { newRecord } from "../migration/types.ts";
import { contractPlan } from "./contract.ts";
import { EtcdConnection } from "./etcd-client.ts";
import { EtcdStore } from "./etcd.ts";
import { EtcdCluster } from "./testing/etcd-cluster.ts";

let cluster: EtcdCluster | undefined;
let conn: EtcdConnection | undefined;
before(async () => {
  cluster = await EtcdCluster.start({ members: 1 });
  conn = EtcdConnection.connect({ endpoints: cluster.endpoints, prefix: "cl/", callTimeoutMs: 1000 });
});
after(async () => {
  conn?.close();
  await cluster?.close();
});

test("etcd down: calls fail naming the store; etcd back: a call goes through within about a second, not etcd3's 5 s", async () => {
  await conn!.client.put("cl/k").value("v");
  await cluster!.kill(0);
  const errors: string[] = [];
  for (let i = 0; i < 5; i++) {
    errors.push(await conn!.get("k").then(() => "answered", (e: unknown) => (e instanceof Error ? e.message : String(e))));
  }
  // each read was asked again for its 1 s call deadline before it failed
  assert.ok(errors.every((m) => /^etcd store: get k: etcd gave no usable answer for 1000 ms \(last: .*etcdctl endpoint health/.test(m)), errors.join("\n"));
  await cluster!.restart(0);
  const t0 = systemClock.monotonic();
  let value: string | undefined;
  while (value === undefined && systemClock.monotonic() - t0 < 10_000) {
    value = await conn!.get("k").then((s) => s?.value, () => undefined);
    if (value === undefined) await systemClock.sleep(50);
  }
  const took = systemClock.monotonic() - t0;
  assert.equal(value, "v");
  assert.ok(took < 2000, `the first call through ${took.toFixed(0)} ms after etcd answered again`);
});

test("a write sent while leading, whose term ends before etcd answers, is refused as FERRY_ERR_NOT_LEADER (not as the caller's own conflict)", async () => {
  const c = EtcdConnection.connect({ endpoints: cluster!.endpoints, prefix: "fence/" });
  try {
    // leading a term etcd does not have: the txn's compare on the leader key fails
    c.setFence({ kind: "leader", term: "999999" });
    const store = new EtcdStore(c);
    const write = store.createMigration(newRecord(contractPlan("m-race"), 1));
    // the election notices the lapse while the txn is on its way
    c.setFence({ kind: "follower" });
    await assert.rejects(write, (e: unknown) => isFerryError(e, "FERRY_ERR_NOT_LEADER") && /term ended while the write was on its way/.test((e as Error).message));
    c.setFence({ kind: "open" });
    assert.equal(await store.getMigration("m-race"), undefined, "nothing was written");
  } finally {
    c.close();
  }
});
