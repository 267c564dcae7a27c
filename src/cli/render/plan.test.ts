import assert from "node:assert/strict";
import { test } from "node:test";
import type { PlanReply } from "../../wire/controller-api.ts";
import { renderPlan } from "./migration.ts";

const MiB = 2 ** 20;
const plan: PlanReply = {
  vm: "web", source: "host1",
  destinations: [{ host: "host2", rank: 1, score: 1, complete: true, nics: [], explanation: "" }],
  rejections: [], message: null,
  checks: [
    { host: "host2", check: "QEMU_VERSION", status: "ok", message: "QEMU 7.2.22 → 7.2.22 (same)" },
    { host: "host2", check: "MEMORY", status: "unchecked", message: "not checked: host2's agent reported no free memory" },
  ],
  blockers: [], warnings: [{ host: "host3", message: "a migration to host3 will not converge" }],
  dirtyRate: { measured: true, MiBps: 12, detail: "QEMU calc-dirty-rate (page-sampling) over 1 s on host1" },
  predictions: [
    { host: "host2", bandwidth: { bytesPerSec: 200 * MiB, source: "measured", detail: "200 MiB/s: median throughput of the last 3 completed migration(s)" }, downtimeLimitMs: 300, ramBytes: 1024 * MiB, converges: true, durationMs: 5300, downtimeMs: 12, passes: 3, note: "precopy model: …" },
    { host: "host3", bandwidth: { bytesPerSec: 8 * MiB, source: "cap", detail: "8 MiB/s: the cap" }, downtimeLimitMs: 300, ramBytes: 1024 * MiB, converges: false, passes: 2, reason: "dirtied faster", forcedDowntimeMs: 128_000, note: "precopy model: …" },
  ],
};

test("the plan's text: every check with its status, the dirty rate, and per destination the predicted time and downtime with the bandwidth's source", () => {
  const text = renderPlan(plan);
  assert.match(text, /CHECKS\n.*\nhost2 +QEMU_VERSION +ok +QEMU 7\.2\.22 → 7\.2\.22 \(same\)/);
  assert.match(text, /host2 +MEMORY +unchecked +not checked/);
  assert.match(text, /PREDICTION \(dirty rate 12 MiB\/s: QEMU calc-dirty-rate \(page-sampling\) over 1 s on host1\)/);
  assert.match(text, /host2 +200 MiB\/s \(measured\) +300 ms +5\.3 s +12 ms +3/);
  assert.match(text, /host3 +8 MiB\/s \(cap\) +300 ms +does not converge +~128 s if forced +2/);
  assert.match(text, /host2: bandwidth 200 MiB\/s: median throughput/);
  assert.match(text, /WARNINGS\n.*\nhost3 +a migration to host3 will not converge/);
});

test("a plan without predictions (an older controller) renders as before", () => {
  const { predictions: _p, dirtyRate: _d, checks: _c, ...old } = plan;
  const text = renderPlan(old);
  assert.doesNotMatch(text, /PREDICTION|CHECKS/);
  assert.match(text, /DESTINATIONS/);
});
