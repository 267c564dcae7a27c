// Local migration (QEMU upgrade in place) through the agent API: real QEMU,
// the real guest, RAM shared through a file and not copied.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { chmod, mkdir, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Agent } from "../../src/agent/agent.ts";
import { buildAgentApp } from "../../src/agent/http/app.ts";
import type { TestHost } from "../../src/agent/testing.ts";
import { makeTestHost } from "../../src/agent/testing.ts";
import { loadOrCreateToken } from "../../src/core/http/token.ts";
import { guestCmdline } from "../../src/model/guest.ts";
import { guestImagePaths } from "../../src/model/guest-image.ts";
import { processAlive } from "../../src/qemu/instance.ts";
import { lastHeartbeat, readConsole, waitForConsole, waitForHeartbeat } from "../../src/qemu/console.ts";
import { bootMemsum } from "../../src/lab/memcheck.ts";
import { assertMemoryKept, mac, reportMemoryChecks } from "./helpers.ts";

describe("local migration", { timeout: 180_000 }, () => {
  let host: TestHost;
  let agent: Agent;
  let app: ReturnType<typeof buildAgentApp>;
  let headers: Record<string, string>;
  before(async () => {
    host = await makeTestHost({ name: "local-a" });
    agent = await Agent.open({ config: host.config });
    const { token } = await loadOrCreateToken(host.config.authTokenFile);
    app = buildAgentApp({ agent, token });
    headers = { authorization: `Bearer ${token}` };
  });
  after(async () => {
    for (const i of (await agent.listInstances()).instances) await agent.stopInstance(i.instanceId).catch(() => undefined);
    await app.close();
    await agent.close();
    await host.cleanup();
    reportMemoryChecks("local-migration.test.ts");
  });

  it("moves a 1 GiB guest to a new QEMU (a wrapper binary) without copying its RAM; the heartbeat and the VF lease follow", async () => {
    const img = await guestImagePaths();
    const vf = host.vfs[0]!;
    const nics = [
      { name: "net0", mode: "failover", mac: mac(0x51), standby: { kind: "none" }, primary: { kind: "stand-in", model: "rtl8139", backend: { kind: "none" }, vf }, guestPorts: { standby: 1, primary: 2 } },
      { name: "net1", mode: "emulated", mac: mac(0x52), standby: { kind: "none" }, guestPorts: { standby: 3 } },
    ];
    const spec = {
      uuid: randomUUID(), name: "local1", memoryMiB: 1024, vcpus: 1, kernel: img.kernel, initrd: img.initrd,
      cmdline: guestCmdline("local1", nics.map((n, i) => ({ mac: n.mac, cidr: `10.97.${i}.10/24` }))), nics, sharedMemory: true,
    };
    const r = await app.inject({ method: "POST", url: "/v1/instances", headers, payload: { spec } });
    assert.equal(r.statusCode, 201, r.body);
    const old = JSON.parse(r.body) as { instanceId: string; pid: number; serialLog: string };
    await waitForConsole(old.serialLog, /ferry-ready/, { timeoutMs: 60_000 });
    const boot = await bootMemsum(old.serialLog, { timeoutMs: 10_000 });
    // the guest dirties some memory of its own by running; a wrapper stands for the upgraded QEMU
    const [shm] = (await readdir(host.config.memoryDir)).map((f) => join(host.config.memoryDir, f));
    assert.ok(shm !== undefined && shm.includes(old.instanceId), "the agent made one RAM file, named after the instance");
    assert.equal((await stat(shm)).mode & 0o777, 0o600, "guest RAM is owner-only");
    await mkdir(host.qemuDir, { recursive: true });
    const wrapper = join(host.qemuDir, "qemu-new"); // the test host allows binaries there (qemuBinaries)
    await writeFile(wrapper, '#!/bin/sh\nexec qemu-system-x86_64 "$@"\n');
    await chmod(wrapper, 0o755);
    const hb = lastHeartbeat(await readConsole(old.serialLog)) ?? 0;
    const m = await app.inject({ method: "POST", url: `/v1/instances/${old.instanceId}/local-migrate`, headers, payload: { qemuBinary: wrapper } });
    assert.equal(m.statusCode, 200, m.body);
    const res = JSON.parse(m.body) as { newInstanceId: string; qemuBinary: string; transferredBytes: number; ramBytes: number; movedVfs: string[]; nics: { name: string; attached: boolean }[] };
    assert.equal(res.qemuBinary, wrapper);
    assert.ok(res.transferredBytes < 0.01 * 1024 * 1024 * 1024, `copied ${res.transferredBytes} bytes of a 1 GiB guest (< 1 %)`);
    assert.deepEqual(res.movedVfs, [vf]);
    assert.deepEqual(res.nics.map((n) => [n.name, n.attached]), [["net0", true], ["net1", false]]);
    assert.equal(await processAlive(old.pid), false, "the old instance is gone");
    const list = JSON.parse((await app.inject({ method: "GET", url: "/v1/instances", headers })).body) as { instances: { instanceId: string; vfs: string[]; serialLog: string; running: boolean }[] };
    assert.deepEqual(list.instances.map((i) => [i.instanceId, i.vfs, i.running]), [[res.newInstanceId, [vf], true]], "exactly one instance, the new one, holds the VF");
    const after = await waitForHeartbeat(list.instances[0]!.serialLog, hb, { timeoutMs: 30_000 });
    assert.ok(after > hb, `heartbeat continued ${hb} → ${after}`);
    await assertMemoryKept(boot, list.instances[0]!.serialLog, "the guest in the new QEMU");
    const stop = await app.inject({ method: "POST", url: `/v1/instances/${res.newInstanceId}/stop`, headers });
    assert.equal(stop.statusCode, 200);
    await assert.rejects(stat(shm), "the shared RAM file goes with the VM's last instance");
  });

  it("refuses a VM without shared memory, saying what to do, and changes nothing", async () => {
    const img = await guestImagePaths();
    const spec = { uuid: randomUUID(), name: "local2", memoryMiB: 128, vcpus: 1, kernel: img.kernel, initrd: img.initrd, cmdline: "", nics: [], noOs: true };
    const r = await app.inject({ method: "POST", url: "/v1/instances", headers, payload: { spec } });
    const inst = JSON.parse(r.body) as { instanceId: string; pid: number };
    const m = await app.inject({ method: "POST", url: `/v1/instances/${inst.instanceId}/local-migrate`, headers, payload: {} });
    assert.equal(m.statusCode, 409);
    assert.match(m.body, /shared memory/);
    assert.ok(await processAlive(inst.pid));
    const bad = await app.inject({ method: "POST", url: `/v1/instances/${inst.instanceId}/local-migrate`, headers, payload: { qemuBinary: "../../bin/sh" } });
    assert.equal(bad.statusCode, 400);
  });
});
