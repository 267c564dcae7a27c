import assert from "node:assert/strict";
import { test } from "node:test";
import { demoProblems, type DemoRow } from "./lab-demo.ts";

const row = (n: number, o: Partial<DemoRow> = {}): DemoRow => ({
  n, from: "host1", to: "host2", outcome: "succeeded", expected: "succeeded", runsOn: "host2", downtimeMs: 40, totalMs: 2000,
  reachableAfter: true, memory: "same", nics: [], ...o,
});

test("a demo whose migrations ended as expected, with the guest answering and its memory intact, has no problems", () => {
  assert.deepEqual(demoProblems([row(1), row(2), row(3), row(4, { expected: "recovered", outcome: "recovered", runsOn: "host1" })]), []);
});

test("a guest that does not answer after the recovered migration (back on its source) fails the demo too", () => {
  const p = demoProblems([row(1), row(2), row(3), row(4, { expected: "recovered", outcome: "recovered", runsOn: "host1", reachableAfter: false })]);
  assert.deepEqual(p, ["migration 4 (host1→host2): the guest did not answer on its failover NIC within 30 s after it (it runs on host1)"]);
});

test("a dead or corrupted guest after a 'succeeded' migration fails the demo, each problem named", () => {
  const p = demoProblems([
    row(1),
    row(2, { reachableAfter: false, memory: "not asked (the guest did not answer 'memsum 1234' on serial.sock: deadline exceeded)" }),
    row(3, { memory: "DIFFERENT" }),
    row(4, { expected: "recovered", outcome: "failed" }),
  ]);
  assert.equal(p.length, 4, p.join("\n"));
  assert.match(p[0]!, /^migration 2 \(host1→host2\): the guest did not answer on its failover NIC/);
  assert.match(p[1]!, /^migration 2 .*memory check: not asked \(the guest did not answer/);
  assert.match(p[2]!, /^migration 3 .*differs from the boot checksum/);
  assert.match(p[3]!, /^migration 4 \(host1→host2\) ended failed, expected recovered$/);
});
