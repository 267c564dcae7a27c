// The placement index: built once from an immutable snapshot, read by every
// placement. Hosts are sorted by name, so "ties broken by host name" is "ties
// broken by host index". Per host it keeps capacity in typed arrays and free
// VF counts per (network, vendor, device) key, so that the filter pass over
// every host is a handful of array reads; PFs and their free VFs (sorted by
// BDF) are kept for the exact VF pick on the few top candidates.
import type { ClusterSnapshot, Host, PhysicalFunction, VirtualFunction } from "../model/cluster.ts";

export const HOST_UP = 0;
export const HOST_DOWN = 1;
export const HOST_DRAINING = 2;

/** NUMA nodes tracked for the ranking bound; VFs on higher nodes still work, with a looser bound. */
export const NUMA_SLOTS_MAX = 8;

/** A PF as indexed: its load and its free VFs (global VF indexes, sorted by BDF). */
export interface PfEntry {
  readonly index: number;
  readonly pf: PhysicalFunction;
  readonly host: number;
  readonly net: number;
  /** VFs of this PF in the snapshot. */
  readonly total: number;
  /** VFs leased in the snapshot. */
  readonly used: number;
  readonly freeVfs: readonly number[];
  /** Global index of the PF's first VF; its VFs are contiguous. */
  readonly firstVf: number;
}

const ANY = "*";

function keyString(net: string, vendor: string, device: string): string {
  return `${net}\u0000${vendor}\u0000${device}`;
}

function byString(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class PlacementIndex {
  readonly revision: number | undefined;
  /** Hosts sorted by name (code-unit order, locale independent). */
  readonly hosts: readonly Host[];
  readonly hostIndex: ReadonlyMap<string, number>;
  /** Host names, by host index. */
  readonly names: readonly string[];
  readonly state: Uint8Array;
  readonly memTotal: Float64Array;
  readonly memUsed: Float64Array;
  readonly cpuTotal: Float64Array;
  readonly cpuUsed: Float64Array;
  /** total - used, and 1/total (0 when total is 0): the filter pass reads one array per check and multiplies. */
  readonly memFree: Float64Array;
  readonly cpuFree: Float64Array;
  readonly memInv: Float64Array;
  readonly cpuInv: Float64Array;
  readonly networks: readonly string[];
  readonly networkIndex: ReadonlyMap<string, number>;
  /** Per host, its PFs sorted by BDF. */
  readonly hostPfs: readonly (readonly PfEntry[])[];
  readonly pfs: readonly PfEntry[];
  /** All indexed VFs, grouped by host, then PF, then sorted by BDF. */
  readonly vfs: readonly VirtualFunction[];
  readonly vfPf: Int32Array;
  /** Free VFs per host for a key: (network, vendor or *, device or *). */
  readonly keyFree: readonly Int32Array[];
  readonly keyIndex: ReadonlyMap<string, number>;
  /** The 4 keys a VF counts towards, flat: vfKeys[4*vf + i]. */
  readonly vfKeys: Int32Array;
  /** Best PF headroom per (host, network) if one more VF is taken: (total-used-1)/total; -1 when none free. */
  readonly bestFrac: Float64Array;
  /** As bestFrac, only PFs with a free VF on NUMA node n: [(host*N + net)*numaSlots + n]. */
  readonly bestFracNuma: Float64Array;
  readonly numaSlots: number;
  /** Snapshot entries that could not be indexed (unknown host/PF, duplicates), for the operator. */
  readonly problems: readonly string[];

  constructor(snapshot: ClusterSnapshot) {
    const problems: string[] = [];
    const note = (p: string): void => {
      if (problems.length < 100) problems.push(p);
    };
    this.revision = snapshot.revision;

    const sorted = [...snapshot.hosts].sort((a, b) => byString(a.name, b.name));
    const hosts: Host[] = [];
    const hostIndex = new Map<string, number>();
    for (const h of sorted) {
      if (hostIndex.has(h.name)) {
        note(`host ${h.name}: listed twice, the first entry is used`);
        continue;
      }
      hostIndex.set(h.name, hosts.length);
      hosts.push(h);
    }
    const H = hosts.length;
    this.hosts = hosts;
    this.hostIndex = hostIndex;
    this.names = hosts.map((h) => h.name);
    this.state = new Uint8Array(H);
    this.memTotal = new Float64Array(H);
    this.memUsed = new Float64Array(H);
    this.cpuTotal = new Float64Array(H);
    this.cpuUsed = new Float64Array(H);
    this.memFree = new Float64Array(H);
    this.cpuFree = new Float64Array(H);
    this.memInv = new Float64Array(H);
    this.cpuInv = new Float64Array(H);
    for (let i = 0; i < H; i++) {
      const h = hosts[i]!;
      this.state[i] = h.state === "up" ? HOST_UP : h.state === "down" ? HOST_DOWN : HOST_DRAINING;
      this.memTotal[i] = h.memoryMiB.total;
      this.memUsed[i] = h.memoryMiB.used;
      this.cpuTotal[i] = h.vcpus.total;
      this.cpuUsed[i] = h.vcpus.used;
      this.memFree[i] = h.memoryMiB.total - h.memoryMiB.used;
      this.cpuFree[i] = h.vcpus.total - h.vcpus.used;
      this.memInv[i] = h.memoryMiB.total > 0 ? 1 / h.memoryMiB.total : 0;
      this.cpuInv[i] = h.vcpus.total > 0 ? 1 / h.vcpus.total : 0;
    }

    // Networks and PFs.
    const networks: string[] = [];
    const networkIndex = new Map<string, number>();
    const netId = (n: string): number => {
      let id = networkIndex.get(n);
      if (id === undefined) {
        id = networks.length;
        networks.push(n);
        networkIndex.set(n, id);
      }
      return id;
    };
    const pfByKey = new Map<string, number>();
    const pfRaw: { pf: PhysicalFunction; host: number; net: number; vfs: VirtualFunction[] }[] = [];
    for (const pf of snapshot.pfs) {
      const host = hostIndex.get(pf.host);
      if (host === undefined) {
        note(`PF ${pf.host}/${pf.bdf}: unknown host`);
        continue;
      }
      const k = `${pf.host}/${pf.bdf}`;
      if (pfByKey.has(k)) {
        note(`PF ${k}: listed twice, the first entry is used`);
        continue;
      }
      pfByKey.set(k, pfRaw.length);
      pfRaw.push({ pf, host, net: netId(pf.network), vfs: [] });
    }
    for (const vf of snapshot.vfs) {
      const p = pfByKey.get(`${vf.host}/${vf.pf}`);
      const raw = p === undefined ? undefined : pfRaw[p];
      if (raw === undefined) {
        note(`VF ${vf.host}/${vf.bdf}: unknown PF ${vf.pf}`);
        continue;
      }
      if (vf.network !== raw.pf.network) {
        note(`VF ${vf.host}/${vf.bdf}: network ${vf.network} differs from its PF's (${raw.pf.network}); skipped`);
        continue;
      }
      raw.vfs.push(vf);
    }
    pfRaw.sort((a, b) => a.host - b.host || byString(a.pf.bdf, b.pf.bdf));
    this.networks = networks;
    this.networkIndex = networkIndex;
    const N = networks.length;

    let maxNuma = 0;
    for (const raw of pfRaw) for (const vf of raw.vfs) if (vf.numaNode > maxNuma) maxNuma = vf.numaNode;
    const S = Math.min(maxNuma + 1, NUMA_SLOTS_MAX);
    this.numaSlots = S;

    // VFs in (host, PF, BDF) order; free counts per key; PF entries.
    const keyIndex = new Map<string, number>();
    const keyFree: Int32Array[] = [];
    const keyId = (k: string): number => {
      let id = keyIndex.get(k);
      if (id === undefined) {
        id = keyFree.length;
        keyFree.push(new Int32Array(H));
        keyIndex.set(k, id);
      }
      return id;
    };
    const vfs: VirtualFunction[] = [];
    let total = 0;
    for (const raw of pfRaw) total += raw.vfs.length;
    const vfPf = new Int32Array(total);
    const vfKeys = new Int32Array(total * 4);
    const pfs: PfEntry[] = [];
    const hostPfs: PfEntry[][] = Array.from({ length: H }, () => []);
    const bestFrac = new Float64Array(H * N).fill(-1);
    const bestFracNuma = new Float64Array(H * N * S).fill(-1);
    let lastSig = "";
    let lastKeys = [0, 0, 0, 0];
    for (const raw of pfRaw) {
      raw.vfs.sort((a, b) => byString(a.bdf, b.bdf));
      const index = pfs.length;
      const firstVf = vfs.length;
      const freeVfs: number[] = [];
      let used = 0;
      const dedup = new Set<string>();
      const numaFree: number[] = [];
      for (const vf of raw.vfs) {
        if (dedup.has(vf.bdf)) {
          note(`VF ${vf.host}/${vf.bdf}: listed twice, the first entry is used`);
          continue;
        }
        dedup.add(vf.bdf);
        const i = vfs.length;
        vfs.push(vf);
        vfPf[i] = index;
        const sig = keyString(vf.network, vf.vendor, vf.device);
        if (sig !== lastSig) {
          lastSig = sig;
          lastKeys = [
            keyId(keyString(vf.network, ANY, ANY)),
            keyId(keyString(vf.network, vf.vendor, ANY)),
            keyId(keyString(vf.network, ANY, vf.device)),
            keyId(sig),
          ];
        }
        for (let j = 0; j < 4; j++) vfKeys[4 * i + j] = lastKeys[j]!;
        if (vf.leasedBy === null) {
          freeVfs.push(i);
          for (let j = 0; j < 4; j++) keyFree[lastKeys[j]!]![raw.host]! += 1;
          if (vf.numaNode >= 0 && vf.numaNode < S && !numaFree.includes(vf.numaNode)) numaFree.push(vf.numaNode);
        } else {
          used++;
        }
      }
      const count = dedup.size;
      const entry: PfEntry = { index, pf: raw.pf, host: raw.host, net: raw.net, total: count, used, freeVfs, firstVf };
      pfs.push(entry);
      hostPfs[raw.host]!.push(entry);
      if (freeVfs.length > 0) {
        const frac = (count - used - 1) / count;
        const hn = raw.host * N + raw.net;
        if (frac > bestFrac[hn]!) bestFrac[hn] = frac;
        for (const n of numaFree) if (frac > bestFracNuma[hn * S + n]!) bestFracNuma[hn * S + n] = frac;
      }
    }
    this.vfs = vfs;
    this.vfPf = vfPf;
    this.vfKeys = vfKeys;
    this.pfs = pfs;
    this.hostPfs = hostPfs;
    this.keyFree = keyFree;
    this.keyIndex = keyIndex;
    this.bestFrac = bestFrac;
    this.bestFracNuma = bestFracNuma;
    this.problems = problems;
  }

  /** The key id for a NIC's constraint, or -1 when no VF in the fleet matches it. */
  keyFor(network: string, vendor?: string, device?: string): number {
    return this.keyIndex.get(keyString(network, vendor ?? ANY, device ?? ANY)) ?? -1;
  }

  /** A VF's global index from its cluster key (host/bdf), or -1. */
  vfByKey(key: string): number {
    const slash = key.lastIndexOf("/");
    if (slash < 0) return -1;
    const host = this.hostIndex.get(key.slice(0, slash));
    if (host === undefined) return -1;
    const bdf = key.slice(slash + 1);
    for (const pf of this.hostPfs[host]!) {
      for (let i = pf.firstVf; i < pf.firstVf + pf.total; i++) if (this.vfs[i]!.bdf === bdf) return i;
    }
    return -1;
  }
}

const cache = new WeakMap<ClusterSnapshot, PlacementIndex>();

/** Build (or reuse, for the same snapshot object) the placement index. Pure: the snapshot is not modified. */
export function buildIndex(snapshot: ClusterSnapshot): PlacementIndex {
  let index = cache.get(snapshot);
  if (index === undefined) {
    index = new PlacementIndex(snapshot);
    cache.set(snapshot, index);
  }
  return index;
}
