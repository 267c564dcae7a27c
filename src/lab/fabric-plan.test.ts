import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { bridgeMac, fabricNetns, planFabric, planNetwork } from "./fabric-plan.ts";

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
