import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { cmd, fabricCommands } from "./fabric-commands.ts";
import { bridgeMac, planFabric } from "./fabric-plan.ts";

const physnet1 = { name: "physnet1", subnet: "10.91.1.0/24", peerAddress: "10.91.1.1/24" };

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
