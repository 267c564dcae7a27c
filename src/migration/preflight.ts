// A migration's pre-flight checks per destination, beside the scheduler's
// (VFs, capacity): QEMU version, machine type, CPU model, free memory, the
// shared-memory constraint. Pure: from what the agents reported in their
// heartbeats. Each check says ok, a warning, a blocker, or that it could not
// be checked, with its reason.

export const CHECK_STATUSES = ["ok", "warning", "blocker", "unchecked"] as const;
export type CheckStatus = (typeof CHECK_STATUSES)[number];

export interface PreflightCheck {
  check: "QEMU_VERSION" | "MACHINE_TYPE" | "CPU_MODEL" | "MEMORY" | "SHARED_MEMORY" | "MIGRATION_TLS";
  status: CheckStatus;
  message: string;
}

export interface HostFacts {
  name: string;
  qemu?: { version: string; machines: readonly { name: string; aliasOf?: string }[]; cpuModels: readonly string[] };
  memory?: { totalMiB: number; availableMiB: number };
}

export interface PreflightVm {
  name: string;
  memoryMiB: number;
  sharedMemory?: boolean;
  /** The -machine type the instance runs (Ferry: q35). */
  machine: string;
  /** The -cpu model (Ferry: qemu64). */
  cpuModel: string;
}

/** "7.2.22" → [7, 2, 22]; comparison of two versions (negative: a older than b). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

const unreported = (h: string, what: string): string => `not checked: ${h}'s agent reported no ${what} (an older agent, or its QEMU could not be asked: see its log)`;

/** What the source's machine type resolves to (q35 → pc-q35-7.2 on its QEMU); the name itself when not an alias or unknown. */
function resolved(machine: string, facts: HostFacts): string {
  return facts.qemu?.machines.find((m) => m.name === machine)?.aliasOf ?? machine;
}

export function preflightChecks(vm: PreflightVm, source: HostFacts, dest: HostFacts): PreflightCheck[] {
  const out: PreflightCheck[] = [];
  const s = source.qemu;
  const d = dest.qemu;
  // QEMU version: a QEMU loads streams of its own and older versions only
  if (!s || !d) out.push({ check: "QEMU_VERSION", status: "unchecked", message: unreported(!s ? source.name : dest.name, "QEMU version") });
  else if (compareVersions(d.version, s.version) < 0) {
    out.push({ check: "QEMU_VERSION", status: "blocker", message: `${dest.name} runs QEMU ${d.version}, older than ${source.name}'s ${s.version}: an older QEMU cannot load a newer one's migration stream; upgrade QEMU on ${dest.name} or choose a host with QEMU ≥ ${s.version}` });
  } else out.push({ check: "QEMU_VERSION", status: "ok", message: `QEMU ${s.version} → ${d.version}${d.version === s.version ? " (same)" : " (newer: loads the older stream)"}` });

  // machine type: the destination is started with the same -machine name; it must resolve to the same versioned machine
  if (!s || !d) out.push({ check: "MACHINE_TYPE", status: "unchecked", message: unreported(!s ? source.name : dest.name, "machine types") });
  else {
    const want = resolved(vm.machine, source);
    const there = resolved(vm.machine, dest);
    if (!d.machines.some((m) => m.name === want)) {
      out.push({ check: "MACHINE_TYPE", status: "blocker", message: `${vm.name} runs machine ${vm.machine} (${want} on ${source.name}), which QEMU ${d.version} on ${dest.name} does not have: choose a host whose QEMU lists ${want} (qemu-system-x86_64 -machine help)` });
    } else if (there !== want) {
      out.push({ check: "MACHINE_TYPE", status: "blocker", message: `the destination's instance is started with -machine ${vm.machine}, which on ${dest.name} is ${there}, not the source's ${want}: the incoming stream would not match the device model; migrate between hosts with the same QEMU machine version` });
    } else out.push({ check: "MACHINE_TYPE", status: "ok", message: `${vm.machine} is ${want} on both hosts` });
  }

  // CPU model: a named model (qemu64) only needs to exist; host CPU features are not compared
  if (!d) out.push({ check: "CPU_MODEL", status: "unchecked", message: unreported(dest.name, "CPU models") });
  else if (!d.cpuModels.includes(vm.cpuModel)) {
    out.push({ check: "CPU_MODEL", status: "blocker", message: `${vm.name} runs CPU model ${vm.cpuModel}, which QEMU ${d.version} on ${dest.name} does not list (qemu-system-x86_64 -cpu help): choose another host` });
  } else out.push({ check: "CPU_MODEL", status: "ok", message: `${vm.cpuModel} is available on ${dest.name} (a named model: the host CPUs' features are not compared)` });

  // memory: the guest's RAM has to fit in what the destination has free
  const m = dest.memory;
  if (!m) out.push({ check: "MEMORY", status: "unchecked", message: unreported(dest.name, "free memory") });
  else if (m.availableMiB < vm.memoryMiB) {
    out.push({ check: "MEMORY", status: "blocker", message: `${vm.name} has ${vm.memoryMiB} MiB of RAM and ${dest.name} has ${m.availableMiB} MiB available (of ${m.totalMiB}): its QEMU would swap or be killed by the OOM killer; free memory there or choose another host` });
  } else if (m.availableMiB - vm.memoryMiB < m.totalMiB * 0.1) {
    out.push({ check: "MEMORY", status: "warning", message: `${dest.name} would have ${m.availableMiB - vm.memoryMiB} MiB left of ${m.totalMiB} after taking ${vm.name}'s ${vm.memoryMiB} MiB (under 10 %)` });
  } else out.push({ check: "MEMORY", status: "ok", message: `${vm.memoryMiB} MiB of RAM, ${m.availableMiB} MiB available on ${dest.name}` });

  // shared memory: docs/known-issues.md (the migration itself refuses it too)
  if (vm.sharedMemory === true) {
    out.push({ check: "SHARED_MEMORY", status: "blocker", message: `${vm.name}'s RAM is mapped from a shared file (--shared-memory), and such guests' memory has come out corrupted after migrations between hosts (docs/known-issues.md): move it with 'ferry migrate ${vm.name} --local', or create it again without --shared-memory` });
  } else out.push({ check: "SHARED_MEMORY", status: "ok", message: "RAM is anonymous memory: it moves over the migration stream" });
  return out;
}
