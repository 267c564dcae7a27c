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
  /** "kvm" or "tcg", as the agent reported it. */
  accel?: string;
}

/** What the pre-flight checks read of a host's record (the heartbeat's facts); undefined: a host nobody reported. */
export function hostFacts(name: string, h: { qemu?: HostFacts["qemu"]; memory?: HostFacts["memory"]; accel?: string } | undefined): HostFacts {
  return { name, ...(h?.qemu ? { qemu: h.qemu } : {}), ...(h?.memory ? { memory: h.memory } : {}), ...(h?.accel === undefined ? {} : { accel: h.accel }) };
}

export interface PreflightVm {
  name: string;
  memoryMiB: number;
  sharedMemory?: boolean;
  /** KiB of RAM short of memoryMiB (model/vm.ts ramTrimKiB): set for guests created where tcgDirtySyncExposed. */
  ramTrimKiB?: number;
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

/**
 * QEMU before 9.0 under TCG loses guest writes in a live migration: the fast
 * path of its dirty-bitmap sync (a RAM block of whole 256 KiB, 64 pages per
 * bitmap word) clears the dirty bits without resetting TCG's write-tracking
 * (TLB_NOTDIRTY), so stores through TLB entries already marked dirty do not
 * mark the page again, and a page written after it was sent is not sent
 * again (QEMU commit 03bfc2188f, "physmem: Fix migration dirty bitmap
 * coherency with TCG memory access", in 9.0). Seen here as guests broken
 * after cross-host hops, file-backed (2 in 8 hops) and anonymous (2 in 12),
 * and none with RAM 8 KiB short of whole MiB, which takes the page-by-page
 * path (0 in 30 and 0 in 40; docs/known-issues.md).
 * Unknown QEMU version under TCG counts as exposed. KVM tracks dirty pages
 * itself.
 */
export function tcgDirtySyncExposed(h: { accel?: string; qemu?: { version: string } }): boolean {
  return h.accel === "tcg" && (h.qemu === undefined || compareVersions(h.qemu.version, "9.0.0") < 0);
}

/** The ends of a migration that are tcgDirtySyncExposed, as "host1 (TCG, QEMU 7.2.22)". */
function exposedHosts(source: HostFacts, dest: HostFacts): string[] {
  return [source, dest].filter(tcgDirtySyncExposed).map((h) => `${h.name} (TCG, QEMU ${h.qemu?.version ?? "version unknown"})`);
}

/** What an untrimmed VM's warning and blocker both say: it gets the trim at its next start. */
const restartForTrim = (name: string, when = ""): string =>
  `VMs created or started there now get RAM 8 KiB short of whole MiB, which QEMU migrates correctly: stop ${name} and start it again${when} ('ferry vm stop ${name}', 'ferry vm start ${name}')`;

/** Why a file-backed guest must not migrate between `source` and `dest`, or undefined: its RAM is trimmed, or neither end is exposed. */
export function sharedMemoryBlocker(vm: Pick<PreflightVm, "name" | "sharedMemory" | "ramTrimKiB">, source: HostFacts, dest: HostFacts): string | undefined {
  if (vm.sharedMemory !== true || vm.ramTrimKiB !== undefined) return undefined;
  const exposed = exposedHosts(source, dest);
  if (exposed.length === 0) return undefined;
  return `${vm.name}'s RAM is mapped from a shared file (--shared-memory) of whole MiB, and QEMU before 9.0 under TCG, as on ${exposed.join(" and ")}, loses guest writes when it migrates such RAM (docs/known-issues.md); ${restartForTrim(vm.name)}, or move it with 'ferry migrate ${vm.name} --local'`;
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
  const sharedBlocker = sharedMemoryBlocker(vm, source, dest);
  if (sharedBlocker !== undefined) out.push({ check: "SHARED_MEMORY", status: "blocker", message: sharedBlocker });
  else if (vm.sharedMemory === true) {
    out.push({ check: "SHARED_MEMORY", status: "ok", message: vm.ramTrimKiB === undefined ? "RAM is mapped from a shared file; it moves over the migration stream (neither QEMU loses writes under TCG)" : `RAM is mapped from a shared file, ${vm.ramTrimKiB} KiB short of whole MiB (QEMU before 9.0 under TCG migrates that correctly); it moves over the migration stream` });
  } else {
    const exposed = vm.ramTrimKiB === undefined ? exposedHosts(source, dest) : [];
    out.push(exposed.length === 0
      ? { check: "SHARED_MEMORY", status: "ok", message: `RAM is anonymous memory${vm.ramTrimKiB === undefined ? "" : `, ${vm.ramTrimKiB} KiB short of whole MiB (QEMU before 9.0 under TCG migrates that correctly)`}: it moves over the migration stream` }
      : { check: "SHARED_MEMORY", status: "warning", message: `${vm.name}'s RAM is anonymous memory of whole MiB, and QEMU before 9.0 under TCG, as on ${exposed.join(" and ")}, may lose guest writes migrating it (the guest crashes or computes on stale data; docs/known-issues.md); ${restartForTrim(vm.name, " when you can")}` });
  }
  return out;
}
