// Tables for `ferry hosts`, `ferry devices`, `ferry vms` (input: the controller API's views).
import type { DeviceRowT, EventView, HostViewT, VmViewT } from "../../wire/controller-api.ts";
import { renderTable } from "./table.ts";

function ago(ms: number, now: number): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 120 ? `${s}s ago` : `${Math.round(s / 60)}m ago`;
}

/** "physnet1 1/8, physnet2 0/4": leased/usable VFs per network; "?" when the agent did not answer. */
export function vfUseText(h: Pick<HostViewT, "vfs">): string {
  if (h.vfs === undefined || h.vfs === null) return "?";
  if (h.vfs.length === 0) return "none";
  return h.vfs.map((n) => `${n.network} ${n.used}/${n.total}`).join(", ");
}

/** A host's migration address and transport: "10.92.0.11 tls", "10.92.0.11 PLAIN", or "127.0.0.1 only". */
function migrationText(h: HostViewT): string {
  if (!h.migration) return "127.0.0.1 only";
  return `${h.migration.address} ${h.migration.tls ? "tls" : "PLAIN"}`;
}

export function renderHosts(hosts: readonly HostViewT[], now: number): string {
  if (hosts.length === 0) return "(no hosts: no agent has sent a heartbeat)\n";
  const table = renderTable(["HOST", "STATE", "VFS USED/TOTAL", "MIGRATION", "URL", "VERSION", "ACCEL", "HEARTBEAT"], hosts.map((h) => [h.name, h.state, vfUseText(h), migrationText(h), h.url, h.version, h.accel, ago(h.lastHeartbeat, now)]));
  const warn = hosts.flatMap((h) => [
    ...(h.warnings ?? []).map((w) => `warning: ${h.name}: ${w}`),
    ...(!h.migration
      ? [`warning: ${h.name} has no migration network (host.yaml migration:): it takes migrations only from hosts on the same machine`]
      : h.migration.tls ? [] : [`warning: ${h.name}'s migration stream is plain TCP (migration.tls: false): guest memory crosses the migration network unencrypted`]),
  ]);
  return warn.length === 0 ? table : `${table}${warn.join("\n")}\n`;
}

export function renderDevices(rows: readonly DeviceRowT[]): string {
  if (rows.length === 0) return "(no devices)\n";
  return renderTable(
    ["HOST", "VF", "PF", "NETWORK", "VENDOR:DEVICE", "NUMA", "MODEL", "MAC", "LEASE", "VM"],
    rows.map((d) => [d.host, d.vf, d.pf, d.network, `${d.vendor}:${d.device}`, d.numaNode, d.model, d.mac, d.lease, d.vm]),
  );
}

export function nicText(n: VmViewT["nics"][number]): string {
  return `${n.name} ${n.network}/${n.mode}/${n.policy} ${n.mac} ${n.vf ?? "-"}`;
}

export function renderVms(vms: readonly VmViewT[]): string {
  if (vms.length === 0) return "(no VMs)\n";
  return renderTable(
    ["VM", "STATE", "HOST", "INSTANCE", "MEM", "VCPUS", "NICS (name network/mode/policy mac vf)"],
    vms.map((v) => [v.name, v.guestPanicked === undefined ? v.state : `${v.state}, guest panicked`, v.host, v.instanceId, `${v.memoryMiB}M`, v.vcpus, v.nics.map(nicText).join("; ")]),
  );
}

export function renderVm(v: VmViewT): string {
  const out = [`vm ${v.name} (${v.uuid}): ${v.state} on ${v.host}${v.instanceId ? ` as ${v.instanceId}` : ""}, ${v.memoryMiB} MiB${v.ramTrimKiB === undefined ? "" : ` (${v.ramTrimKiB} KiB short: QEMU < 9.0 under TCG migrates whole MiB with lost writes)`}${v.sharedMemory === true ? " in a shared file" : ""}, ${v.vcpus} vCPU${v.noOs ? ", no OS" : ""}`];
  if (v.guestPanicked !== undefined) out.push(`the guest's kernel panicked at ${new Date(v.guestPanicked.at).toISOString()} (pvpanic): it runs no more; 'ferry vm stop ${v.name}' then 'ferry vm start ${v.name}' boots it again`);
  out.push(`migrations converge with: ${v.convergence ?? "auto"}${v.convergence === undefined ? " (the default; 'ferry vm set' changes it)" : " (the VM's policy; a migration may ask for another)"}`);
  out.push(
    renderTable(
      ["NIC", "NETWORK", "MODE", "POLICY", "MAC", "ADDRESS", "GUEST PORTS", "VF"],
      v.nics.map((n) => [n.name, n.network, n.mode, n.policy, n.mac, n.address, [n.guestPorts.standby === undefined ? "" : `standby ${n.guestPorts.standby}`, n.guestPorts.primary === undefined ? "" : `primary ${n.guestPorts.primary}`].filter((s) => s).join(", "), n.vf]),
    ),
  );
  return out.join("\n");
}

export function eventLine(e: EventView): string {
  const t = new Date(e.at).toISOString();
  switch (e.type) {
    case "phase":
      return `${t} ${e.migrationId} phase ${e.from} → ${e.to} (${e.event})`;
    case "outcome":
      return `${t} ${e.migrationId} outcome ${e.outcome}${e.code ? ` ${e.code}` : ""}: ${e.reason}${e.runsOn ? ` (runs on ${e.runsOn.host} ${e.runsOn.instanceId})` : ""}`;
    case "host-up":
    case "host-down":
    case "host-registered":
      return `${t} ${e.type} ${e.host}: ${e.reason}`;
    case "vm-created":
    case "vm-started":
    case "vm-stopped":
    case "vm-deleted":
    case "vm-moved":
      return `${t} ${e.type} ${e.vm} on ${e.host}${e.instanceId ? ` (${e.instanceId})` : ""}`;
    case "step":
      return `${t} ${e.migrationId} ${e.phase}: ${e.step}${e.resent ? " (re-sent)" : ""}${e.attempt > 1 ? ` attempt ${e.attempt}` : ""}`;
    case "step-failed":
      return `${t} ${e.migrationId} ${e.phase}: ${e.step} failed (attempt ${e.attempt}): ${e.code}: ${e.message}`;
    case "nic-degraded":
    case "nic-missing":
      return `${t} ${e.migrationId} ${e.type} ${e.nic} (${e.policy}): ${e.status}${e.error ? `: ${e.error}` : ""}`;
    case "warning":
      return `${t} ${e.migrationId} warning: ${e.text}`;
    case "cancel-requested":
      return `${t} ${e.migrationId} cancel requested in ${e.phase}`;
    case "cleanup":
      return `${t} ${e.migrationId} destination cleanup on ${e.host}: ${e.state} (attempt ${e.attempts})${e.error ? `: ${e.error}` : ""}`;
    case "tuned":
      return `${t} ${e.migrationId} ${e.action}: max bandwidth ${e.maxBandwidthMiBps} MiB/s, downtime limit ${e.downtimeLimitMs} ms`;
  }
}
