// Local migration (QEMU upgrade in place) and save/restore through the CLI on
// a 2-host lab: controller, agents, real guest, real network namespace.
// The lab runs with mutual TLS (its default): checked here too, on the same lab.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { access, chmod, lstat, readFile, readdir, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { run } from "../../src/core/run.ts";
import { hostPath, labDir, labDown, labQemuDir, labSpec, labUp } from "../../src/lab/lab.ts";
import type { LabState } from "../../src/lab/lab.ts";
import { bootMemsum } from "../../src/lab/memcheck.ts";
import { tcgDirtySyncExposed } from "../../src/migration/preflight.ts";
import { lastHeartbeat, readConsole, waitForHeartbeat } from "../../src/qemu/console.ts";
import { assertMemoryKept, reportMemoryChecks } from "./helpers.ts";

const exec = promisify(execFile);
const NAME = "ops";
const FERRY = join(import.meta.dirname, "..", "..", "bin", "ferry");

describe("lab VM operations", { timeout: 240_000 }, () => {
  let lab: LabState;
  const env = { ...process.env, FERRY_CONTEXT: `/tmp/ferry-ops-context-${process.pid}.json` };
  const ferry = async (...args: string[]): Promise<string> => (await exec(FERRY, args, { env, timeout: 120_000 })).stdout;
  const json = async <T>(...args: string[]): Promise<T> => JSON.parse(await ferry(...args, "--json")) as T;
  interface Vm { host: string; instanceId: string | null; state: string; uuid: string; nics: { address: string; vf: string | null }[] }
  /** The checksum of the memory app filled at boot (src/lab/memcheck.ts). */
  let appBoot = "";
  // an apart host's runDir is /run/ferry in its own mount namespace (read through its holder); a shared host's is in the lab dir
  const serial = (vm: Vm): string => hostPath(lab, vm.host, join(lab.apart ? "/run/ferry" : join(labDir(NAME), vm.host, "run"), vm.uuid, vm.instanceId!, "serial.log"));
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
    reportMemoryChecks("lab-vm-ops.test.ts");
  });

  it("mutual TLS by default: plain HTTP and clients without a certificate are refused, the CLI works from the context alone, keys are owner-only", async () => {
    assert.ok(lab.tls, "lab.json records the lab's TLS files");
    assert.match(lab.controller.url, /^https:\/\//);
    for (const h of lab.hosts) assert.match(h.url, /^https:\/\//);
    const token = (await readFile(lab.controllerTokenFile, "utf8")).trim();
    const headers = { authorization: `Bearer ${token}` };
    // plain HTTP to the controller's port: no answer with the hosts
    const plain = await fetch(`${lab.controller.url.replace(/^https:/, "http:")}/v1/hosts`, { headers, signal: AbortSignal.timeout(5_000) }).then(async (r) => `HTTP ${r.status} ${await r.text()}`, (e: unknown) => `refused: ${String(e)}`);
    assert.ok(!plain.includes("host1"), `plain HTTP got the hosts: ${plain}`);
    // HTTPS that trusts the lab's CA but presents no client certificate: refused in the handshake
    const ca = await readFile(lab.tls.ca);
    const get = (tls: { ca: Buffer; cert?: Buffer; key?: Buffer }): Promise<string> => new Promise<string>((resolve) => {
      const req = request(`${lab.controller.url}/v1/hosts`, { headers, ...tls, timeout: 5_000 }, (res) => {
        let body = "";
        res.on("data", (d: Buffer) => (body += d.toString()));
        res.on("end", () => resolve(`HTTP ${res.statusCode} ${body}`));
        res.on("error", (e) => resolve(`refused: ${e.message}`));
      });
      req.on("error", (e) => resolve(`refused: ${e.message}`));
      req.on("timeout", () => req.destroy(new Error("timeout")));
      req.end();
    });
    const noCert = await get({ ca });
    assert.match(noCert, /^refused: /, `a client without a certificate was answered: ${noCert}`);
    // the same request with the lab's client certificate is answered: the certificate is what was missing
    const withCert = await get({ ca, cert: await readFile(lab.tls.cert), key: await readFile(lab.tls.key) });
    assert.match(withCert, /^HTTP 200 .*host1/, withCert);
    // the CLI in the lab's context: no --controller, --token-file or --tls-* flags
    const ctx = JSON.parse(await readFile(env.FERRY_CONTEXT, "utf8")) as { controller: string; tls?: { cert: string; key: string; ca: string } };
    assert.equal(ctx.controller, lab.controller.url);
    assert.deepEqual(ctx.tls, lab.tls);
    const hosts = await json<{ name: string; state: string }[]>("hosts");
    assert.deepEqual(hosts.map((h) => `${h.name}:${h.state}`).sort(), ["host1:up", "host2:up"]);
    // the CA's and every component's key: owner-only, in an owner-only dir
    const dir = join(lab.dir, "tls");
    assert.equal((await lstat(dir)).mode & 0o777, 0o700);
    const keys = (await readdir(dir)).filter((f) => f.endsWith(".key")).sort();
    assert.deepEqual(keys, ["ca.key", "cli.key", "controller.key", "host1.key", "host2.key"]);
    for (const k of keys) assert.equal((await lstat(join(dir, k))).mode & 0o777, 0o600, k);
  });

  it("ferry migrate --local --qemu: a new QEMU on the same host, RAM not copied, heartbeat and VF kept", async () => {
    const vm = await json<Vm>("vm", "create", "app", "--host", "host1", "--memory", "512", "--nic", "physnet1:failover:mandatory", "--shared-memory");
    const ip = vm.nics[0]!.address.split("/")[0]!;
    assert.ok(await ping(ip), "the guest answers");
    appBoot = await bootMemsum(serial(vm), { timeoutMs: 60_000 });
    const hb = lastHeartbeat(await readConsole(serial(vm))) ?? 0;
    const wrapper = join(labQemuDir(NAME), "qemu-upgraded"); // the lab's hosts allow the binaries there (qemuBinaries)
    await writeFile(wrapper, '#!/bin/sh\nexec qemu-system-x86_64 "$@"\n');
    await chmod(wrapper, 0o755);
    // the one record shape (docs/records.md)
    const r = await json<{ kind: string; outcome: string; runsOn: { host: string; instanceId: string }; qemuBinary: string; dataMovedBytes: number; nics: { before: { vf: string } | null; after: { vf: string } | null }[] }>("migrate", "app", "--local", "--qemu", wrapper);
    assert.equal(r.kind, "local");
    assert.equal(r.outcome, "succeeded");
    assert.equal(r.qemuBinary, wrapper);
    assert.ok(r.dataMovedBytes < 0.01 * 512 * 2 ** 20, `sent ${r.dataMovedBytes} bytes of 512 MiB`);
    assert.deepEqual(r.nics.map((n) => [n.before?.vf, n.after?.vf]), [[vm.nics[0]!.vf, vm.nics[0]!.vf]], "the VF kept: its lease moved to the new instance");
    const now = await json<Vm>("vm", "show", "app");
    assert.equal(now.instanceId, r.runsOn.instanceId, "the store points at the new instance");
    assert.notEqual(now.instanceId, vm.instanceId);
    assert.ok((await waitForHeartbeat(serial(now), hb, { timeoutMs: 15_000 })) > hb, "the heartbeat continues in the new instance");
    await assertMemoryKept(appBoot, serial(now), "app in the new QEMU");
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
    await assertMemoryKept(appBoot, serial(restored), "app restored on host2");
    assert.ok(await ping(restored.nics[0]!.address.split("/")[0]!));
  });

  it("the file-backed guest migrates between the hosts and back: RAM 8 KiB short of whole MiB where QEMU < 9.0 runs under TCG, memory and heartbeat kept", async () => {
    const hosts = await json<{ name: string; accel: string; qemu?: { version: string } }[]>("hosts");
    const exposed = hosts.some((h) => tcgDirtySyncExposed(h));
    const shown = await json<Vm & { ramTrimKiB?: number }>("vm", "show", "app");
    assert.equal(shown.ramTrimKiB, exposed ? 8 : undefined, `hosts: ${JSON.stringify(hosts.map((h) => [h.name, h.accel, h.qemu?.version]))}`);
    if (exposed) assert.match(await ferry("vm", "show", "app"), /512 MiB \(8 KiB short: QEMU < 9\.0 under TCG migrates whole MiB with lost writes\) in a shared file/);
    for (const to of ["host1", "host2"]) {
      const before = await json<Vm>("vm", "show", "app");
      const hb = lastHeartbeat(await readConsole(serial(before))) ?? 0;
      const r = await json<{ outcome: string; reason?: string }>("migrate", "app", "--to", to);
      assert.equal(r.outcome, "succeeded", r.reason ?? "");
      const now = await json<Vm>("vm", "show", "app");
      assert.equal(now.host, to);
      assert.ok((await waitForHeartbeat(serial(now), hb, { timeoutMs: 15_000 })) > hb, `the heartbeat continues on ${to}`);
      await assertMemoryKept(appBoot, serial(now), `app migrated to ${to}`);
    }
  });

  it("ferry lab down removes the lab dir with its TLS material, and the context", { skip: process.env["FERRY_KEEP_LAB"] !== undefined }, async () => {
    await ferry("lab", "down", "--name", NAME);
    await assert.rejects(access(join(lab.dir, "tls")));
    await assert.rejects(access(env.FERRY_CONTEXT));
  });
});
