// What an API body may name on this host: a VM spec whose kernel and initrd
// are files in the host's image dirs, a QEMU binary the host config allows.
import { constants } from "node:fs";
import { access, realpath, stat } from "node:fs/promises";
import { delimiter, dirname, isAbsolute, join, sep } from "node:path";
import { invalid } from "../core/errors.ts";
import type { HostConfig } from "../host/config.ts";
import * as v from "../model/validate.ts";
import { parseVmSpec } from "../model/vm.ts";
import type { VmSpec } from "../model/vm.ts";

/**
 * A VM spec from an API body, validated (parseVmSpec), and its kernel and
 * initrd real files inside this host's image dirs: a body may name only
 * those (every other file QEMU is given, the agent chooses itself).
 */
export async function admitSpec(config: HostConfig, raw: unknown): Promise<VmSpec> {
  const spec = parseVmSpec(raw);
  if (spec.noOs) return spec; // QEMU is given no kernel
  const dirs = await Promise.all(config.imageDirs.map((d) => realpath(d).catch(() => d)));
  for (const field of ["kernel", "initrd"] as const) {
    const real = await realpath(spec[field]).catch(() => undefined);
    const inside = real !== undefined && dirs.some((d) => real.startsWith(d.endsWith(sep) ? d : d + sep));
    if (!inside || !(await stat(real).then((s) => s.isFile(), () => false))) {
      throw invalid(`spec.${field}`, spec[field], `not a file inside this host's image dirs (${config.imageDirs.join(", ")}): the agent boots kernels and initrds from those only; build the test guest there ('npm run setup') or list the dir under imageDirs in the host config`);
    }
  }
  return spec;
}

/**
 * A QEMU binary an API body names (local migration): an executable file
 * that the host config allows (qemuBinaries: the file, or its dir), or
 * this agent's own QEMU.
 */
export async function allowedQemuBinary(config: HostConfig, qemuBinary: string | undefined, field: string, value: string): Promise<string> {
  const p = v.absPath(field, value);
  if (/[\u0000-\u001f\u007f]/.test(p)) throw invalid(field, value, "contains a control character");
  const own = await ownQemu(qemuBinary);
  const allowed = [...config.qemuBinaries, ...(own === undefined ? [] : [own])];
  if (!allowed.some((a) => a === p || a === dirname(p))) {
    throw invalid(field, value, `not a QEMU binary host ${config.name} allows: list it (or its dir) under qemuBinaries in the host config; allowed now: ${allowed.join(", ") || "none"}`);
  }
  try {
    await access(p, constants.X_OK);
    if (!(await stat(p)).isFile()) throw new Error("not a file");
  } catch {
    throw invalid(field, value, `no executable file at this path on host ${config.name}`);
  }
  return p;
}

/** This agent's QEMU as an absolute path (a bare name looked up in PATH). */
async function ownQemu(qemuBinary: string | undefined): Promise<string | undefined> {
  const bin = qemuBinary ?? "qemu-system-x86_64";
  if (isAbsolute(bin)) return bin;
  for (const d of (process.env["PATH"] ?? "").split(delimiter).filter((x) => isAbsolute(x))) {
    if (await access(join(d, bin), constants.X_OK).then(() => true, () => false)) return join(d, bin);
  }
  return undefined;
}
