import assert from "node:assert/strict";
import { test } from "node:test";
import { measuredThroughput, predictPrecopy } from "./predict.ts";

const MiB = 2 ** 20;

test("an idle guest: one pass of all RAM, then an empty paused pass", () => {
  const p = predictPrecopy({ ramBytes: 1024 * MiB, bandwidthBytesPerSec: 100 * MiB, dirtyBytesPerSec: 0 });
  assert.ok(p.converges);
  assert.equal(p.passes, 2);
  assert.equal(Math.round(p.durationMs), 10_240);
  assert.equal(p.downtimeMs, 0);
  assert.equal(p.sentBytes, 1024 * MiB);
});

test("a guest dirtying a tenth of the bandwidth: passes shrink tenfold until the rest fits the 300 ms limit", () => {
  // 1000 MiB at 100 MiB/s = 10 s; then 100 MiB (1 s), 10 MiB (100 ms ≤ 300 ms: paused)
  const p = predictPrecopy({ ramBytes: 1000 * MiB, bandwidthBytesPerSec: 100 * MiB, dirtyBytesPerSec: 10 * MiB });
  assert.ok(p.converges);
  assert.equal(p.passes, 3);
  assert.equal(Math.round(p.downtimeMs), 100);
  assert.equal(Math.round(p.durationMs), 11_100);
  assert.equal(Math.round(p.sentBytes / MiB), 1110);
});

test("a lower downtime limit takes more passes and pauses the guest for less", () => {
  const loose = predictPrecopy({ ramBytes: 1000 * MiB, bandwidthBytesPerSec: 100 * MiB, dirtyBytesPerSec: 10 * MiB, downtimeLimitMs: 300 });
  const tight = predictPrecopy({ ramBytes: 1000 * MiB, bandwidthBytesPerSec: 100 * MiB, dirtyBytesPerSec: 10 * MiB, downtimeLimitMs: 5 });
  assert.ok(loose.converges && tight.converges);
  assert.equal(tight.passes, 5);
  assert.ok(tight.downtimeMs <= 5 && tight.downtimeMs < loose.downtimeMs);
  assert.ok(tight.durationMs > loose.durationMs);
});

test("dirtying as fast as the link sends: will not converge, and says what a forced completion would pause", () => {
  const p = predictPrecopy({ ramBytes: 512 * MiB, bandwidthBytesPerSec: 50 * MiB, dirtyBytesPerSec: 80 * MiB });
  assert.equal(p.converges, false);
  assert.match(p.reason, /at least as fast as the link sends it/);
  assert.equal(p.remainingBytes, 512 * MiB);
  assert.equal(Math.round(p.forcedDowntimeMs), 10_240);
});

test("dirtying just under the bandwidth: converges only after many passes, within the model's bound", () => {
  const p = predictPrecopy({ ramBytes: 512 * MiB, bandwidthBytesPerSec: 100 * MiB, dirtyBytesPerSec: 99 * MiB });
  assert.ok(p.converges);
  assert.ok(p.passes > 50, `passes ${p.passes}`);
  assert.ok(p.downtimeMs <= 300);
});

test("RAM small enough to fit the limit whole: converges even when dirtied faster than sent", () => {
  const p = predictPrecopy({ ramBytes: 10 * MiB, bandwidthBytesPerSec: 100 * MiB, dirtyBytesPerSec: 500 * MiB });
  assert.ok(p.converges);
  assert.equal(Math.round(p.downtimeMs), 100);
});

test("inputs no migration has are refused", () => {
  assert.throws(() => predictPrecopy({ ramBytes: MiB, bandwidthBytesPerSec: 0, dirtyBytesPerSec: 0 }), /bandwidthBytesPerSec/);
  assert.throws(() => predictPrecopy({ ramBytes: -1, bandwidthBytesPerSec: 1, dirtyBytesPerSec: 0 }), /ramBytes/);
  assert.throws(() => predictPrecopy({ ramBytes: 1, bandwidthBytesPerSec: 1, dirtyBytesPerSec: Number.NaN }), /dirtyBytesPerSec/);
});

test("measured throughput: the median of the newest migrations, none without data", () => {
  assert.equal(measuredThroughput([]), null);
  assert.equal(measuredThroughput([{ bytes: 0, ms: 10 }]), null);
  assert.equal(measuredThroughput([{ bytes: 100 * MiB, ms: 1000 }, { bytes: 300 * MiB, ms: 1000 }, { bytes: 200 * MiB, ms: 1000 }]), 200 * MiB);
  // only the newest n count
  assert.equal(measuredThroughput([{ bytes: 10 * MiB, ms: 1000 }, { bytes: 20 * MiB, ms: 1000 }, { bytes: 900 * MiB, ms: 1000 }], 2), 15 * MiB);
});
