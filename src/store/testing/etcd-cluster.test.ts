import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { EtcdCluster } from "./etcd-cluster.ts";

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test("three members on free loopback ports: healthy, one killed by pid leaves a quorum, restarted, all gone after close", async () => {
  const c = await EtcdCluster.start({ members: 3 });
  try {
    assert.equal(new Set(c.members.flatMap((m) => [m.clientPort, m.peerPort])).size, 6);
    assert.match(c.storeUrl, /^etcd:\/\/127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+$/);
    const pid = c.members[1]!.pid!;
    await c.kill(1);
    assert.equal(alive(pid), false);
    assert.equal(c.members[1]!.pid, undefined);
    await c.waitHealthy(10_000); // the two left are a quorum
    await c.restart(1);
    assert.notEqual(c.members[1]!.pid, undefined);
  } finally {
    await c.close();
  }
  for (const m of c.members) assert.equal(m.pid, undefined);
  assert.equal(existsSync(c.dir), false);
});

test("a member that cannot start fails start() with its log, and leaves nothing behind", async () => {
  await assert.rejects(EtcdCluster.start({ binary: "/nonexistent/etcd", startTimeoutMs: 3000 }), (e: unknown) => e instanceof Error && /not healthy/.test(e.message) && /ENOENT/.test(e.message));
});
