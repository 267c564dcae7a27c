// The QEMU layer against real QEMU and the real test guest (TCG here).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isFerryError } from "../../src/core/errors.ts";
import type { NicSpec, VmSpec } from "../../src/model/vm.ts";
import { deviceIds } from "../../src/qemu/argv.ts";
import { lastHeartbeat, readConsole, waitForConsole, waitForHeartbeat } from "../../src/qemu/console.ts";
import { unplugDevice, unplugPrimary } from "../../src/qemu/hotplug.ts";
import type { Instance } from "../../src/qemu/instance.ts";
import { cancelMigration, continueMigration, prepareIncoming, startMigration, waitMigration } from "../../src/qemu/migration.ts";
import { listDeviceIds, queryStatus } from "../../src/qmp/commands.ts";
import type { QmpEvent } from "../../src/qmp/client.ts";
import { guestSpec, mac, rig } from "./helpers.ts";
import type { Rig } from "./helpers.ts";

const BOOT_MS = 60_000;

/** A failover NIC (virtio standby + e1000e stand-in primary) and an ephemeral e1000e, no host networking. */
function nics(): NicSpec[] {
  return [
    {
      name: "net0", mode: "failover", mac: mac(1), standby: { kind: "none" },
      primary: { kind: "stand-in", model: "e1000e", backend: { kind: "none" }, vf: "0000:3b:10.0" },
      guestPorts: { standby: 1, primary: 2 },
    },
    {
      name: "net1", mode: "ephemeral", mac: mac(2),
      primary: { kind: "stand-in", model: "e1000e", backend: { kind: "none" }, vf: "0000:5e:10.0" },
      guestPorts: { primary: 3 },
    },
  ];
}

async function destination(r: Rig, spec: VmSpec): Promise<{ inst: Instance; uri: string }> {
  const inst = await r.start(spec, { incoming: true });
  const uri = await prepareIncoming(inst.qmp, "tcp:127.0.0.1:0");
  return { inst, uri };
}

describe("QEMU instances with the real guest", { timeout: 240_000 }, () => {
  let r: Rig;
  let spec: VmSpec;
  let src: Instance;

  before(async () => {
    r = await rig();
    spec = await guestSpec("e2e-qemu", nics());
    src = await r.start(spec);
    await waitForConsole(src.paths.serialLog, /ferry-ready/, { timeoutMs: BOOT_MS });
  });
  after(async () => r.cleanup());

  it("boots to ready, heartbeats, and answers QMP", async () => {
    const status = await queryStatus(src.qmp);
    assert.deepEqual(status, { status: "running", running: true });
    const n = lastHeartbeat(await readConsole(src.paths.serialLog)) ?? 0;
    assert.ok((await waitForHeartbeat(src.paths.serialLog, n, { timeoutMs: 5_000 })) > n);
    const ids = await listDeviceIds(src.qmp);
    assert.ok(ids.includes(deviceIds("net0").standby), `standby present in ${ids.join(",")}`);
    assert.ok(ids.includes(deviceIds("net1").primary));
    assert.ok(await src.alive());
  });

  it("hot-unplugs the ephemeral e1000e: the guest releases it (DEVICE_DELETED)", async () => {
    const ms = await unplugPrimary(src.qmp, spec.nics[1]!, { timeoutMs: 10_000 });
    assert.ok(ms < 10_000);
    assert.ok(!(await listDeviceIds(src.qmp)).includes(deviceIds("net1").primary));
  });

  it("cancel at pre-switchover leaves the source running with its guest", async () => {
    const destSpec: VmSpec = { ...spec, nics: [spec.nics[0]!, { ...spec.nics[1]!, primary: undefined }] };
    delete destSpec.nics[1]!.primary;
    const dst = await destination(r, destSpec);
    await startMigration(src.qmp, dst.uri, { capabilities: { "pause-before-switchover": true } });
    const pre = await waitMigration(src.qmp, { until: ["pre-switchover"], timeoutMs: 60_000 });
    assert.equal(pre.status, "pre-switchover");
    assert.equal((await queryStatus(src.qmp)).running, false, "vCPUs are paused at pre-switchover");
    assert.equal(await cancelMigration(src.qmp), "cancelled");
    // QEMU resumes the source after a cancel
    const deadlineAt = Date.now() + 5_000;
    while (!(await queryStatus(src.qmp)).running && Date.now() < deadlineAt) await new Promise((x) => setTimeout(x, 50));
    assert.equal((await queryStatus(src.qmp)).running, true);
    const n = lastHeartbeat(await readConsole(src.paths.serialLog)) ?? 0;
    assert.ok((await waitForHeartbeat(src.paths.serialLog, n, { timeoutMs: 5_000 })) > n, "the source guest keeps counting");
    await dst.inst.stop();
  });

  it("live-migrates with pause-before-switchover: UNPLUG_PRIMARY, the heartbeat continues, the primary is back on the destination", async () => {
    const destSpec: VmSpec = { ...spec, nics: [spec.nics[0]!, { name: "net1", mode: "ephemeral", mac: mac(2), guestPorts: { primary: 3 } }] };
    const dst = await destination(r, destSpec);
    const events: QmpEvent[] = [];
    const off = src.qmp.onEvent((e) => events.push(e));
    await startMigration(src.qmp, dst.uri, { capabilities: { "pause-before-switchover": true }, parameters: { downtimeLimit: 300 } });
    await waitMigration(src.qmp, { until: ["pre-switchover"], timeoutMs: 60_000 });
    const before = lastHeartbeat(await readConsole(src.paths.serialLog)) ?? 0;
    const done = await continueMigration(src.qmp, { timeoutMs: 30_000 });
    off();
    assert.equal(done.status, "completed");
    assert.ok(events.some((e) => e.event === "UNPLUG_PRIMARY" && e.data["device-id"] === deviceIds("net0").primary), "UNPLUG_PRIMARY for the failover primary");
    assert.ok(events.some((e) => e.event === "MIGRATION" && e.data["status"] === "wait-unplug"));
    const after = await waitForHeartbeat(dst.inst.paths.serialLog, 0, { timeoutMs: 30_000 });
    assert.ok(after > before, `heartbeat continued on the destination (${before} → ${after}), never reset`);
    assert.equal((await queryStatus(dst.inst.qmp)).running, true);
    // the failover primary comes back on the destination (QEMU re-plugs it once the guest runs)
    const until = Date.now() + 20_000;
    let ids: string[] = [];
    while (Date.now() < until) {
      ids = await listDeviceIds(dst.inst.qmp);
      if (ids.includes(deviceIds("net0").primary)) break;
      await new Promise((x) => setTimeout(x, 100));
    }
    assert.ok(ids.includes(deviceIds("net0").primary), `primary back on the destination: ${ids.join(",")}`);
    await src.stop();
    assert.equal(await src.alive(), false);
  });
});

describe("a guest with no OS never releases a device", { timeout: 60_000 }, () => {
  it("unplug ends in FERRY_ERR_UNPLUG_TIMEOUT at its deadline and the device stays", async () => {
    const r = await rig();
    try {
      const spec = await guestSpec("e2e-noos", [nics()[1]!], { noOs: true });
      const inst = await r.start(spec);
      const t0 = performance.now();
      await assert.rejects(unplugDevice(inst.qmp, deviceIds("net1").primary, { timeoutMs: 1_500 }), (e: unknown) => isFerryError(e, "FERRY_ERR_UNPLUG_TIMEOUT") && /net1-primary/.test(e.message));
      const took = performance.now() - t0;
      assert.ok(took >= 1_400 && took < 5_000, `gave up at the deadline (${Math.round(took)} ms)`);
      assert.ok((await listDeviceIds(inst.qmp)).includes(deviceIds("net1").primary));
      assert.ok(await inst.alive());
    } finally {
      await r.cleanup();
    }
  });
});
