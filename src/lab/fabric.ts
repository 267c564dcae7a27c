// The lab's network fabric: everything inside ONE network namespace of the
// lab's own, `ferry-lab-<name>` (tests: `ferry-t-<name>`), so no frame of the
// lab ever touches the machine's own network.
//
// Per physical network: a Linux bridge (the network's "switch"), and a *peer
// endpoint*: a veth pair whose one end (`pb-<net>`) is a bridge port and whose
// other end (`pe-<net>`) holds the peer address. A probe from the peer to a
// guest leaves through `pe-<net>` (the connected route of the peer address),
// enters the bridge on `pb-<net>` and is forwarded to the guest's tap like
// frames from an external host; the answer comes back the same way.
//
// The switch must behave like a switch, not like a host on the guests'
// network (issue 20, finding 5):
// - A bridge has no IP address, and the namespace answers ARP only on the
//   interface that holds the asked-for address (`arp_ignore=1`) and asks with
//   that interface's address (`arp_announce=2`). Without that the bridge
//   device, being a local interface of the namespace that holds the peer
//   address, answered the guests' ARP for the peer too — with its own MAC,
//   and first, so guests sent the peer's traffic to the bridge.
// - Each bridge has a fixed MAC of its own (locally administered, derived
//   from its network's name). A Linux bridge without one takes the lowest MAC
//   of its ports — often a guest tap's, which a migration deletes: the bridge
//   then changed its MAC, and a guest that had the old one in its ARP cache
//   sent into the void until that entry went stale (25–48 s after 19 of 20
//   ping-pong migrations).
// So the peer answers only on its own veth, with its own MAC, and nothing a
// migration adds or deletes changes what the guests have learned.
//
// One namespace is enough for that: the bridge has no IP address, the peer
// addresses of different networks are in different subnets and IP forwarding
// is off in a fresh namespace, so the namespace's IP stack reaches each subnet
// only through its peer end.
//
// Everything the fabric is can be read back from the kernel by name: each
// bridge carries its network name and subnet in its alias, so
// describeFabric/destroyFabric need no in-memory state and work after a crash.
import { createHash } from "node:crypto";
import { FerryError, invalid } from "../core/errors.ts";
import { run as defaultRun } from "../core/run.ts";
import type { Runner } from "../core/run.ts";
import * as v from "../model/validate.ts";

export const LAB_NETNS_PREFIX = "ferry-lab-";
export const TEST_NETNS_PREFIX = "ferry-t-";
/** The only namespace prefixes the lab creates or deletes. */
export const NETNS_PREFIXES = [LAB_NETNS_PREFIX, TEST_NETNS_PREFIX] as const;
export type NetnsPrefix = (typeof NETNS_PREFIXES)[number];

/** Bridges made by the fabric carry `ferry-fabric <network> <subnet>` as their alias. */
const ALIAS_TAG = "ferry-fabric";

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

export interface FabricOptions {
  /** Namespace prefix: `ferry-lab-` (default) or `ferry-t-` (tests). */
  prefix?: NetnsPrefix;
  signal?: AbortSignal;
  run?: Runner;
}

export interface CreateFabricOptions extends FabricOptions {
  name: string;
  networks: readonly NetworkInput[];
}

/** An iproute2 (or sysctl) command, as an argv array. */
export interface Cmd {
  file: "ip";
  args: string[];
  /** A failure is not an error (e.g. no IPv6 sysctls on an IPv6-less kernel). */
  optional?: boolean;
}

// ---------------------------------------------------------------------------
// Names and addresses (pure)

export function fabricNetns(name: string, prefix: NetnsPrefix = LAB_NETNS_PREFIX): string {
  if (!NETNS_PREFIXES.includes(prefix)) throw invalid("prefix", prefix, `must be one of ${NETNS_PREFIXES.join(", ")}`);
  const ns = prefix + v.name("fabric name", name);
  if (ns.length > 64) throw invalid("fabric name", name, "too long for a namespace name");
  return ns;
}

/** `<tag>-<network>` if it fits an interface name, else `<tag>-<hash of network>`. */
function ifnameFor(tag: string, network: string): string {
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

interface Cidr {
  addr: number;
  prefix: number;
}

function ipToInt(field: string, s: string): number {
  const parts = s.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) throw invalid(field, s, "not an IPv4 address");
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

const intToIp = (n: number): string => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");

export function parseIpv4(field: string, s: unknown): string {
  return intToIp(ipToInt(field, v.str(field, s)));
}

function parseCidr(field: string, s: unknown): Cidr {
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

// ---------------------------------------------------------------------------
// Command builders (pure)

const ns = (netns: string): string[] => ["-n", v.name("netns", netns)];

export const cmd = {
  netnsAdd: (netns: string): Cmd => ({ file: "ip", args: ["netns", "add", v.name("netns", netns)] }),
  netnsDel: (netns: string): Cmd => ({ file: "ip", args: ["netns", "del", v.name("netns", netns)] }),
  netnsList: (): Cmd => ({ file: "ip", args: ["-json", "netns", "list"] }),
  netnsPids: (netns: string): Cmd => ({ file: "ip", args: ["netns", "pids", v.name("netns", netns)] }),
  /** No IPv6 in the fabric: link-local chatter from the peers would only add noise to the bridges' forwarding tables. */
  noIpv6: (netns: string): Cmd => ({
    file: "ip",
    args: ["netns", "exec", v.name("netns", netns), "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"],
    optional: true,
  }),
  /**
   * ARP as a host with several interfaces should do it: answer only for an
   * address of the interface the request came in on (so a bridge, which has
   * none, never answers for the peer) and ask with the outgoing interface's
   * own address. `default` too, for interfaces made later (a guest's tap).
   */
  arpStrict: (netns: string): Cmd => ({
    file: "ip",
    args: ["netns", "exec", v.name("netns", netns), "sysctl", "-q", "-w", ...["all", "default"].flatMap((c) => [`net.ipv4.conf.${c}.arp_ignore=1`, `net.ipv4.conf.${c}.arp_announce=2`])],
  }),
  linkUp: (netns: string, dev: string): Cmd => ({ file: "ip", args: [...ns(netns), "link", "set", "dev", v.ifname("dev", dev), "up"] }),
  bridgeAdd: (netns: string, bridge: string, mac: string): Cmd => ({
    // STP off (the default) puts ports straight into forwarding; forward_delay 0 says so explicitly.
    file: "ip",
    args: [...ns(netns), "link", "add", "name", v.ifname("bridge", bridge), "address", v.mac("mac", mac), "type", "bridge", "stp_state", "0", "forward_delay", "0"],
  }),
  /** `ip link set dev DEV address MAC` (a bridge made before bridges had a MAC of their own gets one). */
  linkMac: (netns: string, dev: string, mac: string): Cmd => ({ file: "ip", args: [...ns(netns), "link", "set", "dev", v.ifname("dev", dev), "address", v.mac("mac", mac)] }),
  bridgeAlias: (netns: string, bridge: string, network: string, subnet: string): Cmd => ({
    file: "ip",
    args: [...ns(netns), "link", "set", "dev", v.ifname("bridge", bridge), "alias", `${ALIAS_TAG} ${v.name("network", network)} ${subnet}`],
  }),
  vethAdd: (netns: string, port: string, peer: string): Cmd => ({
    file: "ip",
    args: [...ns(netns), "link", "add", "name", v.ifname("port", port), "type", "veth", "peer", "name", v.ifname("peer", peer)],
  }),
  /** `ip link set dev DEV master BRIDGE up` */
  attach: (netns: string, dev: string, bridge: string): Cmd => ({
    file: "ip",
    args: [...ns(netns), "link", "set", "dev", v.ifname("dev", dev), "master", v.ifname("bridge", bridge), "up"],
  }),
  addrReplace: (netns: string, dev: string, cidr: string): Cmd => {
    const c = parseCidr("address", cidr);
    return { file: "ip", args: [...ns(netns), "addr", "replace", `${intToIp(c.addr)}/${c.prefix}`, "dev", v.ifname("dev", dev)] };
  },
  tapAdd: (netns: string, ifname: string): Cmd => ({ file: "ip", args: [...ns(netns), "tuntap", "add", "dev", v.ifname("tap", ifname), "mode", "tap"] }),
  linkDel: (netns: string, ifname: string): Cmd => ({ file: "ip", args: [...ns(netns), "link", "del", "dev", v.ifname("dev", ifname)] }),
  /** `bridge -n NS link set dev PORT learning on|off` */
  learning: (netns: string, port: string, on: boolean): Cmd => ({
    file: "ip",
    args: [...ns(netns), "link", "set", "dev", v.ifname("port", port), "type", "bridge_slave", "learning", on ? "on" : "off"],
  }),
  /** `ip neigh replace IP lladdr MAC dev PEER nud permanent`: the peer knows a guest's MAC without asking. */
  neighPin: (netns: string, dev: string, ip: string, mac: string): Cmd => ({
    file: "ip",
    args: [...ns(netns), "neigh", "replace", parseIpv4("ip", ip), "lladdr", v.mac("mac", mac), "dev", v.ifname("dev", dev), "nud", "permanent"],
  }),
  /** Every link with details and addresses, as JSON. */
  show: (netns: string): Cmd => ({ file: "ip", args: [...ns(netns), "-json", "-details", "addr", "show"] }),
};

/**
 * The commands that bring a namespace's links (as `ip -json -d addr show`
 * reported them; empty for a fresh namespace) to the planned fabric. Adding
 * is skipped for what exists; sysctls, aliases, masters, addresses and "up"
 * are idempotent and always issued.
 */
export function fabricCommands(f: Fabric, existing: ReadonlySet<string>): Cmd[] {
  const cmds: Cmd[] = [cmd.noIpv6(f.netns), cmd.arpStrict(f.netns), cmd.linkUp(f.netns, "lo")];
  for (const n of f.networks) {
    cmds.push(existing.has(n.bridge) ? cmd.linkMac(f.netns, n.bridge, n.bridgeMac) : cmd.bridgeAdd(f.netns, n.bridge, n.bridgeMac));
    cmds.push(cmd.bridgeAlias(f.netns, n.bridge, n.name, n.subnet), cmd.linkUp(f.netns, n.bridge));
    if (!existing.has(n.peerPort) || !existing.has(n.peerIf)) {
      // one command makes both ends, so a lone end is a leftover of something else: replace it
      if (existing.has(n.peerPort)) cmds.push(cmd.linkDel(f.netns, n.peerPort));
      if (existing.has(n.peerIf)) cmds.push(cmd.linkDel(f.netns, n.peerIf));
      cmds.push(cmd.vethAdd(f.netns, n.peerPort, n.peerIf));
    }
    cmds.push(cmd.attach(f.netns, n.peerPort, n.bridge), cmd.addrReplace(f.netns, n.peerIf, n.peerAddress), cmd.linkUp(f.netns, n.peerIf));
  }
  return cmds;
}

// ---------------------------------------------------------------------------
// Parsers (external data: checked)

export interface LinkInfo {
  ifname: string;
  /** "bridge", "veth", "tun", … ("" for loopback and unknown). */
  kind: string;
  /** For taps: "tap"/"tun". */
  tunType: string | undefined;
  master: string | undefined;
  /** The other end of a veth (same namespace). */
  peer: string | undefined;
  up: boolean;
  operstate: string;
  alias: string | undefined;
  /** The link's MAC ("" when it has none, e.g. loopback reports zeros). */
  mac: string;
  /** IPv4 addresses with prefix. */
  addresses: string[];
}

function isObj(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

const optStr = (x: unknown): string | undefined => (typeof x === "string" ? x : undefined);

/** `ip -json -details addr show` → links. */
export function parseLinks(text: string): LinkInfo[] {
  let j: unknown;
  try {
    j = JSON.parse(text.trim() === "" ? "[]" : text);
  } catch (e) {
    throw new FerryError("FERRY_ERR_COMMAND", "unexpected ip -json addr output: not JSON", { cause: e });
  }
  if (!Array.isArray(j)) throw new FerryError("FERRY_ERR_COMMAND", "unexpected ip -json addr output: not an array");
  return j.filter(isObj).flatMap((l): LinkInfo[] => {
    const ifname = optStr(l["ifname"]);
    if (ifname === undefined) return [];
    const info = isObj(l["linkinfo"]) ? l["linkinfo"] : {};
    const infoData = isObj(info["info_data"]) ? info["info_data"] : {};
    const flags = Array.isArray(l["flags"]) ? l["flags"] : [];
    const addrs = Array.isArray(l["addr_info"]) ? l["addr_info"] : [];
    return [
      {
        ifname,
        kind: optStr(info["info_kind"]) ?? "",
        tunType: optStr(infoData["type"]),
        master: optStr(l["master"]),
        peer: optStr(l["link"]),
        up: flags.includes("UP"),
        operstate: optStr(l["operstate"]) ?? "UNKNOWN",
        alias: optStr(l["ifalias"]),
        mac: optStr(l["address"]) ?? "",
        addresses: addrs.filter(isObj).flatMap((a) => (a["family"] === "inet" && typeof a["local"] === "string" && typeof a["prefixlen"] === "number" ? [`${a["local"]}/${a["prefixlen"]}`] : [])),
      },
    ];
  });
}

/** `ip -json netns list` → names (the output is empty, not `[]`, on some iproute2 versions when there are none). */
export function parseNetnsList(text: string): string[] {
  if (text.trim() === "") return [];
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new FerryError("FERRY_ERR_COMMAND", "unexpected ip -json netns list output: not JSON", { cause: e });
  }
  if (!Array.isArray(j)) throw new FerryError("FERRY_ERR_COMMAND", "unexpected ip -json netns list output: not an array");
  return j.flatMap((e) => (isObj(e) && typeof e["name"] === "string" ? [e["name"]] : []));
}

export interface NetworkStatus {
  name: string;
  bridge: string;
  subnet: string | undefined;
  bridgeUp: boolean;
  /** The bridge's MAC as the kernel has it now. */
  bridgeMac: string;
  /** IPv4 addresses on the bridge itself: none in a healthy fabric (a switch has no address on the guests' network). */
  bridgeAddresses: string[];
  /** The peer endpoint, when both veth ends are there. */
  peer: { ifname: string; port: string; addresses: string[]; up: boolean; attached: boolean } | undefined;
  /** Other ports of the bridge (guest taps), with their state. */
  ports: { ifname: string; kind: string; up: boolean; operstate: string }[];
}

export interface FabricStatus {
  name: string;
  netns: string;
  exists: boolean;
  networks: NetworkStatus[];
  /** Processes still inside the namespace (QEMU instances, probes). */
  pids: number[];
}

/** What the links of a fabric namespace say about it (pure). */
export function fabricStatusFromLinks(name: string, netns: string, links: readonly LinkInfo[], pids: readonly number[]): FabricStatus {
  const byName = new Map(links.map((l) => [l.ifname, l]));
  const networks: NetworkStatus[] = [];
  for (const br of links.filter((l) => l.kind === "bridge")) {
    const alias = br.alias?.split(" ");
    const fromAlias = alias?.[0] === ALIAS_TAG && alias[1] !== undefined;
    const network = fromAlias && alias[1] ? alias[1] : br.ifname;
    const peerIf = byName.get(peerIfname(network));
    const peerPort = byName.get(peerPortIfname(network));
    networks.push({
      name: network,
      bridge: br.ifname,
      subnet: fromAlias ? alias[2] : undefined,
      bridgeUp: br.up,
      bridgeMac: br.mac,
      bridgeAddresses: br.addresses,
      peer:
        peerIf && peerPort
          ? { ifname: peerIf.ifname, port: peerPort.ifname, addresses: peerIf.addresses, up: peerIf.up, attached: peerPort.master === br.ifname }
          : undefined,
      ports: links
        .filter((l) => l.master === br.ifname && l.ifname !== peerPort?.ifname)
        .map((l) => ({ ifname: l.ifname, kind: l.kind === "tun" ? (l.tunType ?? "tun") : l.kind, up: l.up, operstate: l.operstate })),
    });
  }
  return { name, netns, exists: true, networks, pids: [...pids] };
}

/** A fabric handle from its status (for a lab that restarts and finds its fabric in place). */
export function fabricFromStatus(s: FabricStatus): Fabric {
  return {
    name: s.name,
    netns: s.netns,
    networks: s.networks.flatMap((n) => {
      const peerAddress = n.peer?.addresses[0];
      if (n.subnet === undefined || peerAddress === undefined || n.peer === undefined) return [];
      return [{ name: n.name, bridge: n.bridge, subnet: n.subnet, peerAddress, peerIp: peerAddress.split("/")[0] ?? "", peerIf: n.peer.ifname, peerPort: n.peer.port, bridgeMac: n.bridgeMac }];
    }),
  };
}

// ---------------------------------------------------------------------------
// Side effects

async function exec(c: Cmd, o: FabricOptions, allowFailure = false): Promise<{ code: number; stdout: string; stderr: string }> {
  return (o.run ?? defaultRun)(c.file, c.args, { signal: o.signal, timeoutMs: 10_000, allowFailure });
}

export async function listNetns(o: FabricOptions = {}): Promise<string[]> {
  return parseNetnsList((await exec(cmd.netnsList(), o)).stdout);
}

async function links(netns: string, o: FabricOptions): Promise<LinkInfo[]> {
  return parseLinks((await exec(cmd.show(netns), o)).stdout);
}

/** Create the fabric (or complete/repair an existing one: a second create is fine). */
export async function createFabric(o: CreateFabricOptions): Promise<Fabric> {
  const f = planFabric(o);
  let fresh = false;
  if (!(await listNetns(o)).includes(f.netns)) {
    const r = await exec(cmd.netnsAdd(f.netns), o, true);
    // lost a race with a concurrent create: fine, it exists now
    if (r.code !== 0 && !/File exists/i.test(r.stderr)) {
      throw new FerryError("FERRY_ERR_COMMAND", `ip netns add ${f.netns}: ${r.stderr.trim()}`, { details: { netns: f.netns } });
    }
    fresh = r.code === 0;
  }
  try {
    const existing = new Set((await links(f.netns, o)).map((l) => l.ifname));
    for (const c of fabricCommands(f, existing)) await exec(c, o, c.optional ?? false);
  } catch (e) {
    // a namespace this call made and could not finish is removed again
    if (fresh) await exec(cmd.netnsDel(f.netns), { ...o, signal: undefined }, true);
    throw e;
  }
  return f;
}

/** What exists of the fabric `name` (read from the kernel). */
export async function describeFabric(name: string, o: FabricOptions = {}): Promise<FabricStatus> {
  const netns = fabricNetns(name, o.prefix);
  if (!(await listNetns(o)).includes(netns)) return { name, netns, exists: false, networks: [], pids: [] };
  const pids = (await exec(cmd.netnsPids(netns), o, true)).stdout
    .split(/\s+/)
    .filter((p) => /^\d+$/.test(p))
    .map(Number);
  return fabricStatusFromLinks(name, netns, await links(netns, o), pids);
}

/** The fabric `name` as it exists in the kernel, or undefined. */
export async function openFabric(name: string, o: FabricOptions = {}): Promise<Fabric | undefined> {
  const s = await describeFabric(name, o);
  return s.exists ? fabricFromStatus(s) : undefined;
}

export interface DestroyResult {
  netns: string;
  /** False when there was nothing to delete. */
  existed: boolean;
  /**
   * Processes that were still inside the namespace: its name is gone, but the
   * namespace (and the taps of those processes) lives until they exit. The
   * fabric never kills them: their owner must.
   */
  pidsInside: number[];
}

/** Delete the fabric's namespace and everything in it. Needs only the name; harmless when already gone. */
export async function destroyFabric(name: string, o: FabricOptions = {}): Promise<DestroyResult> {
  const netns = fabricNetns(name, o.prefix);
  if (!(await listNetns(o)).includes(netns)) return { netns, existed: false, pidsInside: [] };
  const pidsInside = (await exec(cmd.netnsPids(netns), o, true)).stdout
    .split(/\s+/)
    .filter((p) => /^\d+$/.test(p))
    .map(Number);
  const r = await exec(cmd.netnsDel(netns), o, true);
  if (r.code !== 0 && (await listNetns(o)).includes(netns)) {
    throw new FerryError("FERRY_ERR_COMMAND", `ip netns del ${netns}: ${r.stderr.trim()}`, { details: { netns } });
  }
  return { netns, existed: true, pidsInside };
}

function network(f: Fabric, name: string): FabricNetwork {
  const n = f.networks.find((x) => x.name === name);
  if (!n) throw new FerryError("FERRY_ERR_NOT_FOUND", `fabric ${f.name} has no network ${JSON.stringify(name)} (has ${f.networks.map((x) => x.name).join(", ")})`);
  return n;
}

export interface TapOptions extends FabricOptions {
  /** Learning on the tap's bridge port (default on; the agent turns it off for P10 forwarding). */
  learning?: boolean;
}

/**
 * A persistent tap in the fabric's namespace, attached to the network's
 * bridge and up; QEMU (run in the namespace) opens it by name. Idempotent.
 * Carrier is down until a QEMU opens it.
 */
export async function addTap(f: Fabric, networkName: string, ifname: string, o: TapOptions = {}): Promise<void> {
  const n = network(f, networkName);
  const tap = v.ifname("tap", ifname);
  const have = (await links(f.netns, o)).find((l) => l.ifname === tap);
  if (have && !(have.kind === "tun" && have.tunType === "tap")) {
    throw new FerryError("FERRY_ERR_CONFLICT", `${tap} exists in ${f.netns} and is not a tap (${have.kind || "unknown kind"})`);
  }
  if (!have) await exec(cmd.tapAdd(f.netns, tap), o);
  await exec(cmd.attach(f.netns, tap, n.bridge), o);
  if (o.learning !== undefined) await exec(cmd.learning(f.netns, tap, o.learning), o);
}

/** Delete a tap from the fabric's namespace; harmless when already gone. */
export async function deleteTap(f: Fabric, ifname: string, o: FabricOptions = {}): Promise<void> {
  const tap = v.ifname("tap", ifname);
  const r = await exec(cmd.linkDel(f.netns, tap), o, true);
  if (r.code !== 0 && (await links(f.netns, o)).some((l) => l.ifname === tap)) {
    throw new FerryError("FERRY_ERR_COMMAND", `ip -n ${f.netns} link del ${tap}: ${r.stderr.trim()}`);
  }
}

/**
 * Pin a guest's MAC in the peer's neighbour table, as a router that has
 * talked to the guest before knows it. Without it, a peer whose ARP for the
 * guest failed (guest not up yet, NIC unplugged) asks again only once a
 * second, and that retry — not the guest — decides when replies resume.
 */
export async function pinPeerNeighbor(f: Fabric, networkName: string, ip: string, mac: string, o: FabricOptions = {}): Promise<void> {
  const n = network(f, networkName);
  await exec(cmd.neighPin(f.netns, n.peerIf, ip, mac), o);
}
