import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { apartHostCommands, apartSharedCommands, hostNetns, labHostNetns, labRootLinks, labSubnets, planApart } from "./lab-hosts-plan.ts";

const plan = (taken: string[] = []) => planApart({ lab: "t1", hosts: ["host1", "host2"], networks: [{ name: "physnet1", bridge: "br-physnet1" }], taken });

describe("apart lab plan", () => {
  it("names each host's namespace after the lab and gives it addresses on both networks", () => {
    const p = plan();
    assert.equal(p.switchNetns, "ferry-lab-t1");
    assert.deepEqual(p.hosts.map((h) => h.netns), ["ferry-lab-t1-host1", "ferry-lab-t1-host2"]);
    assert.match(p.mgmt.subnet, /^10\.2[0-2]\d\.\d+\.0\/24$/);
    assert.equal(p.mgmt.ip, p.mgmt.subnet.replace(/0\/24$/, "1"));
    assert.equal(p.hosts[1]!.mgmtIp, p.mgmt.subnet.replace(/0\/24$/, "12"));
    assert.equal(p.hosts[1]!.migIp, p.mig.subnet.replace(/0\/24$/, "12"));
    assert.ok(p.hosts.every((h) => h.mgmtVeth.length <= 15 && h.uplinks.every((u) => u.hostIf.length <= 15 && u.switchIf.length <= 15)));
    assert.notEqual(p.hosts[0]!.uplinks[0]!.hostBridgeMac, p.hosts[1]!.uplinks[0]!.hostBridgeMac, "each host's bridge has a MAC of its own");
    assert.deepEqual(plan(), p, "the same lab, the same plan");
  });

  it("moves its subnets off addresses the root namespace already has", () => {
    const first = labSubnets("t1", []);
    const next = labSubnets("t1", [first.mgmt.replace(/0\/24$/, "7/24")]);
    assert.notEqual(next.mgmt, first.mgmt);
    assert.notEqual(labSubnets("t1", [first.mig.replace(/0\/24$/, "7/24")]).mig, first.mig);
    assert.deepEqual(labSubnets("t1", ["192.0.2.2/24", "127.0.0.1/8"]), first);
    // a /8 over everything 10.x: nothing is free
    assert.throws(() => labSubnets("t1", ["10.0.0.1/8"]), /no free \/24/);
  });

  it("cables with argv commands only: no default route, no address on a bridge but the root's management bridge", () => {
    const p = plan();
    const cmds = [...apartSharedCommands(p), ...p.hosts.flatMap((h) => apartHostCommands(p, h))];
    assert.ok(cmds.every((c) => c.file === "ip"));
    assert.ok(!cmds.some((c) => c.args.includes("route")), "no route is added anywhere");
    const addrs = cmds.filter((c) => c.args.includes("addr")).map((c) => c.args.at(-1));
    assert.deepEqual(addrs, [p.mgmt.bridge, "mgmt0", "mig0", "mgmt0", "mig0"]);
    const h1 = apartHostCommands(p, p.hosts[0]!).map((c) => c.args.join(" "));
    assert.ok(h1.includes(`-n ferry-lab-t1 link add name u1-physnet1 type veth peer name up-physnet1 netns ferry-lab-t1-host1`), h1.join("\n"));
    assert.ok(h1.includes(`link set dev ${p.hosts[0]!.mgmtVeth} alias ferry-lab t1 host1`));
  });

  it("finds a lab's links and host namespaces by name, and no other lab's", () => {
    const links = [
      { ifname: "fmaaaaaa", alias: "ferry-lab t1 mgmt 10.200.1.0/24" },
      { ifname: "fmaaaaaa-1", alias: "ferry-lab t1 host1" },
      { ifname: "fmbbbbbb", alias: "ferry-lab t10 mgmt 10.200.2.0/24" },
      { ifname: "eth0", alias: undefined },
    ];
    assert.deepEqual(labRootLinks(links, "t1"), ["fmaaaaaa", "fmaaaaaa-1"]);
    assert.deepEqual(labHostNetns(["ferry-lab-t1", "ferry-lab-t1-host1", "ferry-lab-t1-host12", "ferry-lab-t10-host1", "ferry-lab-t1-x"], "t1"), ["ferry-lab-t1-host1", "ferry-lab-t1-host12"]);
    assert.equal(hostNetns("t1", "host3"), "ferry-lab-t1-host3");
  });

  it("plans a test cluster's hosts under the test prefix, with the test's own host names", () => {
    const p = planApart({ lab: "fm-1-ab", hosts: ["host-a"], networks: [], taken: [], prefix: "ferry-t-" });
    assert.equal(p.switchNetns, "ferry-t-fm-1-ab");
    assert.deepEqual(p.hosts.map((h) => h.netns), ["ferry-t-fm-1-ab-host-a"]);
    const names = ["ferry-t-fm-1-ab", "ferry-t-fm-1-ab-host-a", "ferry-lab-fm-1-ab-host-b", "ferry-t-fm-1-abc-host-a"];
    assert.deepEqual(labHostNetns(names, "fm-1-ab", { prefix: "ferry-t-" }), [], "a lab's host<N> pattern by default");
    assert.deepEqual(labHostNetns(names, "fm-1-ab", { prefix: "ferry-t-", hosts: /^host-[a-z]$/ }), ["ferry-t-fm-1-ab-host-a"]);
  });
});
