// The plan of an apart lab's hosts and cables (pure): names, addresses and
// the iproute2 commands. Each host is a network namespace of its own,
// `ferry-lab-<lab>-<host>`, cabled like a machine in a rack:
// - management network: a bridge in the root namespace (`fm<hash>`, the
//   controller's and the CLI's side, the only address the root namespace
//   gets) and a veth per host (`fm<hash>-<i>` in the root namespace, `mgmt0`
//   in the host, with the host's address);
// - migration network: a bridge `sw-mig` without an address in the lab's
//   switch namespace (`ferry-lab-<lab>`, the fabric's) and a veth per host
//   (`mg-<host>` on the bridge, `mig0` in the host, with its address);
// - per physical network: inside each host a bridge `br-<net>` (the PF's
//   embedded switch: the agent attaches its taps there) and an uplink veth
//   (`up-<net>` in the host, `u<i>-<net>` in the switch namespace on the
//   fabric's `br-<net>`, where the peer endpoint sits).
// The switch rules of the fabric (fabric.ts) hold in the hosts too: bridges
// without an address and with a fixed MAC of their own, strict ARP, no IPv6.
// No host gets a default route: a host reaches the management subnet and the
// migration subnet, nothing else. Subnets are /24s derived from the lab's
// name (10.200-224.x for management, 10.225-249.x for migration; the
// physical networks' guest subnets are 10.100-199.x), moved on when the root
// namespace already has an address in them.
// Everything is found again by name: the root namespace's links carry
// `ferry-lab <lab> …` as their alias, the migration bridge `ferry-labnet …`
// (so the fabric does not take it for a physical network).
import { createHash } from "node:crypto";
import { FerryError, invalid } from "../core/errors.ts";
import * as v from "../model/validate.ts";
import { cmd } from "./fabric-commands.ts";
import type { Cmd } from "./fabric-commands.ts";
import { fabricNetns, ifnameFor, intToIp, LAB_NET_ALIAS_TAG, LAB_NETNS_PREFIX, parseCidr } from "./fabric-plan.ts";
import type { Cidr, NetnsPrefix } from "./fabric-plan.ts";

export const MGMT_IF = "mgmt0";
export const MIG_IF = "mig0";
export const MIG_BRIDGE = "sw-mig";
/** Root-namespace links of an apart lab carry `ferry-lab <lab> <role>` as their alias. */
export const LAB_LINK_TAG = "ferry-lab";
/** The port every apart host's agent listens on (each host has its own address). */
export const APART_AGENT_PORT = 7601;

export interface ApartUplink {
  network: string;
  /** The bridge inside the host (the agent's `networks.<net>.bridge`). */
  hostBridge: string;
  hostBridgeMac: string;
  /** The uplink's end inside the host, a port of hostBridge. */
  hostIf: string;
  /** The uplink's end in the switch namespace, a port of switchBridge. */
  switchIf: string;
  switchBridge: string;
}

export interface ApartHost {
  name: string;
  /** 1-based, the host's place in the lab. */
  index: number;
  netns: string;
  mgmtIp: string;
  migIp: string;
  /** The management veth's end in the root namespace. */
  mgmtVeth: string;
  /** The migration veth's end in the switch namespace. */
  migPort: string;
  uplinks: ApartUplink[];
}

export interface ApartPlan {
  lab: string;
  switchNetns: string;
  mgmt: { bridge: string; mac: string; subnet: string; ip: string };
  mig: { bridge: string; mac: string; subnet: string };
  hosts: ApartHost[];
}

/** A host's namespace: `<prefix><lab>-<host>` (`ferry-lab-` for a lab, `ferry-t-` for a test cluster). */
export function hostNetns(lab: string, host: string, prefix: NetnsPrefix = LAB_NETNS_PREFIX): string {
  const ns = `${fabricNetns(lab, prefix)}-${v.name("host", host)}`;
  if (ns.length > 64) throw invalid("lab name", lab, "too long for a host's namespace name");
  return ns;
}

/** The lab's names are short: a hash of its name. */
const labHash = (lab: string): string => createHash("sha256").update(`ferry-lab ${lab}`).digest("hex").slice(0, 6);

const mac = (what: string): string => {
  const h = createHash("sha256").update(what).digest();
  return ["02", ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, "0"))].join(":");
};

function overlaps(a: Cidr, b: Cidr): boolean {
  const size = 2 ** (32 - Math.min(a.prefix, b.prefix));
  return Math.floor(a.addr / size) === Math.floor(b.addr / size);
}

/**
 * The lab's management and migration /24s: derived from its name, moved on
 * (third octet + 1) while an address the root namespace has (`taken`, with
 * prefix, IPv4 only) lies in one of them.
 */
export function labSubnets(lab: string, taken: readonly string[]): { mgmt: string; mig: string } {
  const h = createHash("sha256").update(`ferry-lab subnets ${lab}`).digest();
  const used = taken.map((t) => parseCidr("address", t));
  const a = 200 + (h[0]! % 25);
  for (let k = 0; k < 256; k++) {
    const b = (h[1]! + k) % 256;
    const mgmt = `10.${a}.${b}.0/24`;
    const mig = `10.${a + 25}.${b}.0/24`;
    if (!used.some((u) => overlaps(u, parseCidr("subnet", mgmt)) || overlaps(u, parseCidr("subnet", mig)))) return { mgmt, mig };
  }
  throw new FerryError("FERRY_ERR_CONFLICT", `lab ${lab}: no free /24 in 10.${a}.0.0/16 for its management network (the root namespace has addresses in all of them)`);
}

const hostAddr = (subnet: string, index: number): string => intToIp(parseCidr("subnet", subnet).addr + 10 + index);

export interface ApartInput {
  lab: string;
  hosts: readonly string[];
  networks: readonly { name: string; bridge: string }[];
  /** The namespaces' prefix (the fabric's too): `ferry-lab-` (default) or `ferry-t-` (tests). */
  prefix?: NetnsPrefix;
}

export function planApart(o: ApartInput & { taken: readonly string[] }): ApartPlan {
  const h = labHash(o.lab);
  const { mgmt, mig } = labSubnets(o.lab, o.taken);
  const switchNetns = fabricNetns(o.lab, o.prefix);
  return {
    lab: o.lab,
    switchNetns,
    mgmt: { bridge: `fm${h}`, mac: mac(`ferry-lab mgmt ${o.lab}`), subnet: mgmt, ip: intToIp(parseCidr("subnet", mgmt).addr + 1) },
    mig: { bridge: MIG_BRIDGE, mac: mac(`ferry-lab mig ${o.lab}`), subnet: mig },
    hosts: o.hosts.map((name, i) => ({
      name,
      index: i + 1,
      netns: hostNetns(o.lab, name, o.prefix),
      mgmtIp: hostAddr(mgmt, i + 1),
      migIp: hostAddr(mig, i + 1),
      mgmtVeth: `fm${h}-${i + 1}`,
      migPort: v.ifname("migration port", `mg-${name}`),
      uplinks: o.networks.map((n) => ({
        network: n.name,
        hostBridge: n.bridge,
        hostBridgeMac: mac(`ferry-lab host bridge ${name} ${n.name}`),
        hostIf: ifnameFor("up", n.name),
        switchIf: ifnameFor(`u${i + 1}`, n.name),
        switchBridge: n.bridge,
      })),
    })),
  };
}

const ip = (...args: string[]): Cmd => ({ file: "ip", args });
const nsArgs = (netns: string | null): string[] => (netns === null ? [] : ["-n", v.name("netns", netns)]);
const bridgeAdd = (netns: string | null, name: string, m: string): Cmd =>
  ip(...nsArgs(netns), "link", "add", "name", v.ifname("bridge", name), "address", v.mac("mac", m), "type", "bridge", "stp_state", "0", "forward_delay", "0");
const alias = (netns: string | null, dev: string, text: string): Cmd => ip(...nsArgs(netns), "link", "set", "dev", v.ifname("dev", dev), "alias", text);
/** No IPv6 link-local on the root namespace's lab links (the hosts have IPv6 off). */
const noAddrGen = (dev: string): Cmd => ({ ...ip("link", "set", "dev", v.ifname("dev", dev), "addrgenmode", "none"), optional: true });
const up = (netns: string | null, dev: string): Cmd => ip(...nsArgs(netns), "link", "set", "dev", v.ifname("dev", dev), "up");
const master = (netns: string | null, dev: string, bridge: string): Cmd => ip(...nsArgs(netns), "link", "set", "dev", v.ifname("dev", dev), "master", v.ifname("bridge", bridge), "up");
/** A veth whose `peer` end is created straight in `peerNetns`. */
const vethInto = (netns: string | null, end: string, peer: string, peerNetns: string): Cmd =>
  ip(...nsArgs(netns), "link", "add", "name", v.ifname("veth", end), "type", "veth", "peer", "name", v.ifname("veth", peer), "netns", v.name("netns", peerNetns));
const addr = (netns: string, dev: string, cidr: string): Cmd => ip(...nsArgs(netns), "addr", "replace", cidr, "dev", v.ifname("dev", dev));

/** The root namespace's management bridge and the migration bridge (in the switch namespace, made by createFabric before). */
export function apartSharedCommands(p: ApartPlan): Cmd[] {
  return [
    bridgeAdd(null, p.mgmt.bridge, p.mgmt.mac),
    alias(null, p.mgmt.bridge, `${LAB_LINK_TAG} ${p.lab} mgmt ${p.mgmt.subnet}`),
    noAddrGen(p.mgmt.bridge),
    ip("addr", "replace", `${p.mgmt.ip}/24`, "dev", p.mgmt.bridge),
    up(null, p.mgmt.bridge),
    bridgeAdd(p.switchNetns, p.mig.bridge, p.mig.mac),
    alias(p.switchNetns, p.mig.bridge, `${LAB_NET_ALIAS_TAG} migration ${p.mig.subnet}`),
    up(p.switchNetns, p.mig.bridge),
  ];
}

/** One host: its namespace and its three kinds of cable. */
export function apartHostCommands(p: ApartPlan, h: ApartHost): Cmd[] {
  const cmds: Cmd[] = [cmd.netnsAdd(h.netns), cmd.noIpv6(h.netns), cmd.arpStrict(h.netns), cmd.linkUp(h.netns, "lo")];
  cmds.push(
    vethInto(null, h.mgmtVeth, MGMT_IF, h.netns),
    alias(null, h.mgmtVeth, `${LAB_LINK_TAG} ${p.lab} ${h.name}`),
    noAddrGen(h.mgmtVeth),
    master(null, h.mgmtVeth, p.mgmt.bridge),
    addr(h.netns, MGMT_IF, `${h.mgmtIp}/24`),
    up(h.netns, MGMT_IF),
    vethInto(p.switchNetns, h.migPort, MIG_IF, h.netns),
    master(p.switchNetns, h.migPort, p.mig.bridge),
    addr(h.netns, MIG_IF, `${h.migIp}/24`),
    up(h.netns, MIG_IF),
  );
  for (const u of h.uplinks) {
    cmds.push(
      bridgeAdd(h.netns, u.hostBridge, u.hostBridgeMac),
      up(h.netns, u.hostBridge),
      vethInto(p.switchNetns, u.switchIf, u.hostIf, h.netns),
      master(p.switchNetns, u.switchIf, u.switchBridge),
      master(h.netns, u.hostIf, u.hostBridge),
    );
  }
  return cmds;
}

/** The root-namespace links of lab `lab` (by their alias): what `down` deletes. */
export function labRootLinks(links: readonly { ifname: string; alias: string | undefined }[], lab: string): string[] {
  return links.filter((l) => {
    const a = l.alias?.split(" ");
    return a?.[0] === LAB_LINK_TAG && a[1] === lab;
  }).map((l) => l.ifname);
}

/**
 * The host namespaces of lab `lab` among `names` (`ferry-lab-<lab>-host<N>`;
 * `hosts`: which host names to take, by default a lab's host<N>, so a lab
 * named `<lab>-x` is not taken for one of lab `<lab>`'s hosts).
 */
export function labHostNetns(names: readonly string[], lab: string, o: { prefix?: NetnsPrefix; hosts?: RegExp } = {}): string[] {
  const prefix = `${fabricNetns(lab, o.prefix)}-`;
  const hosts = o.hosts ?? /^host\d+$/;
  return names.filter((n) => n.startsWith(prefix) && hosts.test(n.slice(prefix.length)));
}
