import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { fabricFromStatus, fabricStatusFromLinks, parseLinks, parseNetnsList } from "./fabric-links.ts";
import { bridgeMac, planFabric } from "./fabric-plan.ts";

const physnet1 = { name: "physnet1", subnet: "10.91.1.0/24", peerAddress: "10.91.1.1/24" };

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
