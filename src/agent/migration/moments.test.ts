// The switch-over's moments as the agent notes them, from scripted QMP
// events (a fake QEMU monitor: commands answered from a little state, events
// emitted with the timestamps a QEMU would give them) and the agent's clock:
// the source's switchover answer and the destination's RESUME steer.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { FakeClock, systemClock } from "../../core/clock.ts";
import type { NicSpec } from "../../model/vm.ts";
import { breakdownOf } from "../../migration/timeline.ts";
import type { DestinationMoments } from "../../migration/timeline.ts";
import { deviceIds } from "../../qemu/argv.ts";
import type { PrimaryMoments } from "../../migration/timeline.ts";
import { bringBackNics, steerOnResume } from "./nics.ts";
import { perform, switchover } from "./source.ts";
import { failover, rig, spec } from "./testing.ts";

const dir = await mkdtemp(join(tmpdir(), "ferry-moments-"));
after(() => rm(dir, { recursive: true, force: true }));

const signal = (): AbortSignal => AbortSignal.timeout(10_000);
/** The bridge port a steer (bridge fdb replace MAC dev PORT …) pinned the MAC to. */
const port = (pin: string): string => /\bdev (\S+)/.exec(pin)?.[1] ?? pin;

test("source: migrate sent, the primary's release, the standby steer and the STOP are in the switchover answer; a re-sent switchover answers the same", async () => {
  const { ctx, qmp, pins } = rig(dir, systemClock, spec([failover]));
  let unplugUs = 0;
  let stopUs = 0;
  let sentAtStop = 0;
  qmp.onMigrate = () => {
    // QEMU: the guest releases the primary a little after migrate; RAM streams
    unplugUs = Date.now() * 1000 + 4_250;
    qmp.emit("UNPLUG_PRIMARY", unplugUs, { "device-id": "net0-primary" });
    qmp.status = "active";
  };
  qmp.onQuery = () => {
    if (qmp.status !== "active") return;
    // RAM streamed: the guest stops at pre-switchover
    stopUs = unplugUs + 120_500;
    qmp.emit("STOP", stopUs);
    sentAtStop = qmp.sent.length;
    qmp.status = "pre-switchover";
  };
  const before = Date.now();
  await perform(ctx, "m-1", { instanceId: "i-src", uri: "tcp:127.0.0.1:4444", unplugMs: 5_000, convergeMs: 5_000, convergence: "off" }, signal());
  const answer = await switchover(ctx, "m-1", "i-src", 5_000, signal());
  const t = answer.timeline;
  assert.ok(t, "the switchover answer has the source's moments");
  assert.ok(t.migrateSentAtMs !== undefined && t.migrateSentAtMs >= before && t.migrateSentAtMs <= Date.now(), "migrate sent: the agent's clock, during perform");
  assert.equal(t.stoppedAtMs, stopUs / 1000, "STOP: QEMU's own timestamp, µs kept");
  assert.ok(t.continueSentAtMs !== undefined && t.continueSentAtMs >= before && t.continueSentAtMs <= Date.now(), "migrate-continue sent: the agent's clock, during switchover");
  assert.deepEqual(t.unplugs?.map((u) => [u.nic, u.unpluggedAtMs]), [["net0", unplugUs / 1000]]);
  const steered = t.unplugs[0]!.steeredAtMs;
  assert.ok(steered !== undefined && steered >= t.migrateSentAtMs, "the steer to the standby ended after migrate was sent");
  assert.equal(pins.length, 1, "one steer: the guest MAC pinned to the standby");
  assert.match(pins[0]!, /fs-net0/);
  // measuring sends QEMU nothing while the guest is paused: from STOP on, only the switch-over's own commands
  assert.deepEqual([...new Set(qmp.sent.slice(sentAtStop))].sort(), ["migrate-continue", "query-migrate"]);
  const b = breakdownOf({ source: t });
  assert.ok(b.unplugMs?.["net0"] !== undefined && Math.abs(b.unplugMs["net0"] - (t.unplugs[0]!.unpluggedAtMs - t.migrateSentAtMs)) < 0.001);
  // the coordinator re-sends a switchover whose answer it lost: the same moments
  assert.deepEqual((await switchover(ctx, "m-1", "i-src", 5_000, signal())).timeline, t);
});

test("source: a guest without failover NICs still has migrate sent and STOP, and no unplugs", async () => {
  const emulated: NicSpec = { name: "net0", mode: "emulated", mac: "52:54:00:00:00:02", guestPorts: { standby: 1 }, standby: { kind: "none" } };
  const { ctx, qmp } = rig(dir, systemClock, spec([emulated]));
  qmp.onMigrate = () => {
    qmp.emit("STOP", Date.now() * 1000 + 50_000);
    qmp.status = "pre-switchover";
  };
  await perform(ctx, "m-2", { instanceId: "i-src", uri: "tcp:127.0.0.1:4444", unplugMs: 5_000, convergeMs: 5_000, convergence: "off" }, signal());
  const t = (await switchover(ctx, "m-2", "i-src", 5_000, signal())).timeline;
  assert.ok(t?.migrateSentAtMs !== undefined && t.stoppedAtMs !== undefined && t.stoppedAtMs > t.migrateSentAtMs);
  assert.equal(t.unplugs, undefined);
});

test("destination: RESUME's timestamp and the end of the standby steer it started (the forwarding update)", async () => {
  const clock = new FakeClock();
  const { ctx, inst, qmp, pins } = rig(dir, clock, spec([failover]));
  // the steer (a bridge fdb replace) takes 3 ms on this host
  const run = ctx.run;
  ctx.run = (file, args, o) => {
    clock.advance(3);
    return run(file, args, o);
  };
  const noted: DestinationMoments[] = [];
  steerOnResume(ctx, inst, spec([failover]), (m) => noted.push(m));
  const resumeUs = clock.now() * 1000 + 250;
  qmp.emit("RESUME", resumeUs);
  qmp.emit("RESUME", resumeUs + 1_000_000); // a later RESUME (say, after a pause by an operator) is not the switch-over's
  await new Promise((r) => setImmediate(r));
  assert.equal(noted.length, 1);
  const m = noted[0]!;
  assert.equal(m.resumedAtMs, resumeUs / 1000);
  assert.equal(pins.length, 1);
  const b = breakdownOf({ destination: m });
  assert.ok(b.steerAfterResumeMs !== undefined && b.steerAfterResumeMs > 0 && b.steerAfterResumeMs <= 3, `the forwarding update ended within the steer's 3 ms after RESUME (got ${String(b.steerAfterResumeMs)})`);
});

/** A destination whose guest just resumed (RESUME emitted) without its failover primary yet; the watcher's deadline `primaryBackMs`. */
function resumedAway(primaryBackMs: number): ReturnType<typeof rig> & { ids: ReturnType<typeof deviceIds> } {
  const r = rig(dir, systemClock, spec([failover]));
  const ids = deviceIds("net0");
  r.qmp.devices = [ids.standby];
  steerOnResume(r.ctx, r.inst, spec([failover]), undefined, { primaryBackMs });
  r.qmp.emit("RESUME", Date.now() * 1000);
  return { ...r, ids };
}

test("destination: a failover primary QEMU plugs back after RESUME gets the NIC's frames at once, with no finish (the controller may be away); finish reports that moment and does not steer to the standby first", async () => {
  const { ctx, inst, qmp, pins, ids } = resumedAway(5_000);
  await systemClock.sleep(300);
  assert.deepEqual(pins.map(port), ["fs-net0"], "at RESUME the frames go to the standby; nothing more while the primary is away");
  qmp.devices = [ids.standby, ids.primary];
  const backAt = Date.now();
  const end = backAt + 2_000;
  while (pins.length < 2 && Date.now() < end) await systemClock.sleep(10);
  assert.deepEqual(pins.map(port), ["fs-net0", "fp-net0"], "the primary's tap gets the frames once QEMU has plugged it back");
  assert.ok(Date.now() - backAt < 500, `steered ${Date.now() - backAt} ms after the primary was back`);
  const primaries: PrimaryMoments[] = [];
  const nics = await bringBackNics(ctx, inst, spec([failover]), { net0: "0000:3b:10.0" }, { primaryBackMs: 1_000, replugFails: false, onPrimary: (m) => primaries.push(m) }, signal());
  assert.deepEqual(nics, [{ name: "net0", vf: "0000:3b:10.0", attached: true }]);
  assert.deepEqual(pins.slice(2).map(port), [], "finish steers nothing: not the standby in between, not the primary again");
  assert.equal(primaries.length, 1);
  assert.ok(primaries[0]!.backAtMs >= backAt && primaries[0]!.backAtMs < backAt + 500, "finish reports when the primary was back, not when finish came");
});

test("destination: finish called while the failover primary is still away awaits the RESUME watcher's finding (one poller, one steer)", async () => {
  const { ctx, inst, qmp, pins, ids } = resumedAway(5_000);
  const primaries: PrimaryMoments[] = [];
  const finishing = bringBackNics(ctx, inst, spec([failover]), { net0: "0000:3b:10.0" }, { primaryBackMs: 5_000, replugFails: false, onPrimary: (m) => primaries.push(m) }, signal());
  await systemClock.sleep(300);
  qmp.devices = [ids.standby, ids.primary];
  const backAt = Date.now();
  assert.deepEqual(await finishing, [{ name: "net0", vf: "0000:3b:10.0", attached: true }]);
  assert.deepEqual(pins.map(port), ["fs-net0", "fp-net0"], "the standby at RESUME, the primary once back: nothing twice");
  assert.equal(primaries.length, 1);
  assert.ok(primaries[0]!.steeredAtMs !== undefined && primaries[0]!.steeredAtMs - backAt < 500, "steered within the watcher's poll after the primary was back");
});

test("destination: a failover primary back only after the RESUME watcher gave up: finish keeps the standby meanwhile and waits for it within its own deadline", async () => {
  const { ctx, inst, qmp, pins, ids } = resumedAway(200);
  await systemClock.sleep(400);
  const primaries: PrimaryMoments[] = [];
  const finishing = bringBackNics(ctx, inst, spec([failover]), { net0: "0000:3b:10.0" }, { primaryBackMs: 3_000, replugFails: false, onPrimary: (m) => primaries.push(m) }, signal());
  await systemClock.sleep(300);
  qmp.devices = [ids.standby, ids.primary];
  assert.deepEqual(await finishing, [{ name: "net0", vf: "0000:3b:10.0", attached: true }]);
  assert.deepEqual(pins.map(port), ["fs-net0", "fs-net0", "fp-net0"], "the standby (at RESUME, and again by finish), then the primary once back");
  assert.equal(primaries.length, 1);
});

test("destination: nothing steered (unmanaged forwarding) — RESUME noted, no forwarding update moment", async () => {
  const { ctx, inst, qmp } = rig(dir, new FakeClock(), spec([failover]));
  ctx.network = () => ({ bridge: "br-physnet1", netns: null, forwarding: "unmanaged" });
  const noted: DestinationMoments[] = [];
  steerOnResume(ctx, inst, spec([failover]), (m) => noted.push(m));
  qmp.emit("RESUME", 1_700_000_000_000_123);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(noted, [{ resumedAtMs: 1_700_000_000_000.123 }]);
  assert.equal(breakdownOf({ destination: noted[0]! }).steerAfterResumeMs, undefined);
});

test("source: the downtime limit starts at 50 ms and doubles every second after the first pass over RAM, up to QEMU's 300 ms; the perform answer says what QEMU held; convergence off and a limit set live are left alone", async () => {
  const { ctx, qmp } = rig(dir, systemClock, spec([]));
  let firstPassEnd = 0;
  qmp.onMigrate = () => {
    qmp.status = "active";
    qmp.active = { ram: { "dirty-sync-count": 1, total: 100, remaining: 50, transferred: 50 } };
    firstPassEnd = Date.now() + 200;
  };
  qmp.onQuery = () => {
    if (qmp.status !== "active") return;
    // the first pass ends after 200 ms; the guest converges only once QEMU may pause it 200 ms
    if (Date.now() >= firstPassEnd) qmp.active = { ram: { "dirty-sync-count": 2, total: 100, remaining: 10, transferred: 90 } };
    if (qmp.limits.at(-1)! >= 200) qmp.status = "pre-switchover";
  };
  const r = await perform(ctx, "m-steps", { instanceId: "i-src", uri: "tcp:127.0.0.1:4444", unplugMs: 5_000, convergeMs: 10_000 }, signal());
  assert.deepEqual(qmp.limits, [50, 100, 200], "set with the migration's parameters, then raised a step a second");
  assert.equal(r.convergence?.downtimeLimitMs, 200);

  /** A source past its first pass that converges after 16 polls (~1.6 s: past the first step); `onPoll` sees each. */
  const pastFirstPass = (onPoll: (n: number, r: ReturnType<typeof rig>) => void = () => undefined): ReturnType<typeof rig> => {
    const r = rig(dir, systemClock, spec([]));
    r.qmp.onMigrate = () => {
      r.qmp.status = "active";
      r.qmp.active = { ram: { "dirty-sync-count": 2 } };
    };
    let polls = 0;
    r.qmp.onQuery = () => {
      if (r.qmp.status !== "active") return;
      onPoll(++polls, r);
      if (polls > 15) r.qmp.status = "pre-switchover";
    };
    return r;
  };
  const off = pastFirstPass();
  const o = await perform(off.ctx, "m-off", { instanceId: "i-src", uri: "tcp:127.0.0.1:4444", unplugMs: 5_000, convergeMs: 10_000, convergence: "off" }, signal());
  assert.deepEqual(off.qmp.limits, [300], "QEMU's default, set (an earlier migration's limit would linger), never stepped");
  assert.equal(o.convergence?.downtimeLimitMs, 300);

  // an operator sets the limits (the agent's parameters route marks the instance so) before the first step
  const live = pastFirstPass((n, r) => {
    if (n === 2) (r.inst as { limitsSetLive: boolean }).limitsSetLive = true;
  });
  const l = await perform(live.ctx, "m-live", { instanceId: "i-src", uri: "tcp:127.0.0.1:4444", unplugMs: 5_000, convergeMs: 10_000 }, signal());
  assert.deepEqual(live.qmp.limits, [50], "no step over the operator's limits");
  assert.equal(l.convergence?.downtimeLimitMs, undefined, "the perform answer does not claim a limit it did not set");
});
