// Small hand-made clusters for the scheduler's tests.
import type { ClusterSnapshot, Host, HostState, PhysicalFunction, PlacementNic, PlacementVm, VirtualFunction } from "../model/cluster.ts";

export interface HostOpts {
  state?: HostState;
  mem?: [total: number, used: number];
  cpu?: [total: number, used: number];
}

export function host(name: string, o: HostOpts = {}): Host {
  const [mt, mu] = o.mem ?? [65536, 0];
  const [ct, cu] = o.cpu ?? [32, 0];
  return { name, state: o.state ?? "up", memoryMiB: { total: mt, used: mu }, vcpus: { total: ct, used: cu } };
}

export interface PfOpts {
  network: string;
  /** Bus, e.g. "3b": PF 0000:3b:00.0, VFs 0000:3b:02.0 ... */
  bus: string;
  vfs?: number;
  /** How many of the VFs (the first ones) are leased. */
  leased?: number;
  vendor?: string;
  device?: string;
  numa?: number;
  bandwidthMbps?: number;
}

export function pf(hostName: string, o: PfOpts): { pf: PhysicalFunction; vfs: VirtualFunction[] } {
  const bdf = `0000:${o.bus}:00.0`;
  const vendor = o.vendor ?? "8086";
  const device = o.device ?? "154c";
  const numaNode = o.numa ?? 0;
  const p: PhysicalFunction = { host: hostName, bdf, network: o.network, bandwidthMbps: o.bandwidthMbps ?? 25000, vendor, device, numaNode };
  const vfs: VirtualFunction[] = [];
  for (let i = 0; i < (o.vfs ?? 4); i++) {
    vfs.push({
      host: hostName,
      bdf: `0000:${o.bus}:02.${i}`,
      pf: bdf,
      network: o.network,
      vendor,
      device,
      numaNode,
      leasedBy: i < (o.leased ?? 0) ? `other-${hostName}-${o.bus}-${i}` : null,
    });
  }
  return { pf: p, vfs };
}

export function cluster(hosts: Host[], pfs: { pf: PhysicalFunction; vfs: VirtualFunction[] }[], revision = 1): ClusterSnapshot {
  return { revision, hosts, pfs: pfs.map((x) => x.pf), vfs: pfs.flatMap((x) => x.vfs) };
}

export function nic(name: string, network: string, o: Partial<PlacementNic> = {}): PlacementNic {
  return { name, network, mode: "failover", policy: "mandatory", ...o };
}

export function vm(o: Partial<PlacementVm> = {}): PlacementVm {
  return {
    uuid: "00000000-0000-4000-8000-000000000001",
    name: "web-1",
    memoryMiB: 4096,
    vcpus: 2,
    host: "src",
    nics: [nic("net0", "physnet1")],
    ...o,
  };
}

/** mulberry32: small, fast, seeded. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
