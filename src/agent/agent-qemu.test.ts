// The agent with real QEMU (TCG or KVM as detected): an instance started
// through the API survives the agent (detached), a new agent adopts it, the
// guest keeps running, and stopping it through the API ends the process.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { after, describe, test } from "node:test";
import { guestCmdline } from "../model/guest.ts";
import { guestImagePaths } from "../model/guest-image.ts";
import { waitForHeartbeat } from "../qemu/console.ts";
import { startMigration, waitMigration } from "../qemu/migration.ts";
import { migrateCancel, queryMigrate } from "../qmp/commands.ts";
import { processAlive } from "../qemu/instance.ts";
import { Agent } from "./agent.ts";
import { buildAgentApp } from "./http/app.ts";
import { makeTestHost } from "./testing.ts";
import { loadOrCreateToken } from "../core/http/token.ts";

const host = await makeTestHost();
const pids: number[] = [];
after(async () => {
  for (const pid of pids) {
    if (await processAlive(pid)) process.kill(pid, "SIGKILL"); // only the QEMUs this file started
  }
  await host.cleanup();
});

async function boot() {
  const agent = await Agent.open({ config: host.config });
  const { token } = await loadOrCreateToken(host.config.authTokenFile);
  const app = buildAgentApp({ agent, token });
  return { agent, app, headers: { authorization: `Bearer ${token}` } };
}

type Json = Record<string, unknown>;

describe("agent with real QEMU", () => {
  test("an instance outlives its agent: a new agent reconnects, the guest's heartbeat keeps counting, stop ends the process", async () => {
    const image = await guestImagePaths();
    const mac = "52:54:00:a1:00:01";
    const spec = {
      uuid: randomUUID(), name: "hb", memoryMiB: 256, vcpus: 1, kernel: image.kernel, initrd: image.initrd,
      cmdline: guestCmdline("hb", [{ mac, cidr: "10.90.9.10/24" }]),
      nics: [{ name: "net0", mode: "emulated", mac, standby: { kind: "none" }, guestPorts: { standby: 1 } }],
    };
    const a = await boot();
    let view: { instanceId: string; pid: number; serialLog: string; devices: string[] };
    let n1: number;
    try {
      const started = await a.app.inject({ method: "POST", url: "/v1/instances", headers: a.headers, payload: { spec } });
      assert.equal(started.statusCode, 201, started.body);
      view = JSON.parse(started.body) as typeof view;
      pids.push(view.pid);
      n1 = await waitForHeartbeat(view.serialLog, 0, { timeoutMs: 180_000 });
      const desc = JSON.parse((await a.app.inject({ method: "GET", url: `/v1/instances/${view.instanceId}`, headers: a.headers })).body) as { devices: string[] };
      assert.ok(desc.devices.includes("net0-standby"), `devices: ${desc.devices.join(", ")}`);
    } finally {
      await a.app.close();
      await a.agent.close(); // the agent goes; QEMU stays
    }
    assert.ok(await processAlive(view.pid), "QEMU survives the agent");

    const b = await boot();
    try {
      assert.deepEqual(b.agent.recovery.reconnected, [view.instanceId]);
      const got = await b.app.inject({ method: "GET", url: `/v1/instances/${view.instanceId}`, headers: b.headers });
      assert.equal(got.statusCode, 200);
      const desc = JSON.parse(got.body) as Json;
      assert.equal(desc["state"], "running");
      assert.equal(desc["pid"], view.pid);
      const n2 = await waitForHeartbeat(view.serialLog, n1, { timeoutMs: 30_000 });
      assert.ok(n2 > n1);

      const stopped = await b.app.inject({ method: "POST", url: `/v1/instances/${view.instanceId}/stop`, headers: b.headers });
      assert.equal(stopped.statusCode, 200, stopped.body);
      assert.equal(await processAlive(view.pid), false, "the QEMU process is gone");
      assert.equal((await b.app.inject({ method: "GET", url: `/v1/instances/${view.instanceId}`, headers: b.headers })).statusCode, 404);
    } finally {
      await b.app.close();
      await b.agent.close();
    }
  });

  test("a NIC's stand-in VF is leased to the instance on start and released on stop", async () => {
    const a = await boot();
    try {
      const vf = host.vfs[1]!;
      const spec = {
        uuid: randomUUID(), name: "lease", memoryMiB: 128, kernel: "/none", initrd: "/none", noOs: true,
        nics: [{ name: "net0", mode: "ephemeral", mac: "52:54:00:a1:00:02", guestPorts: { primary: 1 }, primary: { kind: "stand-in", model: "rtl8139", backend: { kind: "none" }, vf } }],
      };
      const r = await a.app.inject({ method: "POST", url: "/v1/instances", headers: a.headers, payload: { spec } });
      assert.equal(r.statusCode, 201, r.body);
      const view = JSON.parse(r.body) as { instanceId: string; pid: number; vfs: string[]; devices: string[] };
      pids.push(view.pid);
      assert.deepEqual(view.vfs, [vf]);
      assert.ok(view.devices.includes("net0-primary"), `devices: ${view.devices.join(", ")}`);
      const inv = JSON.parse((await a.app.inject({ method: "GET", url: "/v1/inventory", headers: a.headers })).body) as { vfs: Json[] };
      assert.deepEqual(inv.vfs.find((x) => x["bdf"] === vf)!["lease"], { kind: "instance", vmUuid: spec.uuid, instanceId: view.instanceId });

      const s = await a.app.inject({ method: "POST", url: `/v1/instances/${view.instanceId}/stop`, headers: a.headers });
      assert.deepEqual(JSON.parse(s.body), { instanceId: view.instanceId, stopped: true, releasedVfs: [vf] });
      assert.equal(await processAlive(view.pid), false);
      assert.deepEqual(a.agent.listLeases(), []);
    } finally {
      await a.app.close();
      await a.agent.close();
    }
  });
  test("the dirty-rate route measures the guest for a second and says what a migration of it starts with", async () => {
    const a = await boot();
    try {
      const spec = { uuid: randomUUID(), name: "dirty", memoryMiB: 256, kernel: "/none", initrd: "/none", noOs: true, nics: [] };
      const r = await a.app.inject({ method: "POST", url: "/v1/instances", headers: a.headers, payload: { spec } });
      assert.equal(r.statusCode, 201, r.body);
      const view = JSON.parse(r.body) as { instanceId: string; pid: number };
      pids.push(view.pid);
      const url = `/v1/instances/${view.instanceId}/dirty-rate`;
      const m = await a.app.inject({ method: "POST", url, headers: a.headers, payload: {} });
      assert.equal(m.statusCode, 200, m.body);
      const got = JSON.parse(m.body) as { dirtyRateMiBps: number; seconds: number; mode: string; ramBytes: number; maxBandwidthBytes: number; downtimeLimitMs: number };
      assert.equal(got.seconds, 1);
      assert.equal(got.mode, "page-sampling");
      assert.ok(Number.isFinite(got.dirtyRateMiBps) && got.dirtyRateMiBps >= 0, `dirty rate ${got.dirtyRateMiBps}`);
      assert.equal(got.ramBytes, 256 * 2 ** 20);
      assert.equal(got.downtimeLimitMs, 300, "QEMU's default downtime limit");
      assert.ok(got.maxBandwidthBytes > 0);
      // a second measurement right after works too (QEMU keeps one at a time)
      assert.equal((await a.app.inject({ method: "POST", url, headers: a.headers, payload: { seconds: 1 } })).statusCode, 200);
      const bad = await a.app.inject({ method: "POST", url, headers: a.headers, payload: { seconds: 0 } });
      assert.equal(bad.statusCode, 400, bad.body);
      const none = await a.app.inject({ method: "POST", url: "/v1/instances/i-00000000/dirty-rate", headers: a.headers, payload: {} });
      assert.equal(none.statusCode, 404, none.body);
      // while the instance migrates (to a listener that takes the connection and never reads, at 1 MB/s): refused, the
      // migration goes on; after it was cancelled, measured again
      const sink = createServer(() => undefined);
      await new Promise<void>((resolve) => sink.listen(0, "127.0.0.1", resolve));
      try {
        const qmp = a.agent.getInstance(view.instanceId).qmp;
        await startMigration(qmp, `tcp:127.0.0.1:${(sink.address() as AddressInfo).port}`, { parameters: { maxBandwidth: 1_000_000 } });
        const during = await a.app.inject({ method: "POST", url, headers: a.headers, payload: {} });
        assert.equal(during.statusCode, 409, during.body);
        assert.match(during.body, /FERRY_ERR_STATE.*is migrating \(QEMU: (setup|active)\).*ferry migration watch/);
        assert.match((await queryMigrate(qmp)).status, /^(setup|active)$/, "the migration goes on");
        await migrateCancel(qmp);
        await waitMigration(qmp, { until: ["cancelled"], timeoutMs: 10_000 }).catch((e: unknown) => assert.match(String(e), /cancelled/));
      } finally {
        sink.close();
      }
      assert.equal((await a.app.inject({ method: "POST", url, headers: a.headers, payload: {} })).statusCode, 200);
      await a.app.inject({ method: "POST", url: `/v1/instances/${view.instanceId}/stop`, headers: a.headers });
    } finally {
      await a.app.close();
      await a.agent.close();
    }
  });
});
