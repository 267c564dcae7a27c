import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { bridgeMac, cmd, fabricCommands, fabricFromStatus, fabricNetns, fabricStatusFromLinks, parseLinks, parseNetnsList, planFabric, planNetwork } from "./fabric.ts";

const physnet1 = { name: "physnet1", subnet: "10.91.1.0/24", peerAddress: "10.91.1.1/24" };

describe("planFabric", () => {
  it("derives the namespace, bridge and peer names", () => {
    const f = planFabric({ name: "demo", networks: [physnet1] });
    assert.deepEqual(f, {
      name: "demo",
      netns: "ferry-lab-demo",
      networks: [{ name: "physnet1", bridge: "br-physnet1", subnet: "10.91.1.0/24", peerAddress: "10.91.1.1/24", peerIp: "10.91.1.1", peerIf: "pe-physnet1", peerPort: "pb-physnet1", bridgeMac: bridgeMac("physnet1") }],
    });
    assert.equal(planFabric({ name: "x", networks: [physnet1], prefix: "ferry-t-" }).netns, "ferry-t-x");
  });
  it("defaults the peer to the first host address and hashes names too long for an interface", () => {
    const n = planNetwork({ name: "a-very-long-network-name", subnet: "10.0.8.0/22" });
    assert.equal(n.peerAddress, "10.0.8.1/22");
    assert.match(n.bridge, /^br-[0-9a-f]{12}$/);
    assert.ok(n.peerIf.length <= 15 && n.peerPort.length <= 15 && n.peerIf !== n.peerPort);
  });
  it("gives each bridge a fixed, locally administered unicast MAC of its own", () => {
    const a = bridgeMac("physnet1");
    assert.match(a, /^02(:[0-9a-f]{2}){5}$/);
    assert.equal(bridgeMac("physnet1"), a, "the same after a repair or a restart");
    assert.notEqual(bridgeMac("physnet2"), a);
  });
  it("refuses bad input, naming the field", () => {
    const bad = (f: () => unknown, re: RegExp): void => assert.throws(f, (e) => isFerryError(e, "FERRY_ERR_INVALID") && re.test(e.message));
    bad(() => fabricNetns("../x"), /fabric name/);
    bad(() => fabricNetns("x", "ferry-" as "ferry-t-"), /prefix/);
    bad(() => planNetwork({ name: "n", subnet: "10.91.1.5/24" }), /not a network address.*10\.91\.1\.0\/24/);
    bad(() => planNetwork({ name: "n", subnet: "10.91.1.0/24", peerAddress: "10.91.2.1/24" }), /peerAddress/);
    bad(() => planNetwork({ name: "n", subnet: "10.91.1.0/24", peerAddress: "10.91.1.255/24" }), /peerAddress/);
    bad(() => planNetwork({ name: "n", subnet: "10.91.1.0/24", bridge: "br;rm -rf" }), /bridge/);
    bad(() => planNetwork({ name: "n", subnet: "300.1.1.0/24" }), /subnet/);
    bad(() => planFabric({ name: "f", networks: [physnet1, { name: "p2", subnet: "10.91.0.0/16" }] }), /overlaps/);
    bad(() => planFabric({ name: "f", networks: [physnet1, { name: "p2", subnet: "10.92.0.0/24", bridge: "br-physnet1" }] }), /br-physnet1/);
    bad(() => planFabric({ name: "f", networks: [] }), /at least one/);
  });
});

describe("command builders", () => {
  it("are argv arrays scoped to the namespace", () => {
    assert.deepEqual(cmd.bridgeAdd("ferry-lab-x", "br-p", "02:00:00:00:00:01"), {
      file: "ip",
      args: ["-n", "ferry-lab-x", "link", "add", "name", "br-p", "address", "02:00:00:00:00:01", "type", "bridge", "stp_state", "0", "forward_delay", "0"],
    });
    assert.deepEqual(cmd.arpStrict("ferry-lab-x").args, [
      "netns", "exec", "ferry-lab-x", "sysctl", "-q", "-w",
      "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.default.arp_ignore=1", "net.ipv4.conf.default.arp_announce=2",
    ]);
    assert.equal(cmd.arpStrict("ferry-lab-x").optional, undefined, "a fabric whose bridge may answer ARP for the peer is not made");
    assert.deepEqual(cmd.vethAdd("ferry-lab-x", "pb-p", "pe-p").args, ["-n", "ferry-lab-x", "link", "add", "name", "pb-p", "type", "veth", "peer", "name", "pe-p"]);
    assert.deepEqual(cmd.attach("ferry-lab-x", "tap0", "br-p").args, ["-n", "ferry-lab-x", "link", "set", "dev", "tap0", "master", "br-p", "up"]);
    assert.deepEqual(cmd.addrReplace("ferry-lab-x", "pe-p", "10.91.1.1/24").args, ["-n", "ferry-lab-x", "addr", "replace", "10.91.1.1/24", "dev", "pe-p"]);
    assert.deepEqual(cmd.tapAdd("ferry-lab-x", "tap0").args, ["-n", "ferry-lab-x", "tuntap", "add", "dev", "tap0", "mode", "tap"]);
    assert.deepEqual(cmd.learning("ferry-lab-x", "tap0", false).args, ["-n", "ferry-lab-x", "link", "set", "dev", "tap0", "type", "bridge_slave", "learning", "off"]);
    assert.deepEqual(cmd.netnsDel("ferry-lab-x").args, ["netns", "del", "ferry-lab-x"]);
    assert.equal(cmd.noIpv6("ferry-lab-x").optional, true);
    assert.deepEqual(cmd.neighPin("ferry-lab-x", "pe-p", "10.91.1.10", "52:54:00:00:00:01").args, [
      "-n", "ferry-lab-x", "neigh", "replace", "10.91.1.10", "lladdr", "52:54:00:00:00:01", "dev", "pe-p", "nud", "permanent",
    ]);
    assert.throws(() => cmd.tapAdd("ferry-lab-x", "a-name-longer-than-15"), (e) => isFerryError(e, "FERRY_ERR_INVALID"));
  });

  it("create adds only what is missing, and always re-asserts state", () => {
    const f = planFabric({ name: "x", networks: [physnet1] });
    const mac = bridgeMac("physnet1");
    const fresh = fabricCommands(f, new Set()).map((c) => c.args.join(" "));
    assert.deepEqual(fresh, [
      "netns exec ferry-lab-x sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
      "netns exec ferry-lab-x sysctl -q -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.default.arp_ignore=1 net.ipv4.conf.default.arp_announce=2",
      "-n ferry-lab-x link set dev lo up",
      `-n ferry-lab-x link add name br-physnet1 address ${mac} type bridge stp_state 0 forward_delay 0`,
      "-n ferry-lab-x link set dev br-physnet1 alias ferry-fabric physnet1 10.91.1.0/24",
      "-n ferry-lab-x link set dev br-physnet1 up",
      "-n ferry-lab-x link add name pb-physnet1 type veth peer name pe-physnet1",
      "-n ferry-lab-x link set dev pb-physnet1 master br-physnet1 up",
      "-n ferry-lab-x addr replace 10.91.1.1/24 dev pe-physnet1",
      "-n ferry-lab-x link set dev pe-physnet1 up",
    ]);
    const again = fabricCommands(f, new Set(["lo", "br-physnet1", "pb-physnet1", "pe-physnet1"])).map((c) => c.args.join(" "));
    assert.ok(!again.some((a) => / link add /.test(a)), again.join("\n"));
    assert.ok(again.includes(`-n ferry-lab-x link set dev br-physnet1 address ${mac}`), "an existing bridge gets its own MAC back");
    const lone = fabricCommands(f, new Set(["lo", "br-physnet1", "pe-physnet1"])).map((c) => c.args.join(" "));
    assert.ok(lone.includes("-n ferry-lab-x link del dev pe-physnet1") && lone.some((a) => a.includes("type veth")));
  });
});

// Trimmed from `ip -n NS -json -details addr show` (iproute2 6.1).
const LINKS = JSON.stringify([
  { ifindex: 1, ifname: "lo", flags: ["LOOPBACK", "UP", "LOWER_UP"], operstate: "UNKNOWN", addr_info: [{ family: "inet", local: "127.0.0.1", prefixlen: 8 }] },
  { ifindex: 2, ifname: "br-physnet1", address: bridgeMac("physnet1"), flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], operstate: "UP", linkinfo: { info_kind: "bridge", info_data: { stp_state: 0 } }, ifalias: "ferry-fabric physnet1 10.91.1.0/24", addr_info: [] },
  { ifindex: 3, link: "pb-physnet1", ifname: "pe-physnet1", flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], operstate: "UP", linkinfo: { info_kind: "veth" }, addr_info: [{ family: "inet", local: "10.91.1.1", prefixlen: 24 }] },
  { ifindex: 4, link: "pe-physnet1", ifname: "pb-physnet1", flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], master: "br-physnet1", operstate: "UP", linkinfo: { info_kind: "veth", info_slave_kind: "bridge" }, addr_info: [] },
  { ifindex: 5, ifname: "tap0", flags: ["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"], master: "br-physnet1", operstate: "DOWN", linkinfo: { info_kind: "tun", info_data: { type: "tap" }, info_slave_kind: "bridge" }, addr_info: [] },
]);

describe("parsers", () => {
  it("read links and the fabric they make", () => {
    const links = parseLinks(LINKS);
    assert.equal(links.length, 5);
    assert.deepEqual(links[2]?.addresses, ["10.91.1.1/24"]);
    const s = fabricStatusFromLinks("x", "ferry-lab-x", links, [42]);
    assert.deepEqual(s.networks, [
      {
        name: "physnet1",
        bridge: "br-physnet1",
        subnet: "10.91.1.0/24",
        bridgeUp: true,
        bridgeMac: bridgeMac("physnet1"),
        bridgeAddresses: [],
        peer: { ifname: "pe-physnet1", port: "pb-physnet1", addresses: ["10.91.1.1/24"], up: true, attached: true },
        ports: [{ ifname: "tap0", kind: "tap", up: true, operstate: "DOWN" }],
      },
    ]);
    assert.deepEqual(fabricFromStatus(s), planFabric({ name: "x", networks: [physnet1] }));
  });
  it("netns list: JSON, or nothing at all", () => {
    assert.deepEqual(parseNetnsList('[{"name":"ferry-lab-a","id":0},{"name":"other"}]'), ["ferry-lab-a", "other"]);
    assert.deepEqual(parseNetnsList(""), []);
    assert.throws(() => parseNetnsList("nope"), (e) => isFerryError(e, "FERRY_ERR_COMMAND"));
  });
});
