// `ferry agent inventory`: the host's PFs, VFs, networks, leases and sysfs
// problems as tables. Input is the API's InventoryView (same as GET /v1/inventory).
import type { InventoryView } from "../../wire/agent-api.ts";
import { renderTable } from "./table.ts";

type Holder = NonNullable<InventoryView["vfs"][number]["lease"]>;

export function holderText(h: Holder | null, now?: number): string {
  if (h === null) return "-";
  if (h.kind === "instance") return `instance ${h.instanceId} (vm ${h.vmUuid.slice(0, 8)})`;
  const left = now === undefined ? "" : `, ${Math.max(0, Math.round((h.expiresAt - now) / 1000))}s left`;
  return `migration ${h.migrationId} (vm ${h.vmUuid.slice(0, 8)}${left})`;
}

export function renderInventory(inv: InventoryView, now?: number): string {
  const out: string[] = [`host ${inv.host} (sysfs ${inv.sysfsRoot})`, ""];
  out.push("PHYSICAL FUNCTIONS");
  out.push(
    renderTable(
      ["PF", "IFNAME", "NETWORK", "VENDOR:DEVICE", "NUMA", "MBPS", "VFS"],
      inv.pfs.map((p) => [p.bdf, p.ifname, p.network, `${p.vendor}:${p.device}`, p.numaNode, p.bandwidthMbps, `${p.numVfs}/${p.totalVfs}`]),
    ),
  );
  out.push("VIRTUAL FUNCTIONS");
  out.push(
    renderTable(
      ["VF", "PF", "#", "NETWORK", "STAND-IN", "MAC", "NUMA", "VLAN", "LEASE"],
      inv.vfs.map((v) => [v.bdf, v.pf, v.vfIndex, v.network, v.standIn?.model ?? "no (vfio)", v.mac, v.numaNode, v.vlan, holderText(v.lease, now)]),
    ),
  );
  out.push("NETWORKS");
  out.push(renderTable(["NETWORK", "BRIDGE", "NETNS", "VLAN", "VFS", "FREE"], inv.networks.map((n) => [n.name, n.bridge, n.netns, n.vlan, n.vfs, n.free])));
  out.push("LEASES");
  out.push(
    inv.leases.length === 0
      ? "(none)\n"
      : renderTable(["VF", "HOLDER", "SINCE"], inv.leases.map((l) => [l.vf, holderText(l.holder, now), new Date(l.createdAt).toISOString()])),
  );
  if (inv.problems.length > 0) {
    out.push("SYSFS PROBLEMS");
    out.push(renderTable(["DEVICE", "PATH", "PROBLEM"], inv.problems.map((p) => [p.bdf, p.path, p.message])));
  }
  return out.join("\n");
}
