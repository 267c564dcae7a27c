// Issue 20 finding 7: `--nic phsynet1:failover:optional` created the VM (exit
// 0, no warning) on a network no host has, with an address from a made-up
// subnet. Now a NIC on a network that no host has is refused whatever its
// policy (the cluster's networks listed, the closest name suggested, exit 3,
// nothing created); an optional NIC that gets no VF is a warning in the
// create reply and on the CLI. And `ferry hosts` shows VF use per host.
// A real controller and two real agents in this process (stand-in VFs),
// real QEMU (no-OS guests), bin/ferry spawned against them.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { liveCluster, TEST_TOKEN } from "../../src/api/testing.ts";
import type { LiveCluster } from "../../src/api/testing.ts";
import { run } from "../../src/core/run.ts";
import { EXIT } from "../../src/cli/exit-codes.ts";
import { tcgDirtySyncExposed } from "../../src/migration/preflight.ts";

const FERRY = fileURLToPath(new URL("../../bin/ferry", import.meta.url));

describe("vm create: networks and VFs", { timeout: 120_000 }, () => {
  let c: LiveCluster;
  const ferry = (...args: string[]) => run(FERRY, args, { allowFailure: true, timeoutMs: 60_000, env: c.env });
  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const r = await fetch(`${c.url}${path}`, { method, headers: { authorization: `Bearer ${TEST_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, json: (await r.json()) as Record<string, unknown> };
  };
  const instances = async (): Promise<number> => {
    let n = 0;
    for (const a of c.agents.values()) n += (await a.listInstances()).instances.length;
    return n;
  };

  before(async () => {
    c = await liveCluster([{ name: "host-a", network: "physnet1", numVfs: 2 }, { name: "host-b", network: "physnet2", numVfs: 1 }]);
  });
  after(() => c.close());

  test("a NIC on a network no host has is refused through the API, whatever its policy and mode: the networks listed, the closest suggested, nothing created", async () => {
    for (const policy of ["mandatory", "requisite", "optional"]) {
      for (const mode of ["failover", "ephemeral", "emulated"]) {
        const r = await api("POST", "/v1/vms", { name: `typo-${policy}-${mode}`, host: "host-a", memoryMiB: 64, noOs: true, nics: [{ network: "phsynet1", mode, policy }] });
        assert.equal(r.status, 400, `${policy}/${mode}: ${JSON.stringify(r.json)}`);
        assert.equal(r.json["code"], "FERRY_ERR_INVALID");
        assert.equal(r.json["message"], `nics[0].network: no host has a network named "phsynet1" (did you mean physnet1?); the cluster's networks: physnet1, physnet2. Give a NIC one of those networks (nothing was created)`);
      }
    }
    const far = await api("POST", "/v1/vms", { name: "far", host: "host-a", memoryMiB: 64, noOs: true, nics: [{ network: "physnet1", mode: "failover", policy: "optional" }, { network: "storage", mode: "emulated", policy: "optional" }] });
    assert.equal(far.status, 400);
    assert.match(String(far.json["message"]), /^nics\[1\]\.network: no host has a network named "storage"; the cluster's networks: physnet1, physnet2\./, "no suggestion when nothing is close");
    assert.deepEqual((await api("GET", "/v1/vms")).json["vms"], []);
    assert.equal(await instances(), 0, "no QEMU started");
  });

  test("the CLI: the misspelt network of the issue exits 3 (refused, nothing changed) with the same message", async () => {
    const r = await ferry("vm", "create", "r1", "--host", "host-a", "--memory", "64", "--guest", "no-os", "--nic", "phsynet1:failover:optional");
    assert.equal(r.code, EXIT.refused, r.stderr + r.stdout);
    assert.match(r.stderr, /FERRY_ERR_INVALID: nics\[0\]\.network: no host has a network named "phsynet1" \(did you mean physnet1\?\); the cluster's networks: physnet1, physnet2/);
    assert.equal((await ferry("vm", "show", "r1")).code, EXIT.refused, "no VM r1");
  });

  test("an optional NIC with no free VF on the host: created, with a warning in the API reply and a warning line from the CLI; ferry hosts shows VF use", async () => {
    const viaApi = await api("POST", "/v1/vms", { name: "w1", host: "host-a", memoryMiB: 64, noOs: true, nics: [{ network: "physnet1", mode: "ephemeral", policy: "mandatory" }, { network: "physnet2", mode: "ephemeral", policy: "optional" }] });
    assert.equal(viaApi.status, 201, JSON.stringify(viaApi.json));
    assert.deepEqual(viaApi.json["warnings"], ["net1 (physnet2, ephemeral, optional): no free VF of physnet2 on host-a: the guest has no such NIC until a 'ferry vm start' or a migration finds one (hosts with physnet2: host-b)"]);
    const cli = await ferry("vm", "create", "w2", "--host", "host-a", "--memory", "64", "--guest", "no-os", "--nic", "physnet1:ephemeral:optional", "--nic", "physnet2:failover:optional");
    assert.equal(cli.code, EXIT.ok, cli.stderr);
    assert.match(cli.stdout, /^warning: net1 \(physnet2, failover, optional\): no free VF of physnet2 on host-a: it runs on its virtio standby only \(no passthrough\)/m);
    assert.doesNotMatch(cli.stdout, /warning: net0/, "net0 got a VF");
    const json = JSON.parse((await ferry("vm", "create", "w3", "--host", "host-a", "--memory", "64", "--guest", "no-os", "--nic", "physnet1:ephemeral:optional", "--json")).stdout) as { warnings: string[]; nics: { vf: string | null }[] };
    assert.equal(json.nics[0]!.vf, null, "both VFs of host-a are taken by w1 and w2");
    assert.match(json.warnings[0]!, /^net0 \(physnet1, ephemeral, optional\): no free VF of physnet1 on host-a/);
    assert.equal(await instances(), 3);

    // VF use per host and network: leased / usable
    const hosts = await ferry("hosts");
    assert.equal(hosts.code, EXIT.ok, hosts.stderr);
    assert.match(hosts.stdout, /^HOST\s+STATE\s+VFS USED\/TOTAL/m);
    assert.match(hosts.stdout, /^host-a\s+up\s+physnet1 2\/2\s/m);
    assert.match(hosts.stdout, /^host-b\s+up\s+physnet2 0\/1\s/m);
    const hj = JSON.parse((await ferry("hosts", "--json")).stdout) as { name: string; vfs: { network: string; used: number; total: number }[] }[];
    assert.deepEqual(hj.map((h) => [h.name, h.vfs]).sort(), [["host-a", [{ network: "physnet1", used: 2, total: 2 }]], ["host-b", [{ network: "physnet2", used: 0, total: 1 }]]]);
  });

  test("a VM of whole MiB (created before the RAM trim) gets the trim at its next start where QEMU < 9.0 runs under TCG: its record and its QEMU's -m say so", async () => {
    const created = await api("POST", "/v1/vms", { name: "old1", host: "host-b", memoryMiB: 64, noOs: true, nics: [] });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    const facts = (JSON.parse((await ferry("hosts", "--json")).stdout) as { name: string; accel: string; qemu?: { version: string } }[]).find((h) => h.name === "host-b")!;
    const exposed = tcgDirtySyncExposed(facts);
    assert.equal(created.json["ramTrimKiB"], exposed ? 8 : undefined, JSON.stringify(facts));
    assert.equal((await ferry("vm", "stop", "old1")).code, EXIT.ok);
    // what an older Ferry wrote: no trim
    const { ramTrimKiB: _, ...untrimmed } = (await c.cluster.getVm("old1"))!;
    await c.cluster.putVm(untrimmed);
    assert.equal((JSON.parse((await ferry("vm", "show", "old1", "--json")).stdout) as { ramTrimKiB?: number }).ramTrimKiB, undefined);
    const started = await ferry("vm", "start", "old1", "--json");
    assert.equal(started.code, EXIT.ok, started.stderr);
    const vm = JSON.parse(started.stdout) as { ramTrimKiB?: number; instanceId: string };
    assert.equal(vm.ramTrimKiB, exposed ? 8 : undefined);
    const inst = (await c.agents.get("host-b")!.listInstances()).instances.find((i) => i.instanceId === vm.instanceId)!;
    const argv = (await readFile(`/proc/${inst.pid}/cmdline`, "utf8")).split("\0");
    assert.equal(argv[argv.indexOf("-m") + 1], exposed ? "65528k" : "64M", argv.join(" "));
    assert.equal((await ferry("vm", "stop", "old1")).code, EXIT.ok);
  });
});
