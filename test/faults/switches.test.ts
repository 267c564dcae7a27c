// Issue 5: every lab fault switch (src/agent/faults.ts), armed on the
// destination and fired by the step that checks it, produces the outcome of
// DESIGN's policy table, end to end through the controller, with the real
// test guest (a mandatory failover NIC on a stand-in VF):
//   replug-fail               re-plug fails after the switch-over: mandatory → migrated back, recovered
//   precheck-fail             destination check fails at pre-switchover → cancel, rolled-back, source intact
//   port-profile-fail         a feature init fails in Prepare → rolled-back, source intact, nothing leased
//   agent-crash-in-prepare    the destination agent dies in Prepare (restarted) → rolled-back, its QEMU and lease cleaned up
//   qemu-crash-on-destination the destination QEMU dies after the switch-over → failed, the VM is reported down
//                             (not resumed on the source: the guest ran on the destination; see table.ts guest-lost)
// and the invariants hold after each (FaultCluster.check), the heartbeat
// going on wherever the guest survived. Last, a guest whose kernel panics on
// the destination while finish is held: the outcome stands (the migration
// moved it), and the record warns that it panicked (pvpanic → QMP).
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { systemClock } from "../../src/core/clock.ts";
import { FaultCluster, heartbeatOf, waitFor } from "./cluster.ts";
import type { TestVm } from "./points.ts";
import { createVm, removeVm } from "./points.ts";
import { guestPanic } from "../../src/lab/memcheck.ts";

const CASES = [
  { fault: "replug-fail", outcome: "recovered", code: "FERRY_ERR_REPLUG", runsOn: "source" },
  // right after a migrate-back: the source instance arrived by migration (QEMU's query-migrate says "completed" for it)
  { fault: "port-profile-fail", outcome: "rolled-back", code: "FERRY_ERR_FEATURE", runsOn: "source" },
  { fault: "precheck-fail", outcome: "rolled-back", code: "FERRY_ERR_PRECHECK", runsOn: "source" },
  { fault: "agent-crash-in-prepare", outcome: "rolled-back", code: null, runsOn: "source" },
  { fault: "qemu-crash-on-destination", outcome: "failed", code: "FERRY_ERR_GUEST_LOST", runsOn: null },
] as const;

describe("lab fault switches → the policy table's outcomes, through the controller", { timeout: 400_000 }, () => {
  let c: FaultCluster;
  let vm: TestVm | undefined;

  before(async () => {
    c = await FaultCluster.start({ hosts: [{ name: "host-a", vfs: 2 }, { name: "host-b", vfs: 2 }] });
  });
  after(async () => {
    process.stdout.write(`fault switches: guest memory checked ${c?.memchecks.compared ?? 0} times, ${c?.memchecks.mismatched ?? 0} different from the boot checksum\n`);
    await c?.close();
  });

  for (const k of CASES) {
    it(`${k.fault}: ${k.outcome}`, async () => {
      vm ??= await createVm(c, "guest", "host-a", "sw");
      const before = await c.api.vm(vm.name);
      const src = before.host;
      const dst = src === "host-a" ? "host-b" : "host-a";
      const hb = await heartbeatOf(c.hostPath(src, (await c.agent(src).client.instance(before.instanceId!)).serialLog));
      await c.arm(dst, k.fault, { once: true });
      const r = await c.api.migrate({ vm: vm.name, to: dst });
      assert.equal(r.kind, "started");
      const id = r.kind === "started" ? r.migration.id : "";
      if (k.fault === "agent-crash-in-prepare") {
        const child = c.agent(dst).proc.child;
        await waitFor(`${dst} agent crashed`, () => Promise.resolve(child.exitCode !== null || child.signalCode !== null ? true : undefined), 60_000);
        await c.restartAgent(dst);
      }
      const rec = await c.waitDone(id);
      assert.equal(rec.outcome, k.outcome, `${rec.code ?? ""} ${rec.reason ?? ""}`);
      if (k.code !== null) assert.equal(rec.code, k.code, rec.reason ?? "");
      const down = k.runsOn === null;
      if (!down) assert.equal(rec.runsOn?.host, src, "the guest runs on the source again");
      const v = await c.checkSettled(vm, id, down ? { down } : { heartbeatAfter: hb, ...(vm.bootSum === undefined ? {} : { bootSum: vm.bootSum }) });
      assert.deepEqual(v, [], `${k.fault}: ${rec.outcome ?? ""} (${rec.reason ?? ""})`);
      assert.deepEqual((await c.api.vm(vm.name)).state, down ? "unknown" : "running");
      if (down) {
        await removeVm(c, vm);
        vm = undefined;
      }
    });
  }

  it("the guest's kernel panics on the destination before finish ends: the migration succeeded, and its record says the guest panicked there (pvpanic)", async () => {
    vm ??= await createVm(c, "guest", "host-a", "sw");
    const src = (await c.api.vm(vm.name)).host;
    const dst = src === "host-a" ? "host-b" : "host-a";
    await c.arm(dst, "hold:finish", { once: true, holdMs: 60_000 });
    const r = await c.api.migrate({ vm: vm.name, to: dst });
    assert.equal(r.kind, "started");
    const id = r.kind === "started" ? r.migration.id : "";
    await c.waitHolding(dst, "finish", id);
    const arrived = (await c.instancesOf(vm.uuid)).find((i) => i.host === dst && i.running);
    assert.ok(arrived, `the guest runs on ${dst} while finish holds`);
    assert.equal(arrived.guestPanickedAt, undefined, "no panic before the guest is told to");
    await guestPanic({ serialLog: c.hostPath(dst, arrived.serialLog) }, { timeoutMs: 15_000 });
    const panickedAt = await waitFor(`${dst}'s agent saw GUEST_PANICKED`, async () => (await c.agent(dst).client.instance(arrived.instanceId)).guestPanickedAt, 15_000, 50);
    await c.clearFaults(dst);
    const rec = await c.waitDone(id);
    assert.equal(rec.outcome, "succeeded", `${rec.code ?? ""} ${rec.reason ?? ""}`);
    assert.equal(rec.runsOn?.host, dst);
    const said = rec.warnings.find((w) => w.includes(`the guest's kernel panicked on ${dst}`));
    assert.ok(said, `a warning says the guest panicked on ${dst}: ${JSON.stringify(rec.warnings)}`);
    // the destination noted the RESUME (steerOnResume) before the panic: the warning says how long after it
    const resumedAt = rec.switchoverTimeline?.destination?.resumedAtMs;
    assert.ok(resumedAt !== undefined, `the record has the destination's RESUME moment: ${JSON.stringify(rec.switchoverTimeline)}`);
    assert.ok(said.includes(` ${Math.max(0, Math.round(panickedAt - resumedAt))} ms after it resumed there`), said);
    // and the VM itself says so, from the controller's VM check (every 3 s), past the migration's record
    const view = await waitFor("the VM record to say its guest panicked", async () => (await c.api.vm(vm!.name)).guestPanicked, 15_000, 250);
    assert.deepEqual(view, { instanceId: arrived.instanceId, at: panickedAt });
    await removeVm(c, vm);
    vm = undefined;
  });

  it("the source agent killed while RAM streams and restarted, the controller away: once QEMU reaches pre-switchover the restarted agent gives up by itself and resumes the guest", async () => {
    vm ??= await createVm(c, "guest", "host-a", "sw");
    const src = (await c.api.vm(vm.name)).host;
    const dst = src === "host-a" ? "host-b" : "host-a";
    // a slow stream (12 MiB/s: seconds for the guest's non-zero RAM): still streaming when the source agent dies
    const r = await c.api.migrate({ vm: vm.name, to: dst, maxBandwidthMiBps: 12 });
    assert.equal(r.kind, "started");
    const id = r.kind === "started" ? r.migration.id : "";
    await waitFor("the migration streaming", async () => ((await c.api.migration(id)).phase === "perform" ? true : undefined), 60_000, 100);
    await systemClock.sleep(500);
    const instanceId = (await c.instancesOf(vm.uuid)).find((i) => i.host === src)!.instanceId;
    await c.killController();
    await c.killAgent(src);
    await c.restartAgent(src);
    try {
      const agent = c.agent(src).client;
      // nobody else can end the pause now: the controller stays away until the guest runs again
      await waitFor("the source guest paused at pre-switchover", async () => ((await agent.instance(instanceId).catch(() => undefined))?.running === false ? true : undefined), 120_000, 50);
      const pausedAt = systemClock.monotonic();
      await waitFor("the source guest running again, the controller still away", async () => ((await agent.instance(instanceId).catch(() => undefined))?.running === true ? true : undefined), 15_000, 50);
      const pausedMs = systemClock.monotonic() - pausedAt;
      // perform's wait: the destination check (2 s) + grace (0.5 s), and slack for a loaded machine
      assert.ok(pausedMs < 2_500 + 2_000, `the guest stood paused ${Math.round(pausedMs)} ms`);
      const log = await readFile(c.agent(src).log, "utf8");
      assert.match(log, /source migrations in flight across the restart: watching them/, "the restarted agent found the migration still streaming");
    } finally {
      await c.startController();
    }
    const rec = await c.waitDone(id);
    assert.equal(rec.outcome, "rolled-back", `${rec.code ?? ""} ${rec.reason ?? ""}`);
    assert.equal(rec.code, "FERRY_ERR_SOURCE_GAVE_UP", rec.reason ?? "");
    assert.equal(rec.runsOn?.host, src);
    assert.deepEqual(await c.checkSettled(vm, id), []);
  });
});
