// Native VFIO device-state migration (issue 17 item 3): can this host's QEMU
// move a VF's device state with the guest, instead of Ferry's failover or
// ephemeral (the VF unplugged before the switch-over, a new one plugged after)?
//
// It needs both:
//   - QEMU ≥ 8.1, whose vfio-pci has the `enable-migration` property (the
//     VFIO migration v2 protocol; 7.2 has only the experimental
//     `x-enable-migration` of protocol v1, which Linux ≥ 6.2 no longer offers);
//   - a VF whose vfio-pci variant driver implements migration: the kernel
//     offers it through device-specific drivers (mlx5_vfio_pci for NVIDIA/
//     Mellanox ConnectX-7 VFs, hisi_acc_vfio_pci, pds_vfio_pci, virtio_vfio_pci),
//     never through plain vfio-pci. Sysfs has no generic "can migrate" file:
//     Ferry looks for such a driver loaded (/sys/bus/pci/drivers/<name>) for
//     the VF's vendor.
//
// The agent probes once at start and reports the verdict with its inventory;
// `ferry migrate --plan` shows it per NIC. Ferry does not yet use native
// migration even where it is possible: its VFs move by failover/ephemeral.
import { access } from "node:fs/promises";
import { join } from "node:path";
import { toFerryError } from "../core/errors.ts";
import type { Runner } from "../core/run.ts";
import { parseQemuVersion } from "./check.ts";

export interface NativeVfioMigration {
  available: boolean;
  /** Why (not): one sentence an operator can act on. */
  reason: string;
}

/** vfio-pci variant drivers with migration support, by the PCI vendor of the VFs they drive. */
export const VFIO_MIGRATION_DRIVERS: readonly { driver: string; vendor: string }[] = [
  { driver: "mlx5_vfio_pci", vendor: "15b3" },
  { driver: "hisi_acc_vfio_pci", vendor: "19e5" },
  { driver: "pds_vfio_pci", vendor: "1dd8" },
  { driver: "virtio_vfio_pci", vendor: "1af4" },
];

/** The migration property `-device vfio-pci,help` lists: `enable-migration` (≥ 8.1), `x-enable-migration` (experimental, ≤ 8.0), or null. */
export function vfioMigrationProperty(help: string): "enable-migration" | "x-enable-migration" | null {
  if (/^\s*enable-migration=/m.test(help)) return "enable-migration";
  if (/^\s*x-enable-migration=/m.test(help)) return "x-enable-migration";
  return null;
}

export interface VerdictInput {
  /** `qemu-system-x86_64 --version` output. */
  version: string;
  /** `qemu-system-x86_64 -device vfio-pci,help` output. */
  vfioHelp: string;
  /** The host's VFs: vendor and whether a stand-in. */
  vfs: readonly { vendor: string; standIn: boolean }[];
  /** Which vfio-pci variant drivers are loaded. */
  loadedDrivers: ReadonlySet<string>;
}

/** The verdict from what was probed (pure). */
export function nativeVfioVerdict(i: VerdictInput): NativeVfioMigration {
  const v = parseQemuVersion(i.version);
  const prop = vfioMigrationProperty(i.vfioHelp);
  if (v === null) return { available: false, reason: `QEMU's version is unknown (${i.version.trim().slice(0, 100) || "no output"})` };
  const new81 = v.major > 8 || (v.major === 8 && v.minor >= 1);
  if (!new81 || prop !== "enable-migration") {
    const has = prop === "x-enable-migration" ? "only the experimental x-enable-migration (VFIO migration protocol v1, gone from Linux ≥ 6.2)" : "no migration property on vfio-pci";
    return { available: false, reason: `QEMU ${v.text} has ${has}: device-state migration of a VF needs QEMU ≥ 8.1 (vfio-pci enable-migration); VFs move by failover/ephemeral` };
  }
  const real = i.vfs.filter((x) => !x.standIn);
  if (real.length === 0) return { available: false, reason: `QEMU ${v.text} can, but this host's VFs are stand-ins (emulated NICs: no device state to move)` };
  const capable = VFIO_MIGRATION_DRIVERS.filter((d) => i.loadedDrivers.has(d.driver) && real.some((x) => x.vendor === d.vendor));
  if (capable.length === 0) {
    const vendors = [...new Set(real.map((x) => x.vendor))].join(", ");
    return { available: false, reason: `QEMU ${v.text} can, but no vfio-pci variant driver with migration support is loaded for this host's VFs (vendor ${vendors}; known: ${VFIO_MIGRATION_DRIVERS.map((d) => `${d.driver} for ${d.vendor}`).join(", ")}); VFs move by failover/ephemeral` };
  }
  return { available: true, reason: `QEMU ${v.text} (vfio-pci enable-migration) and ${capable.map((d) => d.driver).join(", ")} loaded: a VF's device state can move with the guest (Ferry still moves VFs by failover/ephemeral)` };
}

export interface ProbeDeps {
  run: Runner;
  /** Default qemu-system-x86_64. */
  qemuBinary?: string | undefined;
  sysfsRoot: string;
  vfs: readonly { vendor: string; standIn: boolean }[];
  signal?: AbortSignal | undefined;
}

/** Ask QEMU and sysfs (two QEMU runs, in parallel); never throws: a failure is an "unavailable" with its cause. */
export async function probeNativeVfioMigration(d: ProbeDeps): Promise<NativeVfioMigration> {
  const bin = d.qemuBinary ?? "qemu-system-x86_64";
  const opts = { timeoutMs: 15_000, allowFailure: true, ...(d.signal ? { signal: d.signal } : {}) };
  try {
    const [version, help] = await Promise.all([d.run(bin, ["--version"], opts), d.run(bin, ["-device", "vfio-pci,help"], opts)]);
    const loaded = new Set<string>();
    for (const x of VFIO_MIGRATION_DRIVERS) {
      if (await access(join(d.sysfsRoot, "bus", "pci", "drivers", x.driver)).then(() => true, () => false)) loaded.add(x.driver);
    }
    return nativeVfioVerdict({ version: version.stdout, vfioHelp: help.stdout, vfs: d.vfs, loadedDrivers: loaded });
  } catch (e) {
    return { available: false, reason: `cannot ask ${bin}: ${toFerryError(e).message}` };
  }
}
