import assert from "node:assert/strict";
import { test } from "node:test";
import { ASSUMED_LINK_BYTES_PER_S, chooseConvergence, downtimeLimitAt, notConvergedMessage } from "./convergence.ts";

const MiB = 1024 * 1024;
const cap = 100 * MiB;

test("chooseConvergence auto: auto-converge from 25 % of the bandwidth, harder from 75 %, off below", () => {
  const quiet = chooseConvergence({ dirtyBytesPerS: 10 * MiB, maxBandwidthBytes: cap });
  assert.equal(quiet.autoConverge, false);
  assert.match(quiet.reason, /no auto-converge: the guest dirties 10 MiB\/s, 10 % of the link's 100 MiB\/s \(the migration's cap\)/);

  const busy = chooseConvergence({ dirtyBytesPerS: 50 * MiB, maxBandwidthBytes: cap });
  assert.deepEqual([busy.autoConverge, busy.throttleInitial, busy.throttleIncrement], [true, 30, 20]);
  assert.match(busy.reason, /auto-converge from 30 %.*50 MiB\/s, 50 %/);

  const flood = chooseConvergence({ dirtyBytesPerS: 200 * MiB, maxBandwidthBytes: cap });
  assert.deepEqual([flood.autoConverge, flood.throttleInitial, flood.throttleIncrement], [true, 50, 25]);
  assert.match(flood.reason, /200 %/);

  // the boundary: exactly 25 % turns it on
  assert.equal(chooseConvergence({ dirtyBytesPerS: 25 * MiB, maxBandwidthBytes: cap }).autoConverge, true);
  assert.equal(chooseConvergence({ dirtyBytesPerS: 24 * MiB, maxBandwidthBytes: cap }).autoConverge, false);
});

test("chooseConvergence auto with no cap weighs against an assumed 10 Gb/s link, and says so", () => {
  const c = chooseConvergence({ dirtyBytesPerS: 200 * MiB });
  assert.equal(c.bandwidthBytesPerS, ASSUMED_LINK_BYTES_PER_S);
  assert.equal(c.bandwidthFrom, "assumed");
  assert.equal(c.autoConverge, false); // 200 MiB/s is 17 % of 10 Gb/s
  assert.match(c.reason, /assumed: no cap given/);
  assert.equal(chooseConvergence({ dirtyBytesPerS: 600 * MiB }).autoConverge, true);
});

test("chooseConvergence: an unmeasured rate turns auto-converge on (it throttles only a guest that does not converge); asked policies win over the rate", () => {
  const unknown = chooseConvergence({ maxBandwidthBytes: cap });
  assert.equal(unknown.autoConverge, true);
  assert.equal(unknown.throttleInitial, 30);
  assert.match(unknown.reason, /not measured in time/);
  const off = chooseConvergence({ requested: "off", dirtyBytesPerS: 500 * MiB, maxBandwidthBytes: cap });
  assert.equal(off.autoConverge, false);
  assert.match(off.reason, /off \(asked\)/);
  const on = chooseConvergence({ requested: "auto-converge", dirtyBytesPerS: 0, maxBandwidthBytes: cap });
  assert.equal(on.autoConverge, true);
  assert.match(on.reason, /\(asked\)/);
});

test("notConvergedMessage: says it did not converge, with dirty rate against throughput, and what to do next", () => {
  const choice = chooseConvergence({ requested: "off" });
  const m = notConvergedMessage({ convergeMs: 20_000, choice, dirtyBytesPerS: 210 * MiB, sentBytesPerS: 98 * MiB, remainingBytes: 60 * MiB, passes: 14 });
  assert.match(m, /^did not converge within 20000 ms \(policy: no auto-converge\): the guest dirtied 210 MiB\/s while the migration sent 98 MiB\/s, 60 MiB still to send, 14 passes over RAM; migration cancelled, the guest keeps running on the source; retry with convergence "auto-converge"/);
  const throttled = notConvergedMessage({ convergeMs: 5_000, choice: chooseConvergence({ dirtyBytesPerS: 170 * MiB, maxBandwidthBytes: cap }), throttlePercent: 99 });
  assert.match(throttled, /\(policy: auto-converge, chosen at a measured 170 MiB\/s\).*vCPUs throttled 99 %.*longer converge deadline/);
});

test("downtime steps: 50 ms until the first pass over RAM ends, then doubled every second up to QEMU's 300 ms", () => {
  assert.equal(downtimeLimitAt(null), 50);
  assert.equal(downtimeLimitAt(-5), 50);
  assert.deepEqual([0, 999, 1000, 1999, 2000, 2999, 3000, 60_000, 1e12].map((ms) => downtimeLimitAt(ms)), [50, 50, 100, 100, 200, 200, 300, 300, 300]);
  assert.deepEqual([0, 500, 1000].map((ms) => downtimeLimitAt(ms, { startMs: 20, maxMs: 70, stepMs: 500 })), [20, 40, 70]);
  // a maximum under the start is no maximum below it
  assert.equal(downtimeLimitAt(5000, { startMs: 100, maxMs: 10 }), 100);
});
