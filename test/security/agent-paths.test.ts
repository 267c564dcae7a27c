// Issue 20 finding 6: the agent API used to write and delete any file. A body
// named `spec.sharedMemoryPath`; QEMU created or overwrote that file with
// guest RAM (mode 0644: world-readable), and stopping the instance deleted it.
// Now the agent derives every path it gives QEMU itself: a body that names
// one is refused (FERRY_ERR_INVALID, saying the agent chooses paths), nothing
// outside the agent's dirs is created or removed, and a VM asking for shared
// memory gets an owner-only RAM file of the agent's choosing, one per
// instance. Real QEMU (no-OS guests: no kernel needed for the RAM file).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { access, chmod, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Agent } from "../../src/agent/agent.ts";
import { buildAgentApp } from "../../src/agent/http/app.ts";
import { makeTestHost } from "../../src/agent/testing.ts";
import type { TestHost } from "../../src/agent/testing.ts";
import { loadOrCreateToken } from "../../src/core/http/token.ts";

const exists = (p: string): Promise<boolean> => access(p).then(() => true, () => false);

describe("the agent chooses every path it gives QEMU", { timeout: 120_000 }, () => {
  let host: TestHost;
  let agent: Agent;
  let app: ReturnType<typeof buildAgentApp>;
  let headers: Record<string, string>;
  const post = async (url: string, body: unknown): Promise<{ statusCode: number; body: string; json: Record<string, unknown> }> => {
    const r = await app.inject({ method: "POST", url, headers, payload: JSON.stringify(body) });
    return { statusCode: r.statusCode, body: r.body, json: JSON.parse(r.body) as Record<string, unknown> };
  };
  const spec = (o: Record<string, unknown> = {}): Record<string, unknown> => ({
    uuid: randomUUID(), name: "paths", memoryMiB: 128, vcpus: 1, kernel: "/k", initrd: "/i", cmdline: "", nics: [], noOs: true, ...o,
  });

  before(async () => {
    host = await makeTestHost({ name: "paths" });
    agent = await Agent.open({ config: host.config });
    const { token } = await loadOrCreateToken(host.config.authTokenFile);
    app = buildAgentApp({ agent, token });
    headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  });
  after(async () => {
    for (const i of (await agent.listInstances()).instances) await agent.stopInstance(i.instanceId).catch(() => undefined);
    await app.close();
    await agent.close();
    await host.cleanup();
  });

  test("a body naming a RAM file is refused, saying the agent chooses paths; the file it named is neither created, written nor removed", async () => {
    const victim = join(host.dir, "victim");
    await writeFile(victim, "precious\n", { mode: 0o644 });
    const absent = join(host.dir, "absent");
    for (const path of [victim, absent, "/dev/shm/ferry-evil"]) {
      const r = await post("/v1/instances", { spec: spec({ sharedMemoryPath: path }) });
      assert.equal(r.statusCode, 400, r.body);
      assert.equal(r.json["code"], "FERRY_ERR_INVALID");
      assert.match(String(r.json["message"]), /^spec\.sharedMemoryPath: .*the agent chooses every path it gives QEMU/);
      assert.match(String(r.json["message"]), /"sharedMemory": true/, "it says how to ask for shared memory");
    }
    assert.equal(await readFile(victim, "utf8"), "precious\n", "the named file is untouched");
    assert.equal(await exists(absent), false, "no file was created where the body said");
    assert.equal(await exists("/dev/shm/ferry-evil"), false);
    // taps, QEMU binaries and kernels are not the body's to choose either
    const tap = await post("/v1/instances", { spec: spec({ noOs: false, nics: [{ name: "net0", mode: "emulated", mac: "52:54:00:00:00:01", standby: { kind: "tap", ifname: "eth0" }, guestPorts: { standby: 1 } }] }) });
    assert.equal(tap.statusCode, 400);
    assert.match(String(tap.json["message"]), /the agent names and creates each NIC's tap itself/);
    const qemu = await post("/v1/instances", { spec: spec({ qemuBinary: "/bin/sh" }) });
    assert.equal(qemu.statusCode, 400);
    assert.match(String(qemu.json["message"]), /the agent chooses every path/);
    const kernel = await post("/v1/instances", { spec: spec({ noOs: false, kernel: "/etc/shadow", initrd: "/etc/passwd" }) });
    assert.equal(kernel.statusCode, 400);
    assert.match(String(kernel.json["message"]), /^spec\.kernel: .*image dirs/);
    assert.equal((await agent.listInstances()).instances.length, 0, "no instance started");
  });

  test("shared memory: QEMU maps an owner-only file the agent made in its owner-only memoryDir, one per instance; stopping removes it", async () => {
    const uuid = randomUUID();
    const first = await post("/v1/instances", { spec: spec({ uuid, sharedMemory: true }) });
    assert.equal(first.statusCode, 201, first.body);
    const id1 = String(first.json["instanceId"]);
    const dir = host.config.memoryDir;
    assert.equal((await stat(dir)).mode & 0o777, 0o700, "memoryDir is owner-only");
    const files = await readdir(dir);
    assert.deepEqual(files, [`${uuid}.${id1}.ram`], "one file, named after the VM and the instance");
    const file = join(dir, files[0]!);
    const st = await stat(file);
    assert.equal(st.mode & 0o777, 0o600, `guest RAM is owner-only (was 0644): ${(st.mode & 0o777).toString(8)}`);
    assert.equal(st.size, 128 * 2 ** 20, "QEMU sized the file to the guest's RAM");
    const maps = await readFile(`/proc/${String(first.json["pid"])}/maps`, "utf8");
    assert.ok(maps.includes(file), "QEMU maps that very file");
    assert.equal((await post(`/v1/instances/${id1}/stop`, {})).statusCode, 200);
    assert.equal(await exists(file), false, "stopping the instance removed its RAM file");

    // the same VM back on this host: a new file, never the earlier instance's
    const second = await post("/v1/instances", { spec: spec({ uuid, sharedMemory: true }) });
    assert.equal(second.statusCode, 201, second.body);
    const id2 = String(second.json["instanceId"]);
    assert.notEqual(id2, id1);
    assert.deepEqual(await readdir(dir), [`${uuid}.${id2}.ram`]);
    assert.equal((await post(`/v1/instances/${id2}/stop`, {})).statusCode, 200);
    assert.deepEqual(await readdir(dir), []);
  });

  test("local migration may switch only to a QEMU binary the host config allows", async () => {
    const r = await post("/v1/instances", { spec: spec({ sharedMemory: true }) });
    assert.equal(r.statusCode, 201, r.body);
    const id = String(r.json["instanceId"]);
    const outside = join(host.dir, "qemu-elsewhere");
    await writeFile(outside, "#!/bin/sh\nexec qemu-system-x86_64 \"$@\"\n");
    await chmod(outside, 0o755);
    const refused = await post(`/v1/instances/${id}/local-migrate`, { qemuBinary: outside });
    assert.equal(refused.statusCode, 400, refused.body);
    assert.match(String(refused.json["message"]), /^qemuBinary: not a QEMU binary host paths allows: list it \(or its dir\) under qemuBinaries in the host config; allowed now: .*\/qemu/);
    await mkdir(host.qemuDir, { recursive: true });
    const allowedButMissing = await post(`/v1/instances/${id}/local-migrate`, { qemuBinary: join(host.qemuDir, "none") });
    assert.equal(allowedButMissing.statusCode, 400);
    assert.match(String(allowedButMissing.json["message"]), /no executable file at this path/);
    assert.equal((await agent.listInstances()).instances.length, 1, "the instance runs on, alone");
    assert.equal((await post(`/v1/instances/${id}/stop`, {})).statusCode, 200);
  });

  test("a RAM file left behind by a crash is removed when the agent starts; an instance's file is kept", async () => {
    const r = await post("/v1/instances", { spec: spec({ sharedMemory: true }) });
    assert.equal(r.statusCode, 201, r.body);
    const dir = host.config.memoryDir;
    const live = (await readdir(dir))[0]!;
    const stale = `${randomUUID()}.i-00000000.ram`;
    await writeFile(join(dir, stale), "old guest memory", { mode: 0o600 });
    await agent.close();
    agent = await Agent.open({ config: host.config }); // adopts the instance, sweeps the rest
    const { token } = await loadOrCreateToken(host.config.authTokenFile);
    await app.close();
    app = buildAgentApp({ agent, token });
    assert.deepEqual(await readdir(dir), [live]);
    assert.equal((await post(`/v1/instances/${String(r.json["instanceId"])}/stop`, {})).statusCode, 200);
  });
});
