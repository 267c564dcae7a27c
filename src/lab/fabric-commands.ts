// The fabric's iproute2 (and sysctl) commands as argv arrays (pure), and the
// list of them that brings a namespace to a planned fabric.
import * as v from "../model/validate.ts";
import { ALIAS_TAG, intToIp, parseCidr, parseIpv4 } from "./fabric-plan.ts";
import type { Fabric } from "./fabric-plan.ts";

/** An iproute2 (or sysctl) command, as an argv array. */
export interface Cmd {
  file: "ip";
  args: string[];
  /** A failure is not an error (e.g. no IPv6 sysctls on an IPv6-less kernel). */
  optional?: boolean;
}

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
