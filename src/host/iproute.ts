// iproute2 command builders (pure: argv arrays, no I/O) and parsers for
// `ip -json` / `bridge -json` output (external data: validated here).
import { FerryError } from "../core/errors.ts";
import * as v from "../model/validate.ts";

export interface Cmd {
  file: "ip" | "bridge";
  args: string[];
}

/** Run inside a network namespace (iproute2's `-n NS`), or in the current one. */
export interface NsOpt {
  netns?: string | null;
}

function base(o: NsOpt | undefined, json = false): string[] {
  const a: string[] = [];
  if (o?.netns) a.push("-n", v.name("netns", o.netns));
  if (json) a.push("-json");
  return a;
}

const onOff = (b: boolean): string => (b ? "on" : "off");

/** A real VF's settings, as `ip -json -d link show` reports them and `ip link set dev PF vf N …` sets them. */
export interface VfSettings {
  /** "00:00:00:00:00:00" clears the VF's MAC (and its filter on the PF). */
  mac: string;
  /** 0 = no VLAN. */
  vlan: number;
  qos?: number;
  spoofchk?: boolean;
  trust?: boolean;
}

/** Any subset of the settings (at least one), for `ipLinkSetVf`. */
export type VfChange = Partial<VfSettings>;

function vfMac(field: string, m: string): string {
  const s = m.toLowerCase();
  return s === "00:00:00:00:00:00" ? s : v.mac(field, s);
}

// ---- builders ----

/** `ip [-n NS] -json -d link show dev DEV` */
export function ipLinkShow(dev: string, o?: NsOpt): Cmd {
  return { file: "ip", args: [...base(o, true), "-d", "link", "show", "dev", v.ifname("dev", dev)] };
}

/** `ip link set dev PF vf N [mac M] [vlan V [qos Q]] [spoofchk on|off] [trust on|off]` */
export function ipLinkSetVf(pf: string, vfIndex: number, s: VfChange, o?: NsOpt): Cmd {
  const args = [...base(o), "link", "set", "dev", v.ifname("pf", pf), "vf", String(v.int("vfIndex", vfIndex, 0, 65535))];
  if (s.mac !== undefined) args.push("mac", vfMac("mac", s.mac));
  if (s.vlan !== undefined) {
    args.push("vlan", String(v.int("vlan", s.vlan, 0, 4094)));
    if (s.qos !== undefined && s.vlan !== 0) args.push("qos", String(v.int("qos", s.qos, 0, 7)));
  }
  if (s.spoofchk !== undefined) args.push("spoofchk", onOff(s.spoofchk));
  if (s.trust !== undefined) args.push("trust", onOff(s.trust));
  if (args.at(-2) === "vf") throw new FerryError("FERRY_ERR_INVALID", "ipLinkSetVf: nothing to set");
  return { file: "ip", args };
}

/** `ip link set dev VF_PF vf N mac 00:00:00:00:00:00`: drop the PF's MAC filter for the VF (DESIGN P10). */
export function ipLinkClearVfMac(pf: string, vfIndex: number, o?: NsOpt): Cmd {
  return { file: "ip", args: [...base(o), "link", "set", "dev", v.ifname("pf", pf), "vf", String(v.int("vfIndex", vfIndex, 0, 65535)), "mac", "00:00:00:00:00:00"] };
}

/** `ip link set dev BR type bridge vlan_filtering 0|1` */
export function ipLinkSetVlanFiltering(bridge: string, on: boolean, o?: NsOpt): Cmd {
  return { file: "ip", args: [...base(o), "link", "set", "dev", v.ifname("bridge", bridge), "type", "bridge", "vlan_filtering", on ? "1" : "0"] };
}

/** `bridge vlan add dev PORT vid V [pvid] [untagged]` */
export function bridgeVlanAdd(port: string, vid: number, flags: { pvid?: boolean; untagged?: boolean } = {}, o?: NsOpt): Cmd {
  const args = [...base(o), "vlan", "add", "dev", v.ifname("port", port), "vid", String(v.int("vid", vid, 1, 4094))];
  if (flags.pvid) args.push("pvid");
  if (flags.untagged) args.push("untagged");
  return { file: "bridge", args };
}

/** `bridge vlan del dev PORT vid V` */
export function bridgeVlanDel(port: string, vid: number, o?: NsOpt): Cmd {
  return { file: "bridge", args: [...base(o), "vlan", "del", "dev", v.ifname("port", port), "vid", String(v.int("vid", vid, 1, 4094))] };
}

/** `bridge -json vlan show dev PORT` */
export function bridgeVlanShow(port: string, o?: NsOpt): Cmd {
  return { file: "bridge", args: [...base(o, true), "vlan", "show", "dev", v.ifname("port", port)] };
}

/** `bridge fdb replace MAC dev PORT master static [vlan V]`: pin a MAC to a port. */
export function bridgeFdbReplace(mac: string, port: string, o?: NsOpt & { vlan?: number }): Cmd {
  const args = [...base(o), "fdb", "replace", v.mac("mac", mac), "dev", v.ifname("port", port), "master", "static"];
  if (o?.vlan !== undefined) args.push("vlan", String(v.int("vlan", o.vlan, 1, 4094)));
  return { file: "bridge", args };
}

/** `bridge fdb del MAC dev PORT master [vlan V]`: drop a (stale) forwarding entry. */
export function bridgeFdbDel(mac: string, port: string, o?: NsOpt & { vlan?: number }): Cmd {
  const args = [...base(o), "fdb", "del", v.mac("mac", mac), "dev", v.ifname("port", port), "master"];
  if (o?.vlan !== undefined) args.push("vlan", String(v.int("vlan", o.vlan, 1, 4094)));
  return { file: "bridge", args };
}

/** `bridge -json fdb show [br BR]` */
export function bridgeFdbShow(o?: NsOpt & { bridge?: string }): Cmd {
  const args = [...base(o, true), "fdb", "show"];
  if (o?.bridge) args.push("br", v.ifname("bridge", o.bridge));
  return { file: "bridge", args };
}

/** `bridge link set dev PORT [learning on|off] [flood on|off]` */
export function bridgeLinkSet(port: string, flags: { learning?: boolean; flood?: boolean }, o?: NsOpt): Cmd {
  const args = [...base(o), "link", "set", "dev", v.ifname("port", port)];
  if (flags.learning !== undefined) args.push("learning", onOff(flags.learning));
  if (flags.flood !== undefined) args.push("flood", onOff(flags.flood));
  if (flags.learning === undefined && flags.flood === undefined) throw new FerryError("FERRY_ERR_INVALID", "bridgeLinkSet: nothing to set");
  return { file: "bridge", args };
}

/** `bridge -json -d link show dev PORT` */
export function bridgeLinkShow(port: string, o?: NsOpt): Cmd {
  return { file: "bridge", args: [...base(o, true), "-d", "link", "show", "dev", v.ifname("port", port)] };
}

// ---- parsers ----

function bad(what: string, why: string): FerryError {
  return new FerryError("FERRY_ERR_COMMAND", `unexpected ${what} output: ${why}`);
}

function parseJson(what: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new FerryError("FERRY_ERR_COMMAND", `unexpected ${what} output: not JSON`, { cause: e });
  }
}

function isObj(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function firstLink(what: string, text: string): Record<string, unknown> {
  const j = parseJson(what, text);
  if (!Array.isArray(j) || !isObj(j[0])) throw bad(what, "expected a non-empty array of links");
  return j[0];
}

/** A VF's settings from `ip -json -d link show dev PF` (its `vfinfo_list`). */
export function parseVfInfo(text: string, vfIndex: number): VfSettings {
  const what = "ip -json -d link show";
  const link = firstLink(what, text);
  const list = link["vfinfo_list"];
  if (!Array.isArray(list)) throw bad(what, `${String(link["ifname"])} has no vfinfo_list (not an SR-IOV PF, or SR-IOV not enabled)`);
  const vf = list.find((x): x is Record<string, unknown> => isObj(x) && x["vf"] === vfIndex);
  if (!vf) throw bad(what, `no VF ${vfIndex} in vfinfo_list`);
  const address = vf["address"];
  if (typeof address !== "string" || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(address)) throw bad(what, `VF ${vfIndex}: bad address ${JSON.stringify(address)}`);
  let vlan = 0;
  let qos: number | undefined;
  const vlanList = vf["vlan_list"];
  const first: unknown = Array.isArray(vlanList) ? vlanList[0] : vf;
  if (isObj(first) && typeof first["vlan"] === "number") {
    vlan = first["vlan"];
    if (typeof first["qos"] === "number" && first["qos"] > 0) qos = first["qos"];
  }
  if (!Number.isInteger(vlan) || vlan < 0 || vlan > 4095) throw bad(what, `VF ${vfIndex}: bad vlan ${vlan}`);
  const s: VfSettings = { mac: address.toLowerCase(), vlan };
  if (qos !== undefined) s.qos = qos;
  if (typeof vf["spoofchk"] === "boolean") s.spoofchk = vf["spoofchk"];
  if (typeof vf["trust"] === "boolean") s.trust = vf["trust"];
  return s;
}

/** The `master` (bridge) of a link from `ip -json link show dev X`, or null. */
export function parseLinkMaster(text: string): string | null {
  const m = firstLink("ip -json link show", text)["master"];
  return typeof m === "string" ? m : null;
}

/** Whether a bridge filters VLANs, from `ip -json -d link show dev BR`. */
export function parseVlanFiltering(text: string): boolean {
  const link = firstLink("ip -json -d link show", text);
  const info = link["linkinfo"];
  if (!isObj(info) || info["info_kind"] !== "bridge") throw bad("ip -json -d link show", `${String(link["ifname"])} is not a bridge`);
  const data = info["info_data"];
  return isObj(data) && data["vlan_filtering"] === 1;
}

export interface PortVlan {
  vid: number;
  pvid: boolean;
  untagged: boolean;
}

/** A port's VLANs from `bridge -json vlan show dev PORT` (ranges expanded). */
export function parseBridgeVlans(text: string, port: string): PortVlan[] {
  const what = "bridge -json vlan show";
  const j = parseJson(what, text.trim() === "" ? "[]" : text);
  if (!Array.isArray(j)) throw bad(what, "expected an array");
  const out: PortVlan[] = [];
  for (const entry of j) {
    if (!isObj(entry) || entry["ifname"] !== port) continue;
    const vlans = entry["vlans"];
    if (!Array.isArray(vlans)) throw bad(what, `${port}: no vlans array`);
    for (const x of vlans) {
      if (!isObj(x) || typeof x["vlan"] !== "number") throw bad(what, `${port}: bad vlan entry`);
      const flags = Array.isArray(x["flags"]) ? x["flags"] : [];
      const end = typeof x["vlanEnd"] === "number" ? x["vlanEnd"] : x["vlan"];
      for (let vid = x["vlan"]; vid <= end; vid++) out.push({ vid, pvid: flags.includes("PVID"), untagged: flags.includes("Egress Untagged") });
    }
  }
  return out;
}

export interface FdbEntry {
  mac: string;
  ifname: string;
  master: string | null;
  vlan: number | null;
  state: string;
  flags: string[];
}

/** Entries from `bridge -json fdb show`. */
export function parseBridgeFdb(text: string): FdbEntry[] {
  const what = "bridge -json fdb show";
  const j = parseJson(what, text.trim() === "" ? "[]" : text);
  if (!Array.isArray(j)) throw bad(what, "expected an array");
  return j.filter(isObj).map((x) => ({
    mac: typeof x["mac"] === "string" ? x["mac"].toLowerCase() : "",
    ifname: typeof x["ifname"] === "string" ? x["ifname"] : "",
    master: typeof x["master"] === "string" ? x["master"] : null,
    vlan: typeof x["vlan"] === "number" ? x["vlan"] : null,
    state: typeof x["state"] === "string" ? x["state"] : "",
    flags: Array.isArray(x["flags"]) ? x["flags"].filter((f): f is string => typeof f === "string") : [],
  }));
}

/** A bridge port's learning and flooding flags from `bridge -json -d link show dev PORT`. */
export function parseBridgePort(text: string): { learning: boolean; flood: boolean } {
  const what = "bridge -json -d link show";
  const link = firstLink(what, text);
  if (typeof link["learning"] !== "boolean" || typeof link["flood"] !== "boolean") throw bad(what, `${String(link["ifname"])}: no learning/flood flags (not a bridge port?)`);
  return { learning: link["learning"], flood: link["flood"] };
}
