// The agent's migration steps on two simulated hosts (each with its own sysfs
// fixture of stand-in VFs, state file and runtime dir), real QEMU, real guest.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { systemClock } from "../../src/core/clock.ts";
import { isFerryError } from "../../src/core/errors.ts";
import { run } from "../../src/core/run.ts";
import type { StepContext } from "../../src/agent/migration/steps.ts";
import * as steps from "../../src/agent/migration/steps.ts";
import { parseHostConfig, usableVfs } from "../../src/host/config.ts";
import { writeSysfsFixture } from "../../src/host/fixture.ts";
import { LeaseStore, RecordStore, openStateDb } from "../../src/host/leases.ts";
import { readInventory } from "../../src/host/sysfs.ts";
import { realVfSeam } from "../../src/host/vf-setup.ts";
import { silentLogger } from "../../src/core/log.ts";
import { vfLife } from "../../src/agent/vf-life.ts";
import type { NicSpec, VmSpec } from "../../src/model/vm.ts";
import { detectAccel } from "../../src/qemu/accel.ts";
import { deviceIds } from "../../src/qemu/argv.ts";
import { lastHeartbeat, readConsole, waitForConsole, waitForHeartbeat } from "../../src/qemu/console.ts";
import type { Instance } from "../../src/qemu/instance.ts";
import { startInstance } from "../../src/qemu/instance.ts";
import { listDeviceIds, queryStatus } from "../../src/qmp/commands.ts";
import { bootMemsum } from "../../src/lab/memcheck.ts";
import { assertMemoryKept, guestSpec, mac, reportMemoryChecks } from "./helpers.ts";

interface SimHost {
  ctx: StepContext;
  instances: Map<string, Instance>;
  close(): Promise<void>;
}

async function simHost(name: string, base: string): Promise<SimHost> {
  const root = join(base, name);
  await writeSysfsFixture(join(root, "sys"));
  const cfg = parseHostConfig(
    `name: ${name}\nsysfsRoot: ${root}/sys\nstateDir: ${root}/state\nrunDir: ${root}/run\nnetworks:\n  physnet1: {}\n  physnet2: {}\nuplinks:\n  - pf: 0000:3b:00.0\n    network: physnet1\n    standIns: { vfs: all, model: e1000e }\n  - pf: 0000:5e:00.0\n    network: physnet2\n    standIns: { vfs: all, model: e1000e }\n`,
  );
  const inv = await readInventory({ root: cfg.sysfsRoot });
  const vfs = usableVfs(cfg, inv);
  const db = openStateDb(join(cfg.stateDir, "state.db"));
  const instances = new Map<string, Instance>();
  const { accel } = await detectAccel();
  const leases = new LeaseStore(db, systemClock);
  const records = new RecordStore(db, systemClock);
  const ctx: StepContext = {
    host: name, runDir: cfg.runDir, memoryDir: cfg.memoryDir, accel, clock: systemClock, run, leases, records,
    // stand-in VFs only: the VF lifecycle does nothing to them
    vfLife: vfLife({ config: cfg, seam: realVfSeam(run), records, leases, vfs: new Map(vfs.map((x) => [x.bdf, x])), log: silentLogger }),
    vfs: () => vfs,
    network: () => ({ bridge: null, netns: null }),
    instances: { get: (id) => instances.get(id), add: (i) => instances.set(i.id, i), remove: (id) => instances.delete(id), all: () => [...instances.values()] },
  };
  return {
    ctx, instances,
    async close() {
      for (const i of instances.values()) {
        i.kill();
        await i.waitExit(5_000);
        i.qmp.close();
      }
      db.close();
    },
  };
}

/** Start a VM on the simulated source host the way the agent does: lease its VFs to the instance first. */
async function startOnSource(h: SimHost, spec: VmSpec): Promise<Instance> {
  const inst = await startInstance({ runDir: h.ctx.runDir, spec, accel: h.ctx.accel });
  h.instances.set(inst.id, inst);
  for (const n of spec.nics) if (n.primary?.kind === "stand-in") h.ctx.leases.lease(n.primary.vf, { kind: "instance", vmUuid: spec.uuid, instanceId: inst.id });
  return inst;
}

function nics(): NicSpec[] {
  return [
    { name: "net0", mode: "failover", mac: mac(0x21), standby: { kind: "none" }, primary: { kind: "stand-in", model: "e1000e", backend: { kind: "none" }, vf: "0000:3b:10.0" }, guestPorts: { standby: 1, primary: 2 } },
    { name: "net1", mode: "ephemeral", mac: mac(0x22), primary: { kind: "stand-in", model: "e1000e", backend: { kind: "none" }, vf: "0000:5e:10.0" }, guestPorts: { primary: 3 } },
    { name: "net2", mode: "emulated", mac: mac(0x23), standby: { kind: "none" }, guestPorts: { standby: 4 } },
  ];
}

const D = { unplugMs: 10_000, convergeMs: 120_000, primaryBackMs: 20_000 };
const sig = (): AbortSignal => AbortSignal.timeout(180_000);

describe("agent migration steps between two simulated hosts", { timeout: 300_000 }, () => {
  let base: string;
  let a: SimHost;
  let b: SimHost;
  before(async () => {
    base = await mkdtemp(join(tmpdir(), "ferry-steps-"));
    a = await simHost("hosta", base);
    b = await simHost("hostb", base);
  });
  after(async () => {
    await a.close();
    await b.close();
    await rm(base, { recursive: true, force: true });
    reportMemoryChecks("migration-steps.test.ts");
  });

  it("failover + ephemeral + emulated: the guest moves, its NICs land on the destination's VFs, leases follow", async () => {
    const spec = await guestSpec("steps-ok", nics());
    const src = await startOnSource(a, spec);
    await waitForConsole(src.paths.serialLog, /ferry-ready/, { timeoutMs: 60_000 });
    const boot = await bootMemsum(src.paths.serialLog, { timeoutMs: 10_000 });
    const id = "m-ok";
    const { spec: srcSpec } = await steps.begin(a.ctx, id, src.id, sig());
    const plan = [{ name: "net0", vf: "0000:3b:10.3" }, { name: "net1", vf: "0000:5e:10.5" }, { name: "net2", vf: null }];
    const prep = await steps.prepare(b.ctx, id, { spec: srcSpec, nics: plan, leaseTtlMs: 600_000 }, sig());
    assert.deepEqual(await steps.prepare(b.ctx, id, { spec: srcSpec, nics: plan, leaseTtlMs: 600_000 }, sig()), prep, "prepare is idempotent");
    assert.equal(b.ctx.leases.get("0000:3b:10.3")?.holder.kind, "migration");
    const perf = await steps.perform(a.ctx, id, { instanceId: src.id, uri: prep.uri, ...D }, sig());
    assert.equal(perf.status, "pre-switchover");
    assert.equal((await steps.perform(a.ctx, id, { instanceId: src.id, uri: prep.uri, ...D }, sig())).status, "pre-switchover", "perform is idempotent");
    assert.deepEqual(await steps.precheck(b.ctx, id, 2_000), { ok: true });
    const hbBefore = lastHeartbeat(await readConsole(src.paths.serialLog)) ?? 0;
    const sw = await steps.switchover(a.ctx, id, src.id, 60_000, sig());
    assert.ok(sw.totalMs > 0 && sw.downtimeMs >= 0);
    const fin = await steps.finish(b.ctx, id, D.primaryBackMs, sig());
    assert.deepEqual(fin.nics.map((n) => [n.name, n.vf, n.attached]), [["net0", "0000:3b:10.3", true], ["net1", "0000:5e:10.5", true], ["net2", null, false]]);
    const dst = b.instances.get(prep.instanceId)!;
    const hbAfter = await waitForHeartbeat(dst.paths.serialLog, 0, { timeoutMs: 30_000 });
    assert.ok(hbAfter > hbBefore, `heartbeat continued ${hbBefore} → ${hbAfter}`);
    await assertMemoryKept(boot, dst.paths.serialLog, "the guest on hostb after the migration");
    const ids = await listDeviceIds(dst.qmp);
    assert.ok(ids.includes(deviceIds("net0").primary) && ids.includes(deviceIds("net1").primary), ids.join(","));
    // the destination's own record of its devices includes the re-plugged NIC (what a restarted
    // agent reads, and what the next migration unplugs first)
    const meta = JSON.parse(await readFile(dst.paths.meta, "utf8")) as { spec: VmSpec };
    assert.equal(meta.spec.nics.find((n) => n.name === "net1")?.primary?.kind, "stand-in");
    // the guest configured the re-plugged ephemeral NIC
    await waitForConsole(dst.paths.serialLog, new RegExp(`ferry-net \\S+ ${mac(0x22)}`), { timeoutMs: 20_000 });
    assert.deepEqual(await steps.confirmSource(a.ctx, id, src.id, true, sig()), { state: "stopped" });
    assert.equal(await src.alive(), false);
    assert.deepEqual(a.ctx.leases.list(), [], "source leases released at confirm");
    assert.deepEqual(b.ctx.leases.list().map((l) => [l.vf, l.holder.kind === "instance" && l.holder.instanceId]).sort(), [["0000:3b:10.3", dst.id], ["0000:5e:10.5", dst.id]]);
    await dst.stop();
    b.instances.delete(dst.id);
    for (const l of b.ctx.leases.list()) b.ctx.leases.release(l.vf, l.holder);
  });

  it("a failed destination check at pre-switchover cancels: the source keeps running with its devices, the destination is cleaned up", async () => {
    const spec = await guestSpec("steps-precheck", nics().map((n) => (n.primary?.kind === "stand-in" ? { ...n, primary: { ...n.primary, vf: n.primary.vf.replace(/\.0$/, ".6") } } : n)));
    const src = await startOnSource(a, spec);
    await waitForConsole(src.paths.serialLog, /ferry-ready/, { timeoutMs: 60_000 });
    const boot = await bootMemsum(src.paths.serialLog, { timeoutMs: 10_000 });
    const id = "m-precheck";
    const prep = await steps.prepare(b.ctx, id, { spec: src.meta.spec, nics: [{ name: "net0", vf: "0000:3b:10.1" }, { name: "net1", vf: "0000:5e:10.1" }], leaseTtlMs: 600_000 }, sig());
    await steps.perform(a.ctx, id, { instanceId: src.id, uri: prep.uri, ...D }, sig());
    b.instances.get(prep.instanceId)!.kill(); // the destination QEMU dies while the source is paused
    await b.instances.get(prep.instanceId)!.waitExit(5_000);
    const check = await steps.precheck(b.ctx, id, 2_000);
    assert.equal(check.ok, false);
    assert.match(check.reason ?? "", /gone|unreachable|is /);
    const confirmed = await steps.confirmSource(a.ctx, id, src.id, false, sig());
    assert.equal(confirmed.state, "running");
    // the source was paused at pre-switchover until confirm resumed it: the agent reports that pause
    assert.equal(typeof confirmed.pausedMs, "number", `confirm reports the source's pause: ${JSON.stringify(confirmed)}`);
    await steps.abortDestination(b.ctx, id);
    assert.equal((await queryStatus(src.qmp)).running, true);
    const n = lastHeartbeat(await readConsole(src.paths.serialLog)) ?? 0;
    assert.ok((await waitForHeartbeat(src.paths.serialLog, n, { timeoutMs: 5_000 })) > n);
    await assertMemoryKept(boot, src.paths.serialLog, "the source guest resumed after the cancelled migration");
    assert.ok((await listDeviceIds(src.qmp)).includes(deviceIds("net1").primary), "ephemeral NIC re-plugged on the source");
    assert.deepEqual(b.ctx.leases.list().filter((l) => l.holder.kind === "migration" && l.holder.migrationId === id), [], "no lease of this migration left on the destination");
    assert.deepEqual(a.ctx.leases.list().filter((l) => l.holder.kind === "instance" && l.holder.instanceId === src.id).map((l) => l.vf).sort(), ["0000:3b:10.6", "0000:5e:10.6"], "source still holds its VFs");
  });

  it("a guest that never releases its VF: perform ends in FERRY_ERR_UNPLUG_TIMEOUT, the source stays intact", async () => {
    const nic = nics()[1]!;
    const spec = await guestSpec("steps-noos", [{ ...nic, primary: { kind: "stand-in", model: "e1000e", backend: { kind: "none" }, vf: "0000:5e:10.7" } }], { noOs: true });
    const src = await startOnSource(a, spec);
    const id = "m-noos";
    const prep = await steps.prepare(b.ctx, id, { spec: src.meta.spec, nics: [{ name: "net1", vf: "0000:5e:10.2" }], leaseTtlMs: 600_000 }, sig());
    const t0 = performance.now();
    await assert.rejects(steps.perform(a.ctx, id, { instanceId: src.id, uri: prep.uri, ...D, unplugMs: 1_500 }, sig()), (e: unknown) => isFerryError(e, "FERRY_ERR_UNPLUG_TIMEOUT"));
    assert.ok(performance.now() - t0 < 10_000);
    await steps.confirmSource(a.ctx, id, src.id, false, sig());
    await steps.abortDestination(b.ctx, id);
    assert.equal((await queryStatus(src.qmp)).status, "running");
    assert.ok((await listDeviceIds(src.qmp)).includes(deviceIds("net1").primary));
    assert.deepEqual(b.ctx.leases.list().filter((l) => l.holder.kind === "migration" && l.holder.migrationId === id), []);
    assert.equal(b.instances.get(prep.instanceId), undefined, "destination instance gone");
  });

  it("a prepared destination never finished before its leases expire is aborted by the agent's housekeeping (its coordinator gave up on it)", async () => {
    const nic = nics()[1]!;
    const spec = await guestSpec("steps-stale", [nic], { noOs: true });
    const fresh = await steps.prepare(b.ctx, "m-fresh", { spec, nics: [{ name: "net1", vf: "0000:5e:10.3" }], leaseTtlMs: 600_000 }, sig());
    const stale = await steps.prepare(b.ctx, "m-stale", { spec, nics: [{ name: "net1", vf: "0000:5e:10.4" }], leaseTtlMs: 1 }, sig());
    await systemClock.sleep(10);
    assert.deepEqual(await steps.reapStaleDestinations(b.ctx), ["m-stale"]);
    assert.equal(b.instances.get(stale.instanceId), undefined, "the stale incoming QEMU is gone");
    assert.deepEqual(b.ctx.leases.list().filter((l) => l.holder.kind === "migration" && l.holder.migrationId === "m-stale"), []);
    assert.ok(b.instances.get(fresh.instanceId), "a destination within its lease is left alone");
    await steps.abortDestination(b.ctx, "m-fresh");
  });

  it("an abort sent while prepare still runs (the coordinator cancelled its prepare call) waits for it and removes what it started", async () => {
    const spec = await guestSpec("steps-race", [nics()[1]!], { noOs: true });
    const preparing = steps.prepare(b.ctx, "m-race", { spec, nics: [{ name: "net1", vf: "0000:5e:10.5" }], leaseTtlMs: 600_000 }, sig());
    const aborted = await steps.abortDestination(b.ctx, "m-race");
    const prep = await preparing;
    assert.deepEqual(aborted, { aborted: true });
    assert.equal(b.instances.get(prep.instanceId), undefined, "no incoming QEMU left behind");
    assert.deepEqual(b.ctx.leases.list().filter((l) => l.vf === "0000:5e:10.5"), [], "no lease left behind");
  });
});
