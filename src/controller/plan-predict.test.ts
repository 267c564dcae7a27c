import assert from "node:assert/strict";
import { test } from "node:test";
import { newRecord } from "../migration/types.ts";
import type { MigrationRecord } from "../migration/types.ts";
import { plan as testPlan } from "../migration/testdata/scripted-port.ts";
import { predictFor, throughputSamples } from "./plan-predict.ts";

const MiB = 2 ** 20;
const measured = { measured: true, MiBps: 10, detail: "QEMU calc-dirty-rate (page-sampling) over 1 s on a" };
const base = { source: "a", host: "b", ramBytes: 1000 * MiB, dirty: measured, samples: [], defaultBandwidthMiBps: 100 };

test("no migration between the hosts yet: the configured default bandwidth, and it says so", () => {
  const { prediction: p, warning } = predictFor(base);
  assert.equal(p.bandwidth.source, "default");
  assert.match(p.bandwidth.detail, /no completed migration between a and b.*plan\.bandwidthMiBps/);
  assert.equal(p.converges, true);
  assert.equal(p.durationMs, 11_100);
  assert.equal(p.downtimeMs, 100);
  assert.equal(warning, undefined);
});

test("completed migrations between the hosts: their median throughput", () => {
  const { prediction: p } = predictFor({ ...base, samples: [{ bytes: 400 * MiB, ms: 2000 }, { bytes: 100 * MiB, ms: 1000 }, { bytes: 300 * MiB, ms: 1000 }] });
  assert.equal(p.bandwidth.source, "measured");
  assert.equal(p.bandwidth.bytesPerSec, 200 * MiB);
  assert.match(p.bandwidth.detail, /median pace of the last 3 completed migration\(s\) between a and b/);
});

test("a cap below the link wins, and a guest dirtying faster than it will not converge: a warning with what to do", () => {
  const { prediction: p, warning } = predictFor({ ...base, dirty: { ...measured, MiBps: 64 }, capBytesPerSec: 32 * MiB });
  assert.equal(p.bandwidth.source, "cap");
  assert.equal(p.converges, false);
  assert.equal(p.durationMs, undefined);
  assert.ok((p.forcedDowntimeMs ?? 0) > 0);
  assert.match(warning ?? "", /will not converge at 32 MiB\/s \(cap\).*max-bandwidth.*auto-converge.*force-complete/);
});

test("a measured pace is not capped by the instance's standing max-bandwidth (it ran under it), a migration's own cap is; past downtimes are the floor", () => {
  const samples = [{ bytes: 512 * MiB, ms: 1000, downtimeMs: 80 }, { bytes: 512 * MiB, ms: 1000, downtimeMs: 30 }, { bytes: 512 * MiB, ms: 1000, downtimeMs: 60 }];
  const { prediction: p } = predictFor({ ...base, dirty: { ...measured, MiBps: 0 }, samples, capBytesPerSec: 128 * MiB });
  assert.equal(p.bandwidth.source, "measured");
  assert.equal(p.downtimeFloorMs, 60);
  assert.equal(p.downtimeMs, 60, "an idle guest's last pass is empty: the switch-over's measured cost remains");
  assert.match(p.note, /median downtime of the last migrations between these hosts, 60 ms/);
  const { prediction: capped } = predictFor({ ...base, samples, capBytesPerSec: 128 * MiB, capIsExplicit: true });
  assert.equal(capped.bandwidth.source, "cap");
  assert.equal(capped.bandwidth.bytesPerSec, 128 * MiB);
});

test("an unmeasured dirty rate is taken as 0 and the note says the prediction is a lower bound", () => {
  const { prediction: p } = predictFor({ ...base, dirty: { measured: false, MiBps: 0, detail: "vm is not running" } });
  assert.match(p.note, /dirty rate not measured \(vm is not running\): taken as 0, so a lower bound/);
  assert.equal(p.downtimeMs, 0);
});

test("throughput samples: completed migrations between the two hosts either way, newest first", () => {
  const rec = (id: string, from: string, to: string, createdAt: number, extra: Partial<MigrationRecord>): MigrationRecord => {
    const r = newRecord(testPlan(undefined, { id, source: { host: from, instanceId: "i-00000001" }, destination: { host: to } }), createdAt);
    return { ...r, ...extra };
  };
  const done = { switchover: { totalMs: 1000, downtimeMs: 50 }, dataMovedBytes: 10 * MiB };
  const rs = [
    rec("m-1", "a", "b", 1, done),
    rec("m-2", "b", "a", 3, { ...done, dataMovedBytes: 300 * MiB }),
    rec("m-3", "a", "c", 2, done),
    rec("m-4", "a", "b", 4, { switchover: null }),
  ];
  const got = throughputSamples(rs, "a", "b");
  assert.deepEqual(got.map((s) => s.id), ["m-2", "m-1"]);
  // a mostly empty guest's RAM counts whole (the model sends it whole); more data moved than RAM counts as moved
  const ram = rs[0]!.plan.vm.memoryMiB * MiB;
  assert.deepEqual(got.map((s) => s.bytes), [Math.max(300 * MiB, ram), Math.max(10 * MiB, ram)]);
});
