// Save on one host, restore on another with VFs chosen anew: real QEMU, the
// real guest, two agents sharing a save directory.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Agent } from "../../src/agent/agent.ts";
import { buildAgentApp } from "../../src/agent/http/app.ts";
import type { TestHost } from "../../src/agent/testing.ts";
import { makeTestHost } from "../../src/agent/testing.ts";
import { loadOrCreateToken } from "../../src/core/http/token.ts";
import { RAM_TRIM_KIB } from "../../src/model/vm.ts";
import { guestCmdline } from "../../src/model/guest.ts";
import { guestImagePaths } from "../../src/model/guest-image.ts";
import { lastHeartbeat, readConsole, waitForConsole, waitForHeartbeat } from "../../src/qemu/console.ts";
import { bootMemsum } from "../../src/lab/memcheck.ts";
import { assertMemoryKept, mac, reportMemoryChecks } from "./helpers.ts";

interface Side { host: TestHost; agent: Agent; app: ReturnType<typeof buildAgentApp>; headers: Record<string, string> }

async function side(name: string, saveDir: string): Promise<Side> {
  const host = await makeTestHost({ name, saveDir });
  const agent = await Agent.open({ config: host.config });
  const { token } = await loadOrCreateToken(host.config.authTokenFile);
  return { host, agent, app: buildAgentApp({ agent, token }), headers: { authorization: `Bearer ${token}` } };
}

describe("save and restore with passthrough NICs", { timeout: 180_000 }, () => {
  let saves: string;
  let a: Side;
  let b: Side;
  before(async () => {
    saves = await mkdtemp(join(tmpdir(), "ferry-saves-"));
    a = await side("save-a", saves);
    b = await side("save-b", saves);
  });
  after(async () => {
    for (const s of [a, b]) {
      for (const i of (await s.agent.listInstances()).instances) await s.agent.stopInstance(i.instanceId).catch(() => undefined);
      await s.app.close();
      await s.agent.close();
      await s.host.cleanup();
    }
    await rm(saves, { recursive: true, force: true });
    reportMemoryChecks("save-restore.test.ts");
  });

  it("a VM saved on one host is restored on another on new VFs; its heartbeat continues", async () => {
    const img = await guestImagePaths();
    const nics = [
      { name: "net0", mode: "failover", mac: mac(0x61), standby: { kind: "none" }, primary: { kind: "stand-in", model: "rtl8139", backend: { kind: "none" }, vf: a.host.vfs[0]! }, guestPorts: { standby: 1, primary: 2 } },
      { name: "net1", mode: "ephemeral", mac: mac(0x62), primary: { kind: "stand-in", model: "rtl8139", backend: { kind: "none" }, vf: a.host.vfs[1]! }, guestPorts: { primary: 3 } },
    ];
    const spec = { uuid: randomUUID(), name: "saved1", memoryMiB: 256, ramTrimKiB: RAM_TRIM_KIB, vcpus: 1, kernel: img.kernel, initrd: img.initrd, cmdline: guestCmdline("saved1", nics.map((n, i) => ({ mac: n.mac, cidr: `10.96.${i}.10/24` }))), nics };
    const r = await a.app.inject({ method: "POST", url: "/v1/instances", headers: a.headers, payload: { spec } });
    assert.equal(r.statusCode, 201, r.body);
    const inst = JSON.parse(r.body) as { instanceId: string; serialLog: string };
    await waitForConsole(inst.serialLog, /ferry-ready/, { timeoutMs: 60_000 });
    await waitForHeartbeat(inst.serialLog, 3, { timeoutMs: 30_000 });
    const boot = await bootMemsum(inst.serialLog, { timeoutMs: 10_000 });

    const s = await a.app.inject({ method: "POST", url: `/v1/instances/${inst.instanceId}/save`, headers: a.headers, payload: { name: "saved1.state" } });
    assert.equal(s.statusCode, 200, s.body);
    const saved = JSON.parse(s.body) as { bytes: number; nicsToRestore: { name: string }[]; releasedVfs: string[] };
    const hbSaved = lastHeartbeat(await readConsole(inst.serialLog)) ?? 0;
    assert.ok(saved.bytes > 0 && (await stat(join(saves, "saved1.state"))).size === saved.bytes);
    assert.deepEqual(saved.nicsToRestore.map((n) => n.name), ["net0", "net1"]);
    assert.deepEqual(saved.releasedVfs.sort(), [a.host.vfs[0], a.host.vfs[1]].sort());
    assert.deepEqual((JSON.parse((await a.app.inject({ method: "GET", url: "/v1/instances", headers: a.headers })).body) as { instances: unknown[] }).instances, []);

    const res = await b.app.inject({ method: "POST", url: "/v1/instances/restore", headers: b.headers, payload: { name: "saved1.state", nics: [{ name: "net0", vf: b.host.vfs[2] }, { name: "net1", vf: b.host.vfs[3] }] } });
    assert.equal(res.statusCode, 200, res.body);
    const restored = JSON.parse(res.body) as { instanceId: string; nics: { name: string; vf: string; attached: boolean }[] };
    assert.deepEqual(restored.nics.map((n) => [n.name, n.vf, n.attached]), [["net0", b.host.vfs[2], true], ["net1", b.host.vfs[3], true]]);
    const view = JSON.parse((await b.app.inject({ method: "GET", url: `/v1/instances/${restored.instanceId}`, headers: b.headers })).body) as { serialLog: string; vfs: string[]; running: boolean };
    assert.equal(view.running, true);
    assert.deepEqual(view.vfs.sort(), [b.host.vfs[2], b.host.vfs[3]].sort());
    const hb = await waitForHeartbeat(view.serialLog, hbSaved, { timeoutMs: 30_000 });
    assert.ok(hb > hbSaved, `heartbeat continued after restore (${hbSaved} → ${hb})`);
    await assertMemoryKept(boot, view.serialLog, "the guest restored on save-b");
    await waitForConsole(view.serialLog, new RegExp(`ferry-net \\S+ ${mac(0x62)}`), { timeoutMs: 20_000 });

    const missing = await b.app.inject({ method: "POST", url: "/v1/instances/restore", headers: b.headers, payload: { name: "nope", nics: [] } });
    assert.equal(missing.statusCode, 404);
    assert.match(missing.body, /save it first/);
  });
});
