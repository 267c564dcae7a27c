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
//
// Here the side effects; the plan is fabric-plan.ts, the commands
// fabric-commands.ts, what `ip -json` reports fabric-links.ts.
import { FerryError } from "../core/errors.ts";
import { run as defaultRun } from "../core/run.ts";
import type { Runner } from "../core/run.ts";
import * as v from "../model/validate.ts";
import { cmd, fabricCommands } from "./fabric-commands.ts";
import type { Cmd } from "./fabric-commands.ts";
import { fabricFromStatus, fabricStatusFromLinks, parseLinks, parseNetnsList } from "./fabric-links.ts";
import type { FabricStatus, LinkInfo } from "./fabric-links.ts";
import { fabricNetns, planFabric } from "./fabric-plan.ts";
import type { Fabric, FabricNetwork, NetnsPrefix, NetworkInput } from "./fabric-plan.ts";

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
