// The VF lifecycle on a real SR-IOV host (issue 17), as features (./features.ts)
// with init, deinit and rollback in reverse order:
//
//   acquire: 1. vfio-bind: unbind the VF from its host driver, driver_override
//               = vfio-pci, drivers_probe (the previous driver journaled in the
//               state DB first);
//            2. vf-setup: MAC, VLAN, spoof check, trust through the PF
//               (`ip link set dev PF vf N …`, previous settings journaled).
//   release: vf-setup's deinit resets MAC (zero or a configured value) and
//            VLAN 0; vfio-bind's deinit gives the VF back to its host driver
//            when configured (else it stays on vfio-pci, ready for the next
//            lease). A failing acquire undoes everything it did, driver included.
//
// Every sysfs write and every `ip` argv goes through one seam (VfSeam): the
// real one over core/run.ts and fs writes, a recording fake in tests
// (testdata/recording-seam.ts). Each step reads the current state first and
// writes only what differs. Stand-in VFs have no device: no vfio steps, and
// their MAC handling stays standInSetupFeature's.
import { readFile, readlink, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { FerryError } from "../core/errors.ts";
import { run as coreRun } from "../core/run.ts";
import type { Runner } from "../core/run.ts";
import * as v from "../model/validate.ts";
import { ZERO_MAC } from "./config.ts";
import type { Feature, FeatureFailure, VfSetupSpec } from "./features.ts";
import { applyFeatures, removeFeatures, vfSetupFeature } from "./features.ts";
import type { RecordStore } from "./leases.ts";

/** The one place a VF's sysfs writes and `ip` commands are issued. */
export interface VfSeam {
  /** Every command (`ip …`), argv only. */
  run: Runner;
  /** Write a sysfs attribute. */
  write(path: string, value: string): Promise<void>;
  /** A sysfs attribute, trimmed; null when absent. */
  readText(path: string): Promise<string | null>;
  /** The basename a sysfs link points to; null when absent. */
  readLink(path: string): Promise<string | null>;
}

function errno(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

function sysfsError(path: string, what: string, e: unknown): FerryError {
  return new FerryError("FERRY_ERR_SYSFS", `${path}: ${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e, details: { path } });
}

/** The real seam: commands through core/run.ts, sysfs through fs. */
export function realVfSeam(run: Runner = coreRun): VfSeam {
  return {
    run,
    async write(path, value) {
      try {
        await writeFile(path, value);
      } catch (e) {
        throw sysfsError(path, `cannot write ${JSON.stringify(value.trim())}`, e);
      }
    },
    async readText(path) {
      try {
        return (await readFile(path, "utf8")).trim();
      } catch (e) {
        if (errno(e) === "ENOENT") return null;
        throw sysfsError(path, "cannot read", e);
      }
    },
    async readLink(path) {
      try {
        return basename(await readlink(path));
      } catch (e) {
        if (errno(e) === "ENOENT") return null;
        throw sysfsError(path, "cannot read link", e);
      }
    },
  };
}

export const VFIO_BIND_NS = "vfio-bind";
export { ZERO_MAC } from "./config.ts";

export interface VfDeps {
  seam: VfSeam;
  records: RecordStore;
  /** Default /sys. */
  sysfsRoot?: string;
}

interface BindRecord {
  previousDriver: string | null;
  previousOverride: string | null;
}

function readBindRecord(records: RecordStore, vf: string): BindRecord | null {
  const r = records.get(VFIO_BIND_NS, vf);
  if (r === undefined) return null;
  const o = r as Record<string, unknown>;
  const ok = (x: unknown): x is string | null => x === null || typeof x === "string";
  if (typeof r !== "object" || r === null || !ok(o["previousDriver"]) || !ok(o["previousOverride"])) {
    throw new FerryError("FERRY_ERR_FEATURE", `vfio-bind:${vf}: saved previous driver is malformed`, { details: { vf } });
  }
  return { previousDriver: o["previousDriver"], previousOverride: o["previousOverride"] };
}

/** driver_override reads "(null)" when unset. */
const override = (s: string | null): string | null => (s === null || s === "" || s === "(null)" ? null : s);

/**
 * Bind a VF to vfio-pci: unbind from its driver, driver_override = vfio-pci,
 * drivers_probe. Deinit with `restoreDriver` gives it back to the driver it
 * had (override restored, unbind from vfio-pci, drivers_probe); without, it
 * only forgets the journal entry and the VF stays on vfio-pci.
 */
export function vfioBindFeature(deps: VfDeps, vfBdf: string, options: { restoreDriver: boolean }): Feature {
  const vf = v.pciAddress("vf", vfBdf);
  const root = deps.sysfsRoot ?? "/sys";
  const dev = join(root, "bus", "pci", "devices", vf);
  const driverLink = join(dev, "driver");
  const overridePath = join(dev, "driver_override");
  const probe = join(root, "bus", "pci", "drivers_probe");
  const unbind = (driver: string): string => join(root, "bus", "pci", "drivers", driver, "unbind");
  const s = deps.seam;
  return {
    name: `vfio-bind:${vf}`,
    async init() {
      const current = await s.readLink(driverLink);
      if (readBindRecord(deps.records, vf) === null) {
        const previous: BindRecord = { previousDriver: current === "vfio-pci" ? null : current, previousOverride: override(await s.readText(overridePath)) };
        deps.records.putIfAbsent(VFIO_BIND_NS, vf, previous);
      }
      if (current === "vfio-pci") return;
      if (current !== null) await s.write(unbind(current), vf);
      if (override(await s.readText(overridePath)) !== "vfio-pci") await s.write(overridePath, "vfio-pci");
      await s.write(probe, vf);
      const now = await s.readLink(driverLink);
      if (now !== "vfio-pci") {
        throw new FerryError(
          "FERRY_ERR_FEATURE",
          `${vf}: vfio-pci did not bind (driver now ${now ?? "none"}): is the vfio-pci module loaded ('modprobe vfio-pci'), and is the VF alone in its IOMMU group ('ferry host check')?`,
          { details: { vf, driver: now } },
        );
      }
    },
    async deinit() {
      const rec = readBindRecord(deps.records, vf);
      if (rec === null) return;
      if (options.restoreDriver) {
        if (override(await s.readText(overridePath)) !== rec.previousOverride) await s.write(overridePath, rec.previousOverride ?? "\n");
        const current = await s.readLink(driverLink);
        if (current !== rec.previousDriver) {
          if (current !== null) await s.write(unbind(current), vf);
          if (rec.previousDriver !== null) {
            await s.write(probe, vf);
            const now = await s.readLink(driverLink);
            if (now !== rec.previousDriver) {
              throw new FerryError("FERRY_ERR_FEATURE", `${vf}: could not give it back to ${rec.previousDriver} (driver now ${now ?? "none"})`, { details: { vf, driver: now } });
            }
          }
        }
      }
      deps.records.delete(VFIO_BIND_NS, vf);
    },
  };
}

export interface VfLifecycleSpec {
  /** The VF's PCI address. */
  vf: string;
  /** The PF's netdev name and the VF's index on it. */
  pf: string;
  vfIndex: number;
  /** A stand-in VF (no device behind it): nothing here applies. */
  standIn: boolean;
  /** From the lease and the network's config. */
  settings: VfSetupSpec["settings"];
  /** On release: the MAC to leave (default zero) and whether the host driver gets the VF back (default no). */
  release?: { mac?: string; restoreDriver?: boolean };
}

/**
 * The features of one VF, in init order. `acquire`: a rollback restores the
 * driver; `release`: the driver only when the spec says so.
 */
export function vfLifecycleFeatures(deps: VfDeps, spec: VfLifecycleSpec, mode: "acquire" | "release"): Feature[] {
  if (spec.standIn) return [];
  const restoreDriver = mode === "acquire" || (spec.release?.restoreDriver ?? false);
  return [
    vfioBindFeature(deps, spec.vf, { restoreDriver }),
    vfSetupFeature({ run: deps.seam.run, records: deps.records }, { vf: spec.vf, pf: spec.pf, vfIndex: spec.vfIndex, settings: spec.settings, reset: { mac: spec.release?.mac ?? ZERO_MAC } }),
  ];
}

/** Before the guest gets the VF. On failure everything done is undone in reverse (FERRY_ERR_FEATURE). */
export async function acquireVf(deps: VfDeps, spec: VfLifecycleSpec, signal: AbortSignal): Promise<void> {
  await applyFeatures(vfLifecycleFeatures(deps, spec, "acquire"), signal);
}

/** On every release path; idempotent. Returns what could not be undone (empty: all). */
export async function releaseVf(deps: VfDeps, spec: VfLifecycleSpec, signal: AbortSignal): Promise<FeatureFailure[]> {
  return removeFeatures(vfLifecycleFeatures(deps, spec, "release"), signal);
}
