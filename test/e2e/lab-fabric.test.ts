// The lab fabric and the probe against the real kernel and a real guest:
// everything in namespaces named ferry-t-<…> that this file creates and deletes.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, describe, it } from "node:test";
import { run } from "../../src/core/run.ts";
import { addTap, createFabric, deleteTap, describeFabric, destroyFabric, listNetns, openFabric } from "../../src/lab/fabric.ts";
import { bridgeMac, TEST_NETNS_PREFIX } from "../../src/lab/fabric-plan.ts";
import type { Fabric } from "../../src/lab/fabric-plan.ts";
import { guestCmdline } from "../../src/model/guest.ts";
import { startProbe } from "../../src/lab/probe.ts";
import { waitForConsole } from "../../src/qemu/console.ts";
import { processAlive } from "../../src/qemu/instance.ts";
import { guestSpec, mac, rig } from "./helpers.ts";

const prefix = TEST_NETNS_PREFIX;
const tag = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
const networks = [
  { name: "physnet1", subnet: "10.91.1.0/24", peerAddress: "10.91.1.1/24" },
  { name: "physnet2", bridge: "br-p2", subnet: "10.91.2.0/24" },
];
const made = new Set<string>();

async function links(netns: string): Promise<{ ifname: string; master?: string; linkinfo?: { info_kind?: string } }[]> {
  return JSON.parse((await run("ip", ["-n", netns, "-json", "-details", "link"])).stdout) as { ifname: string; master?: string; linkinfo?: { info_kind?: string } }[];
}

async function netnsExists(netns: string): Promise<boolean> {
  const out = (await run("ip", ["netns", "list"])).stdout;
  return out.split("\n").some((l) => l.split(" ")[0] === netns);
}

after(async () => {
  for (const name of made) await destroyFabric(name, { prefix });
});

describe("lab fabric", { timeout: 40_000 }, () => {
  it("creates bridges and peers in its own namespace, idempotently, and destroys them leaving nothing", async () => {
    const name = `f${tag}`;
    made.add(name);
    const f = await createFabric({ name, networks, prefix });
    assert.equal(f.netns, `ferry-t-${name}`);
    const again = await createFabric({ name, networks, prefix });
    assert.deepEqual(again, f);

    const ls = await links(f.netns);
    const byName = new Map(ls.map((l) => [l.ifname, l]));
    assert.equal(byName.get("br-physnet1")?.linkinfo?.info_kind, "bridge");
    assert.equal(byName.get("br-p2")?.linkinfo?.info_kind, "bridge");
    assert.equal(byName.get("pb-physnet1")?.master, "br-physnet1");
    assert.equal(byName.get("pb-physnet2")?.master, "br-p2");
    assert.equal(byName.get("pe-physnet1")?.linkinfo?.info_kind, "veth");
    assert.equal(ls.length, 7, ls.map((l) => l.ifname).join(","));

    await addTap(f, "physnet1", "lt0", { prefix, learning: false });
    await addTap(f, "physnet1", "lt0", { prefix, learning: false });
    const s = await describeFabric(name, { prefix });
    assert.equal(s.exists, true);
    const n1 = s.networks.find((n) => n.name === "physnet1");
    assert.deepEqual(n1?.peer, { ifname: "pe-physnet1", port: "pb-physnet1", addresses: ["10.91.1.1/24"], up: true, attached: true });
    assert.deepEqual(n1?.ports.map((p) => [p.ifname, p.kind]), [["lt0", "tap"]]);
    assert.equal(s.networks.find((n) => n.name === "physnet2")?.peer?.addresses[0], "10.91.2.1/24");
    assert.deepEqual(await openFabric(name, { prefix }), f);
    await deleteTap(f, "lt0");
    await deleteTap(f, "lt0");

    const d = await destroyFabric(name, { prefix });
    assert.deepEqual(d, { netns: f.netns, existed: true, pidsInside: [] });
    assert.equal(await netnsExists(f.netns), false);
    assert.deepEqual(await destroyFabric(name, { prefix }), { netns: f.netns, existed: false, pidsInside: [] });
    assert.equal((await describeFabric(name, { prefix })).exists, false);
  });

  it("the switch never answers ARP for the peer and keeps its own MAC while ports come and go", async () => {
    // issue 20 finding 5: the bridge answered the guests' ARP for the peer with a MAC borrowed from a guest's tap
    const name = `a${tag}`;
    made.add(name);
    const f = await createFabric({ name, networks: networks.slice(0, 1), prefix });
    // a stand-in host: a namespace of this test's own with one veth into the bridge, like a guest NIC
    const hostNs = `${prefix}${name}h`;
    await run("ip", ["netns", "add", hostNs]);
    try {
      await run("ip", ["-n", f.netns, "link", "add", "name", "ah0", "type", "veth", "peer", "name", "ahp"]);
      await run("ip", ["-n", f.netns, "link", "set", "dev", "ahp", "netns", hostNs]);
      await run("ip", ["-n", f.netns, "link", "set", "dev", "ah0", "master", "br-physnet1", "up"]);
      await run("ip", ["-n", hostNs, "addr", "add", "10.91.1.20/24", "dev", "ahp"]);
      await run("ip", ["-n", hostNs, "link", "set", "dev", "ahp", "up"]);
      // a tap whose MAC is lower than any other port's: a bridge without a MAC of its own would take it
      await addTap(f, "physnet1", "lt1", { prefix });
      await run("ip", ["-n", f.netns, "link", "set", "dev", "lt1", "address", "00:00:5e:00:53:01"]);
      const st = await describeFabric(name, { prefix });
      const net = st.networks[0]!;
      assert.equal(net.bridgeMac, bridgeMac("physnet1"));
      assert.deepEqual(net.bridgeAddresses, [], "a switch has no address on the guests' network");

      const peMac = ((await links(f.netns)).find((l) => l.ifname === "pe-physnet1") as { address?: string } | undefined)?.address;
      assert.ok(peMac, "the peer's veth has a MAC");
      // Who answers ARP for the peer's address, as an operator would ask: every reply names its sender's MAC.
      const arp = await run("ip", ["netns", "exec", hostNs, "arping", "-c", "3", "-w", "5", "-I", "ahp", "10.91.1.1"], { allowFailure: true, timeoutMs: 10_000 });
      const repliers = [...arp.stdout.matchAll(/reply from 10\.91\.1\.1 \[([0-9A-Fa-f:]{17})\]/g)].map((m) => m[1]!.toLowerCase());
      assert.ok(repliers.length >= 3, `3 ARP requests, 3 replies at least: ${arp.stdout}${arp.stderr}`);
      assert.deepEqual([...new Set(repliers)], [peMac], `only the peer answers ARP for its address, never the bridge (${net.bridgeMac}): ${arp.stdout}`);
      const ping = await run("ip", ["netns", "exec", hostNs, "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.91.1.1"], { allowFailure: true, timeoutMs: 10_000 });
      assert.equal(ping.code, 0, `the peer answers: ${ping.stdout}${ping.stderr}`);
      const neigh = JSON.parse((await run("ip", ["-n", hostNs, "-json", "neigh", "show", "10.91.1.1"])).stdout) as { lladdr?: string }[];
      assert.deepEqual(neigh.map((n) => n.lladdr), [peMac], "the host learned the peer's own MAC");

      await deleteTap(f, "lt1");
      assert.equal((await describeFabric(name, { prefix })).networks[0]?.bridgeMac, bridgeMac("physnet1"), "deleting a port does not change the bridge's MAC");
    } finally {
      await run("ip", ["netns", "del", hostNs], { allowFailure: true });
      await destroyFabric(name, { prefix });
    }
  });

  it("a fabric left by a crashed process is destroyed by name alone", async () => {
    const name = `c${tag}`;
    made.add(name);
    const mod = new URL("../../src/lab/fabric.ts", import.meta.url).href;
    const code = `import { createFabric } from ${JSON.stringify(mod)};
await createFabric({ name: ${JSON.stringify(name)}, prefix: "ferry-t-", networks: ${JSON.stringify(networks)} });
process.kill(process.pid, "SIGKILL");`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const signal = await new Promise<string | null>((resolve) => child.once("exit", (_code, sig) => resolve(sig)));
    assert.equal(signal, "SIGKILL", stderr);
    assert.ok(await netnsExists(`ferry-t-${name}`));

    const d = await destroyFabric(name, { prefix });
    assert.equal(d.existed, true);
    assert.equal(await netnsExists(`ferry-t-${name}`), false);
    assert.ok(!(await listNetns()).includes(`ferry-t-${name}`));
  });

  it("a real guest on a tap is probed from the peer across the bridge", async () => {
    const name = `g${tag}`;
    made.add(name);
    const f: Fabric = await createFabric({ name, networks: networks.slice(0, 1), prefix });
    const r = await rig();
    let pid: number | undefined;
    try {
      const guestMac = mac(0x31);
      await addTap(f, "physnet1", "lg0", { prefix });
      const base = await guestSpec("lab-probe", []);
      const spec = {
        ...base,
        cmdline: guestCmdline("lab-probe", [{ mac: guestMac, cidr: "10.91.1.10/24" }]),
        nics: [{ name: "net0", mode: "emulated" as const, mac: guestMac, network: "physnet1", standby: { kind: "tap" as const, ifname: "lg0" }, guestPorts: { standby: 1 } }],
      };
      const inst = await r.start(spec, { netns: f.netns });
      pid = inst.pid;
      await waitForConsole(inst.paths.serialLog, /ferry-net \S+ 52:54:00:fe:00:31 10\.91\.1\.10 up/, { timeoutMs: 25_000 });

      // warm up: the first reply (ARP both ways) may take a moment
      const warm = await startProbe({ netns: f.netns, target: "10.91.1.10" });
      await warm.waitReply(0, { timeoutMs: 5_000 });
      await warm.stop();

      // default pinger (busybox): one request every 10 ms
      const probe = await startProbe({ netns: f.netns, target: "10.91.1.10", intervalMs: 10 });
      await new Promise((res) => setTimeout(res, 3_000));
      const res = await probe.stop();
      const expected = res.durationMs / 10;
      assert.ok(res.probes >= expected * 0.85 && res.probes <= expected * 1.05, `probes ${res.probes} for ${res.durationMs} ms`);
      assert.ok(res.lost <= Math.max(3, res.probes * 0.02), JSON.stringify(res));
      assert.ok(res.longestGapMs < 200, JSON.stringify(res));

      // iputils, where installed: -D receive times; it sends every ≈ 16 ms when asked for 10 (see probe.ts)
      let ires: Awaited<ReturnType<typeof probe.stop>> | undefined;
      if ((await run("ping", ["-V"], { allowFailure: true }).catch(() => undefined))?.code === 0) {
        const ip = await startProbe({ netns: f.netns, target: "10.91.1.10", pinger: "iputils" });
        await new Promise((res) => setTimeout(res, 1_000));
        ires = await ip.stop();
        assert.ok(ires.probes >= 40 && ires.lost <= Math.max(3, ires.probes * 0.02), JSON.stringify(ires));
      }

      const status = await describeFabric(name, { prefix });
      assert.ok(status.pids.includes(inst.pid), `QEMU ${inst.pid} in ${JSON.stringify(status.pids)}`);
      console.log(`probe: ${JSON.stringify(res)}; iputils: ${JSON.stringify(ires)}`);
    } finally {
      await r.cleanup();
      await destroyFabric(name, { prefix });
    }
    assert.ok(pid !== undefined);
    assert.equal(await processAlive(pid), false);
    assert.equal(await netnsExists(f.netns), false);
  });
});
