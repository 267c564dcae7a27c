// The scheduler's ClusterSnapshot, built from the store's hosts and VMs and
// each live host's agent inventory. Pure: the caller fetches the inventories.
import type { InventoryView } from "../wire/agent-api.ts";
import type { ClusterSnapshot, Host, PhysicalFunction, VirtualFunction } from "../model/cluster.ts";
import type { HostRecord, VmRecord } from "../store/cluster.ts";

export const DEFAULT_BANDWIDTH_MBPS = 10_000;

export interface SnapshotInput {
  hosts: readonly HostRecord[];
  vms: readonly VmRecord[];
  /** Inventories of the hosts that answered; a live host missing here counts as down. */
  inventories: ReadonlyMap<string, InventoryView>;
  capacity: { memoryMiB: number; vcpus: number };
}

function holderId(l: NonNullable<InventoryView["vfs"][number]["lease"]>): string {
  return l.kind === "instance" ? l.instanceId : l.migrationId;
}

export function buildSnapshot(i: SnapshotInput): ClusterSnapshot {
  const hosts: Host[] = [];
  const pfs: PhysicalFunction[] = [];
  const vfs: VirtualFunction[] = [];
  for (const h of i.hosts) {
    const inv = i.inventories.get(h.name);
    const placed = i.vms.filter((vm) => vm.host === h.name && vm.state !== "stopped");
    const state = h.state === "down" || inv === undefined ? "down" : h.state;
    hosts.push({
      name: h.name,
      state,
      memoryMiB: { total: i.capacity.memoryMiB, used: placed.reduce((s, vm) => s + vm.memoryMiB, 0) },
      vcpus: { total: i.capacity.vcpus, used: placed.reduce((s, vm) => s + vm.vcpus, 0) },
      ...(inv?.vfioMigration ? { vfioMigration: { ...inv.vfioMigration } } : {}),
    });
    if (!inv) continue;
    for (const p of inv.pfs) {
      pfs.push({ host: h.name, bdf: p.bdf, network: p.network, bandwidthMbps: p.bandwidthMbps ?? DEFAULT_BANDWIDTH_MBPS, vendor: p.vendor, device: p.device, numaNode: p.numaNode ?? 0 });
    }
    for (const v of inv.vfs) {
      vfs.push({ host: h.name, bdf: v.bdf, pf: v.pf, network: v.network, vendor: v.vendor, device: v.device, numaNode: v.numaNode ?? 0, leasedBy: v.lease ? holderId(v.lease) : null });
    }
  }
  return { hosts, pfs, vfs };
}
