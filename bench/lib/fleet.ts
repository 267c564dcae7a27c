// Synthetic fleets for benchmarks: deterministic (seeded), realistic occupancy.
import type { ClusterSnapshot, Host, PhysicalFunction, PlacementNic, PlacementVm, VirtualFunction } from "../../src/model/cluster.ts";

import { prng } from "../../src/scheduler/fixtures.ts";

export { prng };

export const NETWORKS = ["physnet1", "physnet2", "physnet3", "physnet4"] as const;
const MODELS = [
  { vendor: "8086", device: "154c", bandwidthMbps: 25000 }, // Intel X710 VF
  { vendor: "15b3", device: "101e", bandwidthMbps: 100000 }, // Mellanox ConnectX VF
] as const;
const BUSES = ["3b", "5e", "af", "d8"] as const;

export interface FleetOptions {
  hosts: number;
  seed: number;
  /** Fraction of hosts down and draining (each). */
  down?: number;
  draining?: number;
}

export interface Fleet {
  snapshot: ClusterSnapshot;
  vfCount: number;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}

/**
 * Every host has 64 VFs: half the hosts 2 PFs × 32 VFs on two of the four
 * networks, half 4 PFs × 16 VFs, one per network. 40–90 % of each PF's VFs
 * leased, memory and vCPUs 30–95 % used.
 */
export function syntheticFleet(o: FleetOptions): Fleet {
  const r = prng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const down = o.down ?? 0.02;
  const draining = o.draining ?? 0.02;
  // BDF strings are shared between hosts (the same slots on every host), as on real fleets.
  const pfBdf = BUSES.map((b) => `0000:${b}:00.0`);
  const vfBdf = BUSES.map((b) => Array.from({ length: 32 }, (_, i) => `0000:${b}:${hex2(2 + (i >> 3))}.${i & 7}`));
  const hosts: Host[] = [];
  const pfs: PhysicalFunction[] = [];
  const vfs: VirtualFunction[] = [];
  const width = String(o.hosts).length;
  for (let i = 0; i < o.hosts; i++) {
    const name = `host-${String(i).padStart(width, "0")}`;
    const x = r();
    const state = x < down ? "down" : x < down + draining ? "draining" : "up";
    const memTotal = pick([262144, 393216, 524288, 786432]);
    const cpuTotal = pick([64, 96, 128]);
    hosts.push({
      name,
      state,
      memoryMiB: { total: memTotal, used: Math.floor(memTotal * (0.3 + 0.65 * r())) },
      vcpus: { total: cpuTotal, used: Math.floor(cpuTotal * (0.3 + 0.65 * r())) },
      numaNodes: 2,
    });
    const model = pick(MODELS);
    const four = r() < 0.5;
    const nPf = four ? 4 : 2;
    const perPf = four ? 16 : 32;
    const first = Math.floor(r() * NETWORKS.length);
    for (let p = 0; p < nPf; p++) {
      const network = four ? NETWORKS[p]! : NETWORKS[(first + 2 * p) % NETWORKS.length]!;
      const numaNode = p % 2;
      const bdf = pfBdf[p]!;
      pfs.push({ host: name, bdf, network, bandwidthMbps: model.bandwidthMbps, vendor: model.vendor, device: model.device, numaNode });
      const leased = Math.round(perPf * (0.4 + 0.5 * r()));
      for (let v = 0; v < perPf; v++) {
        vfs.push({
          host: name,
          bdf: vfBdf[p]![v]!,
          pf: bdf,
          network,
          vendor: model.vendor,
          device: model.device,
          numaNode,
          leasedBy: v < leased ? `inst-${i}-${p}-${v}` : null,
        });
      }
    }
  }
  return { snapshot: { revision: 1, hosts, pfs, vfs }, vfCount: vfs.length };
}

/** A plausible VM to place: 1–3 NICs, mostly failover + mandatory, some constrained, optional or emulated. */
export function syntheticVm(r: () => number, id: number, hostName: string): PlacementVm {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const nics: PlacementNic[] = [];
  const n = 1 + Math.floor(r() * 3);
  for (let k = 0; k < n; k++) {
    const x = r();
    const mode = x < 0.1 ? "emulated" : x < 0.25 ? "ephemeral" : "failover";
    const y = r();
    const policy = y < 0.6 ? "mandatory" : y < 0.8 ? "requisite" : "optional";
    const model = r() < 0.1 ? pick(MODELS) : undefined;
    nics.push({ name: `net${k}`, network: pick(NETWORKS), mode, policy, ...(model ? { vendor: model.vendor, device: model.device } : {}) });
  }
  return {
    uuid: `00000000-0000-4000-8000-${String(id).padStart(12, "0")}`,
    name: `vm-${id}`,
    memoryMiB: pick([2048, 4096, 8192, 16384, 32768]),
    vcpus: pick([1, 2, 4, 8]),
    host: hostName,
    ...(r() < 0.5 ? { numaNode: Math.floor(r() * 2) } : {}),
    nics,
  };
}
