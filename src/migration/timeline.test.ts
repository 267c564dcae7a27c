// The switch-over timeline on the controller's side: the breakdown derived
// from the agents' moments, answers of agents older than the timeline, and
// the operator's line in `ferry migration show`.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Check } from "typebox/value";
import { migrationSummary, renderSummary } from "../cli/render/migration.ts";
import { FinishReply, SwitchoverReply } from "../wire/steps.ts";
import type { RunnerDeps } from "./runner-deps.ts";
import { outcomeOf } from "./step-answers.ts";
import { nic, plan } from "./testdata/scripted-port.ts";
import { breakdownOf, breakdownText, withMoments } from "./timeline.ts";
import type { DestinationMoments, SourceMoments } from "./timeline.ts";
import { newRecord } from "./types.ts";

const T0 = 1_764_931_200_000.125;
/** A switch-over as the agents would report it: migrate, each NIC's unplug and steer, STOP, RESUME, the steer at RESUME. */
const source: SourceMoments = {
  migrateSentAtMs: T0,
  unplugs: [{ nic: "net0", unpluggedAtMs: T0 + 310.5, steeredAtMs: T0 + 312.75 }, { nic: "net1", unpluggedAtMs: T0 + 290.25 }],
  stoppedAtMs: T0 + 1_400.001,
  continueSentAtMs: T0 + 1_431.5,
};
const destination: DestinationMoments = { resumedAtMs: T0 + 1_452.2, steeredAtMs: T0 + 1_455.9, primaries: [{ nic: "net0", backAtMs: T0 + 1_500, steeredAtMs: T0 + 1_602.5 }] };
const close = (a: number | undefined, b: number): boolean => a !== undefined && Math.abs(a - b) < 0.0015;

describe("breakdown", () => {
  test("each figure is the difference of the moments it names (3 decimals)", () => {
    const b = breakdownOf({ source, destination });
    assert.ok(close(b.pausedMs, destination.resumedAtMs! - source.stoppedAtMs!), `paused ${String(b.pausedMs)}`);
    for (const u of source.unplugs!) assert.ok(close(b.unplugMs?.[u.nic], u.unpluggedAtMs - source.migrateSentAtMs!), u.nic);
    assert.ok(close(b.unplugSteerMs?.["net0"], 312.75 - 310.5));
    assert.equal(b.unplugSteerMs?.["net1"], undefined, "net1 was not steered (no steeredAtMs): no figure");
    assert.ok(close(b.steerAfterResumeMs, destination.steeredAtMs! - destination.resumedAtMs!));
    assert.ok(close(b.primarySteerAfterResumeMs?.["net0"], 1_602.5 - 1_452.2), "back on the primary: its steer after RESUME");
    assert.ok(close(b.decisionMs, source.continueSentAtMs! - source.stoppedAtMs!), "deciding at pre-switchover: STOP → migrate-continue");
    assert.ok(close(b.deviceStateMs, destination.resumedAtMs! - source.continueSentAtMs!), "the rest of the pause: migrate-continue → RESUME");
    assert.ok(close((b.decisionMs ?? 0) + (b.deviceStateMs ?? 0), b.pausedMs!), "the two parts make the pause");
    for (const x of [b.pausedMs, b.steerAfterResumeMs, ...Object.values(b.unplugMs ?? {})]) assert.equal(x, Math.round(x! * 1000) / 1000);
  });

  test("a figure whose moments are missing is absent, never NaN", () => {
    assert.deepEqual(breakdownOf({}), {});
    const srcOnly = breakdownOf({ source });
    assert.equal(srcOnly.pausedMs, undefined);
    assert.equal(srcOnly.steerAfterResumeMs, undefined);
    assert.ok(srcOnly.unplugMs !== undefined);
    const noSent = breakdownOf({ source: { unplugs: source.unplugs! }, destination: { resumedAtMs: T0 } });
    assert.equal(noSent.unplugMs, undefined);
    assert.equal(noSent.pausedMs, undefined);
    assert.equal(noSent.steerAfterResumeMs, undefined);
  });

  test("the two sides merge in either order into the same timeline; a side answered again replaces its moments", () => {
    const a = withMoments(withMoments(undefined, { source }), { destination });
    const b = withMoments(withMoments(undefined, { destination }), { source });
    assert.deepEqual(a, b);
    assert.ok(a.breakdown?.pausedMs !== undefined);
    assert.deepEqual(withMoments(a, { destination }), a);
    assert.equal(withMoments(undefined, {}).breakdown, undefined);
  });
});

describe("answers", () => {
  const p = plan([nic("net0")]);
  const deps = {} as RunnerDeps;

  test("agents older than the timeline: their switchover and finish replies still validate, and the record gets no timeline", async () => {
    assert.ok(Check(SwitchoverReply, { totalMs: 900, downtimeMs: 12, transferredBytes: 1 }));
    assert.ok(Check(FinishReply, { instanceId: "i-1", nics: [{ name: "net0", attached: true, vf: "0000:5e:10.0" }] }));
    const rec = newRecord(p, 0);
    const sw = await outcomeOf(rec, "switchover", { totalMs: 900, downtimeMs: 12 }, deps);
    assert.deepEqual(sw.patch, { switchover: { totalMs: 900, downtimeMs: 12 } });
    const fin = await outcomeOf(rec, "finish", { nics: [{ name: "net0", attached: true }] }, deps);
    assert.equal(fin.patch?.switchoverTimeline, undefined);
  });

  test("new agents: the replies with moments validate; switchover then finish give the record both sides and the breakdown", async () => {
    assert.ok(Check(SwitchoverReply, { totalMs: 900, downtimeMs: 12, transferredBytes: 1, timeline: source }));
    assert.ok(Check(FinishReply, { instanceId: "i-1", nics: [], timeline: destination }));
    const rec = newRecord(p, 0);
    const sw = await outcomeOf(rec, "switchover", { totalMs: 900, downtimeMs: 12, timeline: source }, deps);
    const after = { ...rec, ...sw.patch };
    const fin = await outcomeOf(after, "finish", { nics: [{ name: "net0", attached: true }], timeline: destination }, deps);
    const t = fin.patch?.switchoverTimeline;
    assert.deepEqual(t?.source, source);
    assert.deepEqual(t?.destination, destination);
    assert.deepEqual(t?.breakdown, breakdownOf({ source, destination }));
  });

  test("a finish answer with guestPanickedAt: the record keeps its warnings and adds one that names the host and the time after RESUME", async () => {
    assert.ok(Check(FinishReply, { instanceId: "i-1", nics: [], timeline: destination, guestPanickedAt: Math.round(T0 + 1_452.2 + 840) }));
    const rec = { ...newRecord(p, 0), warnings: ["an earlier warning"] };
    const fin = await outcomeOf(rec, "finish", { nics: [{ name: "net0", attached: true }], timeline: destination, guestPanickedAt: Math.round(T0 + 1_452.2 + 840) }, deps);
    assert.equal(fin.event, "ok", "the outcome stands: the migration moved the guest");
    const w: string[] = fin.patch?.warnings ?? [];
    assert.equal(w[0], "an earlier warning");
    assert.equal(w.length, 2);
    assert.match(w[1] ?? "", new RegExp(`kernel panicked on ${p.destination.host} 840 ms after it resumed there`));
    const quiet = await outcomeOf(rec, "finish", { nics: [{ name: "net0", attached: true }], timeline: destination }, deps);
    assert.equal(quiet.patch?.warnings, undefined, "no panic: no warning");
  });

  test("a malformed timeline (a journal entry, an agent's bug) is left out; the step's answer still counts", async () => {
    const rec = newRecord(p, 0);
    const sw = await outcomeOf(rec, "switchover", { totalMs: 900, downtimeMs: 12, timeline: { stoppedAtMs: "soon" } }, deps);
    assert.equal(sw.event, "ok");
    assert.deepEqual(sw.patch, { switchover: { totalMs: 900, downtimeMs: 12 } });
  });
});

describe("ferry migration show", () => {
  test("one switch-over line with the figures there are; none without a timeline", () => {
    const rec = { ...newRecord(plan([nic("net0"), nic("net1")]), 0), switchover: { totalMs: 900, downtimeMs: 12 }, switchoverTimeline: withMoments(undefined, { source, destination }) };
    const lines = renderSummary(migrationSummary(rec)).split("\n").filter((l) => l.includes("switch-over:"));
    assert.equal(lines.length, 1);
    const line = lines[0]!;
    const b = rec.switchoverTimeline.breakdown!;
    for (const ms of [b.pausedMs!, b.unplugMs!["net0"]!, b.unplugMs!["net1"]!, b.unplugSteerMs!["net0"]!, b.steerAfterResumeMs!]) assert.ok(line.includes(`${ms.toFixed(1)} ms`), `${ms} in: ${line}`);
    assert.ok(line.includes("net0") && line.includes("net1"));
    assert.equal(migrationSummary(rec).switchover, b, "--json: the breakdown under switchover");
    const old = { ...newRecord(plan([nic("net0")]), 0), switchover: { totalMs: 900, downtimeMs: 12 } };
    assert.ok(!renderSummary(migrationSummary(old)).includes("switch-over:"));
    assert.equal(breakdownText({}), null);
  });
});
