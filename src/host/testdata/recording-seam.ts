// The recording fake of the VF seam (../vf-setup.ts), standing in for the
// kernel's PCI driver core this machine cannot exercise (no SR-IOV, no VFIO):
// it logs every sysfs write and every command in order, and applies the writes
// as the kernel does (unbind, driver_override, drivers_probe); `ip` goes to a
// fake PF (./fake-pf.ts). `failOn` makes one logged step fail. `loggedToFile`
// keeps the log on disk after every call (for a QEMU stand-in to copy when it runs).
import { writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { FerryError } from "../../core/errors.ts";
import type { VfSeam } from "../vf-setup.ts";
import type { FakePf } from "./fake-pf.ts";

export interface FakePciDevice {
  /** Bound driver, null when unbound. */
  driver: string | null;
  override: string | null;
  /** What drivers_probe binds when no override is set. */
  hostDriver: string;
}

export interface RecordingSeam extends VfSeam {
  /** `write <path under root> "<value as JSON>"` and `ip <args…>`, in order. */
  log: string[];
  devices: Map<string, FakePciDevice>;
  /** Whether the vfio-pci module is loaded (a probe with override vfio-pci binds nothing otherwise). */
  vfioLoaded: boolean;
  /** A logged entry that should fail (EIO for a write). */
  failOn: ((entry: string) => boolean) | null;
}

export function recordingSeam(root: string, pf: FakePf, devices: Record<string, { driver: string | null; hostDriver: string }>): RecordingSeam {
  const rel = (p: string): string => relative(root, p);
  const dev = (bdf: string): FakePciDevice => {
    const d = seam.devices.get(bdf.trim());
    if (!d) throw new FerryError("FERRY_ERR_SYSFS", `no such device ${bdf.trim()}`);
    return d;
  };
  const seam: RecordingSeam = {
    log: [],
    devices: new Map(Object.entries(devices).map(([b, d]) => [b, { ...d, override: null }])),
    vfioLoaded: true,
    failOn: null,
    run: (file, args, o) => {
      const entry = [file, ...args].join(" ");
      seam.log.push(entry);
      return pf.run(file, args, o);
    },
    write(path, value) {
      const entry = `write ${rel(path)} ${JSON.stringify(value)}`;
      seam.log.push(entry);
      if (seam.failOn?.(entry)) return Promise.reject(new FerryError("FERRY_ERR_SYSFS", `${path}: cannot write ${JSON.stringify(value.trim())}: EIO: i/o error`, { details: { path } }));
      const p = rel(path).split("/");
      if (p[0] === "bus" && p[1] === "pci" && p[2] === "drivers" && p[4] === "unbind") {
        const d = dev(value);
        if (d.driver !== p[3]) return Promise.reject(new FerryError("FERRY_ERR_SYSFS", `${path}: ENODEV: not bound to ${p[3]}`));
        d.driver = null;
      } else if (p[0] === "bus" && p[1] === "pci" && p[2] === "devices" && p[4] === "driver_override") {
        dev(p[3] ?? "").override = value.trim() === "" ? null : value.trim();
      } else if (rel(path) === join("bus", "pci", "drivers_probe")) {
        const d = dev(value);
        if (d.driver === null) {
          const want = d.override ?? d.hostDriver;
          if (want !== "vfio-pci" || seam.vfioLoaded) d.driver = want;
        }
      } else return Promise.reject(new FerryError("FERRY_ERR_SYSFS", `recording seam: unexpected write to ${path}`));
      return Promise.resolve();
    },
    readText(path) {
      const p = rel(path).split("/");
      if (p[4] === "driver_override") return Promise.resolve(dev(p[3] ?? "").override ?? "(null)");
      return Promise.resolve(null);
    },
    readLink(path) {
      const p = rel(path).split("/");
      if (p[4] === "driver") return Promise.resolve(dev(p[3] ?? "").driver);
      return Promise.resolve(null);
    },
  };
  return seam;
}

/** `seam` with its log written to `file` (one entry a line) now and after every run and write. */
export function loggedToFile(seam: RecordingSeam, file: string): VfSeam {
  const sync = (): void => writeFileSync(file, seam.log.map((l) => `${l}\n`).join(""));
  sync();
  return {
    run: async (f, a, opts) => {
      try {
        return await seam.run(f, a, opts);
      } finally {
        sync();
      }
    },
    write: async (path, value) => {
      try {
        await seam.write(path, value);
      } finally {
        sync();
      }
    },
    readText: (path) => seam.readText(path),
    readLink: (path) => seam.readLink(path),
  };
}
