import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isFerryError } from "../core/errors.ts";
import {
  bridgeFdbDel,
  bridgeFdbReplace,
  bridgeFdbShow,
  bridgeLinkSet,
  bridgeVlanAdd,
  bridgeVlanDel,
  bridgeVlanShow,
  ipLinkClearVfMac,
  ipLinkSetVf,
  ipLinkShow,
  parseBridgeFdb,
  parseBridgePort,
  parseBridgeVlans,
  parseVfInfo,
  parseVlanFiltering,
} from "./iproute.ts";

// `ip -json -d link show dev enp59s0f0` on an ixgbe PF with 3 VFs (iproute2 6.1 shape, trimmed).
const VFINFO = `[{"ifindex":4,"ifname":"enp59s0f0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"mq","operstate":"UP","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"ether","address":"3c:fd:fe:a1:b2:c0","broadcast":"ff:ff:ff:ff:ff:ff","promiscuity":0,"min_mtu":68,"max_mtu":9710,"num_vf":3,"vfinfo_list":[{"vf":0,"link_type":"ether","address":"00:00:00:00:00:00","broadcast":"ff:ff:ff:ff:ff:ff","rate":{"max_tx":0,"min_tx":0},"spoofchk":true,"link_state":"auto","trust":false,"query_rss_en":false},{"vf":1,"link_type":"ether","address":"52:54:00:AA:BB:01","broadcast":"ff:ff:ff:ff:ff:ff","vlan_list":[{"vlan":100,"qos":3,"protocol":"802.1Q"}],"rate":{"max_tx":0,"min_tx":0},"spoofchk":false,"link_state":"auto","trust":true,"query_rss_en":false},{"vf":2,"link_type":"ether","address":"52:54:00:aa:bb:02","broadcast":"ff:ff:ff:ff:ff:ff","vlan":7,"qos":0}],"num_tx_queues":64,"num_rx_queues":64,"parentbus":"pci","parentdev":"0000:3b:00.0"}]`;

describe("iproute2 builders", () => {
  test("VF setup, MAC filter clearing and link show build the argv iproute2 expects", () => {
    assert.deepEqual(ipLinkSetVf("enp59s0f0", 3, { mac: "52:54:00:12:34:56", vlan: 100, spoofchk: true, trust: false }), {
      file: "ip",
      args: ["link", "set", "dev", "enp59s0f0", "vf", "3", "mac", "52:54:00:12:34:56", "vlan", "100", "spoofchk", "on", "trust", "off"],
    });
    assert.deepEqual(ipLinkSetVf("enp59s0f0", 0, { mac: "00:00:00:00:00:00", vlan: 0 }).args, ["link", "set", "dev", "enp59s0f0", "vf", "0", "mac", "00:00:00:00:00:00", "vlan", "0"]);
    assert.deepEqual(ipLinkClearVfMac("enp59s0f0", 5).args, ["link", "set", "dev", "enp59s0f0", "vf", "5", "mac", "00:00:00:00:00:00"]);
    assert.deepEqual(ipLinkShow("br0", { netns: "ferry-lab" }), { file: "ip", args: ["-n", "ferry-lab", "-json", "-d", "link", "show", "dev", "br0"] });
  });

  test("bridge VLAN, fdb and port flag commands, in a namespace or not", () => {
    const ns = { netns: "lab1" };
    assert.deepEqual(bridgeVlanAdd("tap0", 100, { pvid: true, untagged: true }, ns), { file: "bridge", args: ["-n", "lab1", "vlan", "add", "dev", "tap0", "vid", "100", "pvid", "untagged"] });
    assert.deepEqual(bridgeVlanDel("tap0", 1).args, ["vlan", "del", "dev", "tap0", "vid", "1"]);
    assert.deepEqual(bridgeVlanShow("tap0").args, ["-json", "vlan", "show", "dev", "tap0"]);
    assert.deepEqual(bridgeFdbReplace("52:54:00:12:34:56", "tap1", ns).args, ["-n", "lab1", "fdb", "replace", "52:54:00:12:34:56", "dev", "tap1", "master", "static"]);
    assert.deepEqual(bridgeFdbDel("52:54:00:12:34:56", "tap1", { vlan: 10 }).args, ["fdb", "del", "52:54:00:12:34:56", "dev", "tap1", "master", "vlan", "10"]);
    assert.deepEqual(bridgeFdbShow({ bridge: "br0" }).args, ["-json", "fdb", "show", "br", "br0"]);
    assert.deepEqual(bridgeLinkSet("tap1", { learning: false, flood: true }).args, ["link", "set", "dev", "tap1", "learning", "off", "flood", "on"]);
    assert.deepEqual(bridgeLinkSet("tap1", { flood: false }).args, ["link", "set", "dev", "tap1", "flood", "off"]);
  });

  test("hostile or malformed values are refused before anything runs", () => {
    const bad = (f: () => unknown): void => assert.throws(f, (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"));
    bad(() => ipLinkSetVf("eth0; reboot", 0, { mac: "52:54:00:12:34:56", vlan: 0 }));
    bad(() => ipLinkSetVf("eth0", 0, { mac: "01:00:5e:00:00:01", vlan: 0 })); // multicast
    bad(() => ipLinkSetVf("eth0", 0, { mac: "52:54:00:12:34:56", vlan: 4095 }));
    bad(() => ipLinkSetVf("eth0", -1, { mac: "52:54:00:12:34:56", vlan: 0 }));
    bad(() => bridgeFdbReplace("52:54:00:12:34:56", "-all"));
    bad(() => bridgeVlanAdd("tap0", 0));
    bad(() => bridgeLinkSet("tap0", {}));
    bad(() => ipLinkShow("br0", { netns: "../x" }));
  });
});

describe("iproute2 JSON parsing", () => {
  test("a VF's settings from vfinfo_list: MAC, VLAN (vlan_list or legacy), spoof check, trust", () => {
    assert.deepEqual(parseVfInfo(VFINFO, 0), { mac: "00:00:00:00:00:00", vlan: 0, spoofchk: true, trust: false });
    assert.deepEqual(parseVfInfo(VFINFO, 1), { mac: "52:54:00:aa:bb:01", vlan: 100, qos: 3, spoofchk: false, trust: true });
    assert.deepEqual(parseVfInfo(VFINFO, 2), { mac: "52:54:00:aa:bb:02", vlan: 7 });
  });

  test("no such VF, no vfinfo_list, or not JSON: a clear FERRY_ERR_COMMAND", () => {
    const err = (f: () => unknown, re: RegExp): void => assert.throws(f, (e: unknown) => isFerryError(e, "FERRY_ERR_COMMAND") && re.test(e.message));
    err(() => parseVfInfo(VFINFO, 9), /no VF 9/);
    err(() => parseVfInfo(`[{"ifname":"eth0","mtu":1500}]`, 0), /eth0 has no vfinfo_list/);
    err(() => parseVfInfo("Device \"x\" does not exist.", 0), /not JSON/);
    err(() => parseVfInfo(`[]`, 0), /non-empty array/);
  });

  test("bridge VLANs (with ranges), fdb entries, port flags and VLAN filtering", () => {
    const vlans = `[{"ifname":"tap0","vlans":[{"vlan":1,"flags":["Egress Untagged"]},{"vlan":100,"flags":["PVID","Egress Untagged"]},{"vlan":200,"vlanEnd":202}]}]`;
    assert.deepEqual(parseBridgeVlans(vlans, "tap0"), [
      { vid: 1, pvid: false, untagged: true },
      { vid: 100, pvid: true, untagged: true },
      { vid: 200, pvid: false, untagged: false },
      { vid: 201, pvid: false, untagged: false },
      { vid: 202, pvid: false, untagged: false },
    ]);
    assert.deepEqual(parseBridgeVlans("[]", "tap0"), []);
    const fdb = `[{"mac":"33:33:00:00:00:01","ifname":"br0","flags":["self"],"state":"permanent"},{"mac":"52:54:00:12:34:56","ifname":"tap0","flags":[],"master":"br0","state":"static"}]`;
    assert.deepEqual(parseBridgeFdb(fdb)[1], { mac: "52:54:00:12:34:56", ifname: "tap0", master: "br0", vlan: null, state: "static", flags: [] });
    assert.deepEqual(parseBridgePort(`[{"ifindex":3,"ifname":"tap0","master":"br0","state":"disabled","learning":false,"flood":true}]`), { learning: false, flood: true });
    assert.equal(parseVlanFiltering(`[{"ifname":"br0","linkinfo":{"info_kind":"bridge","info_data":{"vlan_filtering":1}}}]`), true);
    assert.equal(parseVlanFiltering(`[{"ifname":"br0","linkinfo":{"info_kind":"bridge","info_data":{"vlan_filtering":0}}}]`), false);
    assert.throws(() => parseVlanFiltering(`[{"ifname":"tap0","linkinfo":{"info_kind":"tun"}}]`), (e: unknown) => isFerryError(e, "FERRY_ERR_COMMAND"));
  });
});
