// The cluster as the scheduler sees it: an immutable snapshot of hosts,
// physical functions (PFs) and their virtual functions (VFs), plus the
// placement request. Plain data only; the controller builds a snapshot from
// its store and agents' inventories, the scheduler never mutates it.
import type { NicMode, NicPolicy } from "./vm.ts";

export const HOST_STATES = ["up", "down", "draining"] as const;
export type HostState = (typeof HOST_STATES)[number];

export interface Capacity {
  readonly total: number;
  readonly used: number;
}

export interface Host {
  readonly name: string;
  readonly state: HostState;
  readonly memoryMiB: Capacity;
  readonly vcpus: Capacity;
  /** Number of NUMA nodes, where known. */
  readonly numaNodes?: number;
  /** Native VFIO device-state migration on this host (its agent's probe), where known. */
  readonly vfioMigration?: { readonly available: boolean; readonly reason: string };
}

export interface PhysicalFunction {
  readonly host: string;
  /** PCI address, e.g. 0000:3b:00.0 (unique per host). */
  readonly bdf: string;
  /** The physical network the PF's uplink is cabled to (physnet1, ...). */
  readonly network: string;
  readonly bandwidthMbps: number;
  /** PCI vendor id, 4 hex digits (8086). */
  readonly vendor: string;
  /** PCI device id, 4 hex digits (154c). */
  readonly device: string;
  readonly numaNode: number;
}

export interface VirtualFunction {
  readonly host: string;
  readonly bdf: string;
  /** BDF of the parent PF on the same host. */
  readonly pf: string;
  readonly network: string;
  readonly vendor: string;
  readonly device: string;
  readonly numaNode: number;
  /** Who holds the lease (an instance or VM id), or null when free. */
  readonly leasedBy: string | null;
}

export interface ClusterSnapshot {
  /** Store revision the snapshot was read at, for compare-and-swap commits of a plan. */
  readonly revision?: number;
  readonly hosts: readonly Host[];
  readonly pfs: readonly PhysicalFunction[];
  readonly vfs: readonly VirtualFunction[];
}

/** The identity of a VF across the cluster (a BDF is only unique per host). */
export function vfKey(host: string, bdf: string): string {
  return `${host}/${bdf}`;
}

export interface PlacementNic {
  readonly name: string;
  readonly network: string;
  readonly mode: NicMode;
  readonly policy: NicPolicy;
  /** Only VFs of this PCI vendor id. */
  readonly vendor?: string;
  /** Only VFs of this PCI device id. */
  readonly device?: string;
  /** The VF the NIC uses on the current host (BDF), if any. */
  readonly currentVf?: string;
}

export interface PlacementVm {
  readonly uuid: string;
  readonly name: string;
  readonly memoryMiB: number;
  readonly vcpus: number;
  /** The host the VM runs on now. */
  readonly host: string;
  /** The NUMA node the VM is pinned to, where known; VFs on that node are preferred. */
  readonly numaNode?: number;
  readonly nics: readonly PlacementNic[];
}

export interface PlacementOptions {
  /** Consider only this host. */
  readonly to?: string;
  /** Never these hosts. */
  readonly exclude?: readonly string[];
  /** VFs promised to other plans (keys from vfKey): never handed out again. */
  readonly reservedVfs?: ReadonlySet<string>;
  /** How many ranked destinations to return (default 5). */
  readonly limit?: number;
}

export interface PlacementRequest {
  readonly vm: PlacementVm;
  readonly options?: PlacementOptions;
}
