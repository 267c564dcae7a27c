// The host's inventory as the API and the CLI show it: PFs, the VFs this host
// may lease (network, stand-in model, lease holder), networks and leases.
// Pure: built from the config, a sysfs inventory and the current leases.
import type { NativeVfioMigration } from "../host/native-migration.ts";
import { resolveUplinks } from "../host/config.ts";
import type { HostConfig, UsableVf } from "../host/config.ts";
import type { Lease } from "../host/leases.ts";
import { findDevice } from "../host/sysfs.ts";
import type { Inventory } from "../host/sysfs.ts";
import type { InventoryView } from "../wire/agent-api.ts";

export function buildInventoryView(config: HostConfig, inv: Inventory, leases: readonly Lease[], vfioMigration?: NativeVfioMigration): InventoryView {
  const uplinks = resolveUplinks(config, inv);
  const byVf = new Map(leases.map((l) => [l.vf, l]));
  const vfs = uplinks.flatMap((u) => u.vfs);
  return {
    host: config.name,
    sysfsRoot: config.sysfsRoot,
    pfs: uplinks.map((u) => {
      const dev = findDevice(inv, u.pf);
      return {
        bdf: u.pf,
        ifname: u.pfIfname,
        network: u.network,
        vendor: dev?.vendor ?? "",
        device: dev?.device ?? "",
        numaNode: u.numaNode,
        bandwidthMbps: u.bandwidthMbps,
        totalVfs: dev?.sriov?.totalVfs ?? 0,
        numVfs: dev?.sriov?.numVfs ?? 0,
      };
    }),
    vfs: vfs.map((vf: UsableVf) => ({
      bdf: vf.bdf,
      pf: vf.pf,
      pfIfname: vf.pfIfname,
      vfIndex: vf.vfIndex,
      network: vf.network,
      vendor: vf.vendor,
      device: vf.device,
      numaNode: vf.numaNode,
      mac: vf.mac,
      vlan: vf.vlan,
      standIn: vf.standIn,
      lease: byVf.get(vf.bdf)?.holder ?? null,
    })),
    networks: config.networks.map((n) => {
      const on = vfs.filter((vf) => vf.network === n.name);
      return { name: n.name, bridge: n.bridge, netns: n.netns, vlan: n.vlan, vfs: on.length, free: on.filter((vf) => !byVf.has(vf.bdf)).length };
    }),
    leases: [...leases],
    problems: inv.problems.map((p) => ({ ...p })),
    ...(vfioMigration ? { vfioMigration: { ...vfioMigration } } : {}),
  };
}
