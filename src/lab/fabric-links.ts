// What the kernel says about a fabric: `ip -json` output parsed (external
// data: checked), and the fabric's status and handle read back from its links.
import { FerryError } from "../core/errors.ts";
import { ALIAS_TAG, LAB_NET_ALIAS_TAG, peerIfname, peerPortIfname } from "./fabric-plan.ts";
import type { Fabric } from "./fabric-plan.ts";

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
    if (alias?.[0] === LAB_NET_ALIAS_TAG) continue; // an apart lab's migration bridge
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
