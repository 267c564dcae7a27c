import assert from "node:assert/strict";
import { test } from "node:test";
import type { ProgressStreamEvent } from "../../wire/migration-stream.ts";
import { PaceWindow, plainEventLine, progressFigures, renderPhases } from "./migration-progress.ts";

const MiB = 2 ** 20;
const sample: ProgressStreamEvent = {
  type: "progress", migrationId: "m-1", phase: "perform", at: 1_000_500, status: "active",
  transferredBytes: 64 * MiB, remainingBytes: 192 * MiB, totalBytes: 256 * MiB, dirtyPagesRate: 120, mbps: 8 * 8.388608, expectedDowntimeMs: 300, iterations: 2,
};

test("progress: percent of RAM no longer left, QEMU's rate (megabits/s) in bytes/s, ETA from what is left", () => {
  const f = progressFigures(sample);
  assert.equal(f.percent, 25);
  assert.equal(Math.round(f.bytesPerSecond), 8 * MiB);
  assert.equal(f.etaS, 24);
  assert.equal(progressFigures({ ...sample, mbps: 0 }).etaS, null, "no ETA while nothing moves");
  // zero pages cost QEMU little on the wire: the pace at which `remaining` fell is the better guide
  assert.equal(progressFigures(sample, { ...sample, at: sample.at - 1_000, remainingBytes: 196 * MiB }).etaS, 48);
  assert.equal(progressFigures(sample, { ...sample, at: sample.at - 1_000, remainingBytes: 190 * MiB }).etaS, 24, "remaining grew (dirtied): QEMU's rate");
  assert.equal(progressFigures({ ...sample, totalBytes: 0 }).percent, 0);
});

test("plain lines: time from the migration's start, the phase, QEMU's figures", () => {
  assert.equal(plainEventLine({ type: "phase", migrationId: "m-1", from: "begin", to: "prepare", event: "ok", at: 1_000_012 }, 1_000_000), "+0.012 s  phase prepare (ok)");
  assert.equal(plainEventLine(sample, 1_000_000), "+0.500 s  perform active: 25%, 8.0 MiB/s, ETA 24 s; 64.0 MiB sent, 192.0 of 256.0 MiB left, dirty 120 pages/s, expected downtime 300 ms, iteration 2");
  assert.equal(plainEventLine({ type: "step", migrationId: "m-1", phase: "perform", step: "perform", attempt: 1, resent: false, at: 1 }, 0), null);
  assert.equal(plainEventLine({ type: "tuned", migrationId: "m-1", action: "set", maxBandwidthMiBps: 7, downtimeLimitMs: 450, at: 1_002_000 }, 1_000_000), "+2.000 s  set: max bandwidth 7 MiB/s, downtime limit 450 ms");
});

test("every phase with its start and duration, planned from the record's creation", () => {
  const text = renderPhases({ createdAt: 1_000, timings: { begin: { startedAt: 1_010, endedAt: 1_030, ms: 20 }, prepare: { startedAt: 1_030, endedAt: 1_500, ms: 470 }, done: { startedAt: 1_500 } } });
  assert.equal(text, ["PHASE    STARTED   TOOK", "planned  +0.000 s  10 ms", "begin    +0.010 s  20 ms", "prepare  +0.030 s  470 ms", "done     +0.500 s  -", ""].join("\n"));
});

test("the ETA's pace is taken over the last 3 s of samples", () => {
  const w = new PaceWindow(3_000);
  const at = (ms: number): ProgressStreamEvent => ({ ...sample, at: ms });
  assert.equal(w.push(at(0)), undefined);
  assert.equal(w.push(at(1_000))?.at, 0);
  assert.equal(w.push(at(2_900))?.at, 0);
  assert.equal(w.push(at(3_500))?.at, 1_000);
  assert.equal(w.push(at(10_000))?.at, 3_500);
});
