// The fabric's plan (pure): the namespace's name, and per network the names
// and addresses of its bridge and peer endpoint, validated as a whole (unique
// names, non-overlapping subnets). See fabric.ts for what the fabric is.
import { createHash } from "node:crypto";
import { invalid } from "../core/errors.ts";
import * as v from "../model/validate.ts";

export const LAB_NETNS_PREFIX = "ferry-lab-";
export const TEST_NETNS_PREFIX = "ferry-t-";
/** The only namespace prefixes the lab creates or deletes. */
export const NETNS_PREFIXES = [LAB_NETNS_PREFIX, TEST_NETNS_PREFIX] as const;
export type NetnsPrefix = (typeof NETNS_PREFIXES)[number];

/** Bridges made by the fabric carry `ferry-fabric <network> <subnet>` as their alias. */
export const ALIAS_TAG = "ferry-fabric";
/** Other bridges in a fabric's namespace (an apart lab's migration bridge) carry this tag: not a physical network. */
export const LAB_NET_ALIAS_TAG = "ferry-labnet";

export interface NetworkInput {
  /** Physical network name, e.g. "physnet1". */
  name: string;
  /** Bridge name; default `br-<name>` (a hash when that is too long for an interface name). */
  bridge?: string;
  /** IPv4 subnet of the network, e.g. "10.91.1.0/24". */
  subnet: string;
  /** The peer's address with prefix; default the subnet's first host address. */
  peerAddress?: string;
}

export interface FabricNetwork {
  name: string;
  bridge: string;
  subnet: string;
  /** With prefix, e.g. "10.91.1.1/24". */
  peerAddress: string;
  /** Without prefix, e.g. "10.91.1.1": what guests of this network reach the peer at. */
  peerIp: string;
  /** The veth end that holds the peer address. */
  peerIf: string;
  /** The veth end that is a port of the bridge. */
  peerPort: string;
  /** The bridge's own fixed MAC (bridgeMac). */
  bridgeMac: string;
}

export interface Fabric {
  name: string;
  netns: string;
  networks: FabricNetwork[];
}

export function fabricNetns(name: string, prefix: NetnsPrefix = LAB_NETNS_PREFIX): string {
  if (!NETNS_PREFIXES.includes(prefix)) throw invalid("prefix", prefix, `must be one of ${NETNS_PREFIXES.join(", ")}`);
  const ns = prefix + v.name("fabric name", name);
  if (ns.length > 64) throw invalid("fabric name", name, "too long for a namespace name");
  return ns;
}

/** `<tag>-<network>` if it fits an interface name, else `<tag>-<hash of network>`. */
export function ifnameFor(tag: string, network: string): string {
  const plain = `${tag}-${network}`;
  if (plain.length <= 15 && /^[a-zA-Z0-9_][a-zA-Z0-9_.-]*$/.test(plain)) return plain;
  return `${tag}-${createHash("sha256").update(network).digest("hex").slice(0, 14 - tag.length)}`;
}

export const defaultBridge = (network: string): string => ifnameFor("br", network);
export const peerIfname = (network: string): string => ifnameFor("pe", network);
export const peerPortIfname = (network: string): string => ifnameFor("pb", network);

/**
 * The bridge's own MAC: locally administered, unicast (`02:…`), derived from
 * the network's name, so it is the same after a repair or a restart and never
 * a port's. Given explicitly, the kernel keeps it whatever ports come and go.
 */
export function bridgeMac(network: string): string {
  const h = createHash("sha256").update(`ferry-fabric bridge ${network}`).digest();
  return ["02", ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, "0"))].join(":");
}

export interface Cidr {
  addr: number;
  prefix: number;
}

function ipToInt(field: string, s: string): number {
  const parts = s.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) throw invalid(field, s, "not an IPv4 address");
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export const intToIp = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");

export function parseIpv4(field: string, s: unknown): string {
  return intToIp(ipToInt(field, v.str(field, s)));
}

export function parseCidr(field: string, s: unknown): Cidr {
  const str = v.str(field, s);
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(str);
  if (!m?.[1] || !m[2] || Number(m[2]) > 32) throw invalid(field, s, "not an IPv4 prefix like 10.91.1.0/24");
  return { addr: ipToInt(field, m[1]), prefix: Number(m[2]) };
}

const blockSize = (prefix: number): number => 2 ** (32 - prefix);
const networkOf = (c: Cidr): number => c.addr - (c.addr % blockSize(c.prefix));

/** Validate a network's input and derive its names and addresses. */
export function planNetwork(n: NetworkInput, field = "network"): FabricNetwork {
  const name = v.name(`${field}.name`, n.name);
  const subnet = parseCidr(`${field}.subnet`, n.subnet);
  if (networkOf(subnet) !== subnet.addr) throw invalid(`${field}.subnet`, n.subnet, `not a network address (did you mean ${intToIp(networkOf(subnet))}/${subnet.prefix}?)`);
  if (subnet.prefix > 30) throw invalid(`${field}.subnet`, n.subnet, "too small for a peer and a guest (at most /30)");
  const peer = n.peerAddress === undefined ? { addr: subnet.addr + 1, prefix: subnet.prefix } : parseCidr(`${field}.peerAddress`, n.peerAddress);
  const last = subnet.addr + blockSize(subnet.prefix) - 1;
  if (peer.prefix !== subnet.prefix || peer.addr <= subnet.addr || peer.addr >= last) {
    throw invalid(`${field}.peerAddress`, n.peerAddress, `must be a host address in ${n.subnet} with the same prefix`);
  }
  const bridge = n.bridge === undefined ? defaultBridge(name) : v.ifname(`${field}.bridge`, n.bridge);
  return {
    name,
    bridge,
    subnet: `${intToIp(subnet.addr)}/${subnet.prefix}`,
    peerAddress: `${intToIp(peer.addr)}/${peer.prefix}`,
    peerIp: intToIp(peer.addr),
    peerIf: peerIfname(name),
    peerPort: peerPortIfname(name),
    bridgeMac: bridgeMac(name),
  };
}

/** The whole fabric, validated: unique network names, bridges, interface names and non-overlapping subnets. */
export function planFabric(o: { name: string; networks: readonly NetworkInput[]; prefix?: NetnsPrefix }): Fabric {
  const netns = fabricNetns(o.name, o.prefix);
  if (o.networks.length === 0) throw invalid("networks", o.networks, "a fabric needs at least one network");
  const networks = o.networks.map((n, i) => planNetwork(n, `networks[${i}]`));
  const ifnames = new Map<string, string>();
  networks.forEach((n, i) => {
    for (const ifn of [n.bridge, n.peerIf, n.peerPort]) {
      const other = ifnames.get(ifn);
      if (other !== undefined) throw invalid(`networks[${i}]`, n.name, `interface name ${ifn} is also used by network ${other}`);
      ifnames.set(ifn, n.name);
    }
    for (const m of networks.slice(0, i)) {
      if (cidrsOverlap(parseCidr("subnet", n.subnet), parseCidr("subnet", m.subnet))) {
        throw invalid(`networks[${i}].subnet`, n.subnet, `overlaps ${m.subnet} of network ${m.name}`);
      }
    }
  });
  return { name: o.name, netns, networks };
}

function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return networkOf({ addr: a.addr, prefix: p }) === networkOf({ addr: b.addr, prefix: p });
}
