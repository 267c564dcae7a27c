// Local migration (QEMU upgrade in place) and save/restore through the CLI on
// a 2-host lab: controller, agents, real guest, real network namespace.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { run } from "../../src/core/run.ts";
import { labDir, labDown, labSpec, labUp } from "../../src/lab/lab.ts";
import type { LabState } from "../../src/lab/lab.ts";
import { lastHeartbeat, readConsole, waitForHeartbeat } from "../../src/qemu/console.ts";

const exec = promisify(execFile);
const NAME = "ops";
const FERRY = join(import.meta.dirname, "..", "..", "bin", "ferry");

describe("lab VM operations", { timeout: 240_000 }, () => {
  let lab: LabState;
  const env = { ...process.env, FERRY_CONTEXT: `/tmp/ferry-ops-context-${process.pid}.json` };
  const ferry = async (...args: string[]): Promise<string> => (await exec(FERRY, args, { env, timeout: 120_000 })).stdout;
  const json = async <T>(...args: string[]): Promise<T> => JSON.parse(await ferry(...args, "--json")) as T;
  interface Vm { host: string; instanceId: string | null; state: string; uuid: string; nics: { address: string; vf: string | null }[] }
  const serial = (vm: Vm): string => join(labDir(NAME), vm.host, "run", vm.uuid, vm.instanceId!, "serial.log");
  const ping = async (ip: string): Promise<boolean> => {
    for (let i = 0; i < 60; i++) if ((await run("ip", ["netns", "exec", lab.netns, "ping", "-c", "1", "-W", "1", ip], { allowFailure: true })).code === 0) return true;
    return false;
  };

  before(async () => {
    process.env["FERRY_CONTEXT"] = env.FERRY_CONTEXT;
    await labDown(NAME);
    lab = await labUp(labSpec({ name: NAME, hosts: 2, configText: "networks: [physnet1]\nvfs: { physnet1: 4 }\n" }));
  });
  after(async () => {
    if (!process.env["FERRY_KEEP_LAB"]) await labDown(NAME);
  });

  it("ferry migrate --local --qemu: a new QEMU on the same host, RAM not copied, heartbeat and VF kept", async () => {
    const vm = await json<Vm>("vm", "create", "app", "--host", "host1", "--memory", "512", "--nic", "physnet1:failover:mandatory", "--shared-memory");
    const ip = vm.nics[0]!.address.split("/")[0]!;
    assert.ok(await ping(ip), "the guest answers");
    const hb = lastHeartbeat(await readConsole(serial(vm))) ?? 0;
    const wrapper = join(labDir(NAME), "qemu-upgraded");
    await writeFile(wrapper, '#!/bin/sh\nexec qemu-system-x86_64 "$@"\n');
    await chmod(wrapper, 0o755);
    const r = await json<{ outcome: string; oldInstanceId: string; newInstanceId: string; qemuBinary: string; transferredBytes: number; ramBytes: number; movedVfs: string[] }>("migrate", "app", "--local", "--qemu", wrapper);
    assert.equal(r.outcome, "succeeded");
    assert.equal(r.qemuBinary, wrapper);
    assert.ok(r.transferredBytes < 0.01 * 512 * 2 ** 20, `sent ${r.transferredBytes} bytes of 512 MiB`);
    assert.deepEqual(r.movedVfs, [vm.nics[0]!.vf]);
    const now = await json<Vm>("vm", "show", "app");
    assert.equal(now.instanceId, r.newInstanceId, "the store points at the new instance");
    assert.notEqual(now.instanceId, vm.instanceId);
    assert.ok((await waitForHeartbeat(serial(now), hb, { timeoutMs: 15_000 })) > hb, "the heartbeat continues in the new instance");
    assert.ok(await ping(ip));
  });

  it("ferry vm save, then restore on another host: the NIC gets a VF there and the heartbeat continues", async () => {
    const before = await json<Vm>("vm", "show", "app");
    const saved = await json<Vm>("vm", "save", "app", "app.state");
    assert.equal(saved.state, "saved");
    assert.equal(saved.instanceId, null);
    const hb = lastHeartbeat(await readConsole(serial(before))) ?? 0;
    const restored = await json<Vm>("vm", "restore", "app.state", "--host", "host2");
    assert.equal(restored.state, "running");
    assert.equal(restored.host, "host2");
    assert.notEqual(restored.nics[0]!.vf, null);
    assert.ok((await waitForHeartbeat(serial(restored), hb, { timeoutMs: 15_000 })) > hb, "memory survived save and restore");
    assert.ok(await ping(restored.nics[0]!.address.split("/")[0]!));
  });
});
