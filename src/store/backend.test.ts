import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { initCa, issueCert } from "../core/ca.ts";
import { newRecord } from "../migration/types.ts";
import { openBackend, parseStoreUrl } from "./backend.ts";
import { contractPlan } from "./contract.ts";
import { EtcdCluster, freePorts } from "./testing/etcd-cluster.ts";

type Ev = { seq: number; at: number };
const dir = await mkdtemp(join(tmpdir(), "ferry-backend-"));
after(() => rm(dir, { recursive: true, force: true }));

test("store URLs: sqlite, etcd endpoints; anything else is a config error naming the field", () => {
  assert.deepEqual(parseStoreUrl("--store", "etcd://127.0.0.1:2379,[::1]:2379"), { kind: "etcd", endpoints: ["127.0.0.1:2379", "[::1]:2379"] });
  assert.throws(() => parseStoreUrl("--store", "etcd://"), { code: "FERRY_ERR_CONFIG", message: /^--store: "etcd:\/\/" is not a store/ });
  assert.throws(() => parseStoreUrl("--store", "etcd://a:0"), /--store: etcd endpoint "a:0" is not host:port/);
});

test("an etcd store nobody answers at is refused at open with a clear error, within the call deadline", async () => {
  const [port] = await freePorts(1);
  const t0 = Date.now();
  await assert.rejects(openBackend<Ev>({ kind: "etcd", endpoints: [`127.0.0.1:${port}`], callTimeoutMs: 1000 }, join(dir, "unused.db")), (e: Error & { code?: string }) => e.code === "FERRY_ERR_CONFIG" && /cannot open the etcd store at etcd:\/\/127\.0\.0\.1:\d+: .*quorum/.test(e.message));
  assert.ok(Date.now() - t0 < 10_000);
});

test("etcd over mutual TLS (certificates from 'ferry ca'): the backend opens with the store's tls files and keeps a migration", async () => {
  const ca = join(dir, "ca");
  await initCa(ca);
  const server = await issueCert(ca, { name: "etcd", ips: ["127.0.0.1"] });
  const client = await issueCert(ca, { name: "ctl" });
  const cluster = await EtcdCluster.start({ tls: { cert: server.cert, key: server.key, ca: server.ca } });
  try {
    const endpoints = cluster.members.map((m) => `127.0.0.1:${m.clientPort}`);
    await assert.rejects(openBackend<Ev>({ kind: "etcd", endpoints, callTimeoutMs: 1000 }, join(dir, "unused.db")), { code: "FERRY_ERR_CONFIG" });
    await assert.rejects(openBackend<Ev>({ kind: "etcd", endpoints, tls: { ca: client.ca } }, join(dir, "unused.db")), /needs store\.tls\.serverName/);
    const b = await openBackend<Ev>({ kind: "etcd", endpoints, tls: { ca: client.ca, cert: client.cert, key: client.key, serverName: "localhost" } }, join(dir, "unused.db"));
    await b.store.createMigration(newRecord(contractPlan("m-tls"), 1));
    assert.equal((await b.store.getMigration("m-tls"))?.version, 1);
    await b.close();
  } finally {
    await cluster.close();
  }
});
