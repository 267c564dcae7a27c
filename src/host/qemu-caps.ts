// What this host's QEMU can run and how much memory the host has free: the
// facts a migration's pre-flight check compares between two hosts (the agent
// reports them in its heartbeat). Parsers are pure; the probes run QEMU
// (`--version`, `-machine help`, `-cpu help`) once and read /proc/meminfo.
import { readFile } from "node:fs/promises";
import { toFerryError } from "../core/errors.ts";
import type { Runner } from "../core/run.ts";
import { parseQemuVersion } from "./check.ts";

export interface QemuMachine {
  name: string;
  /** `q35` is an alias of the newest versioned machine, e.g. pc-q35-7.2. */
  aliasOf?: string;
}

export interface QemuCaps {
  /** e.g. "7.2.22". */
  version: string;
  machines: QemuMachine[];
  cpuModels: string[];
}

/** `-machine help`: one machine per line after the heading, "name  description (alias of X)". */
export function parseMachines(text: string): QemuMachine[] {
  const out: QemuMachine[] = [];
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z0-9][A-Za-z0-9._-]*)\s+(.*)$/.exec(line.trim());
    if (!m || line.startsWith("Supported")) continue;
    const alias = /\(alias of ([A-Za-z0-9._-]+)\)/.exec(m[2]!);
    out.push({ name: m[1]!, ...(alias ? { aliasOf: alias[1]! } : {}) });
  }
  return out;
}

/** `-cpu help`: "x86 NAME  description" lines up to the CPUID flag list. */
export function parseCpuModels(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    if (/^Recognized CPUID flags/i.test(line)) break;
    const m = /^x86\s+([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(line);
    if (m) out.push(m[1]!);
  }
  return out;
}

/** MemAvailable and MemTotal (MiB) from /proc/meminfo; null when either is missing. */
export function parseMeminfo(text: string): { totalMiB: number; availableMiB: number } | null {
  const kib = (k: string): number | null => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB$`, "m").exec(text);
    return m ? Number(m[1]) : null;
  };
  const total = kib("MemTotal");
  const avail = kib("MemAvailable");
  return total === null || avail === null ? null : { totalMiB: Math.floor(total / 1024), availableMiB: Math.floor(avail / 1024) };
}

export async function readMemory(procRoot = "/proc"): Promise<{ totalMiB: number; availableMiB: number } | null> {
  return parseMeminfo(await readFile(`${procRoot}/meminfo`, "utf8").catch(() => ""));
}

/** Ask QEMU (three runs, in parallel); null with the reason when it cannot say. */
export async function probeQemuCaps(run: Runner, qemuBinary = "qemu-system-x86_64", signal?: AbortSignal): Promise<{ caps: QemuCaps } | { caps: null; reason: string }> {
  const opts = { timeoutMs: 15_000, allowFailure: true, ...(signal ? { signal } : {}) };
  try {
    const [v, machines, cpus] = await Promise.all([run(qemuBinary, ["--version"], opts), run(qemuBinary, ["-machine", "help"], opts), run(qemuBinary, ["-cpu", "help"], opts)]);
    const version = parseQemuVersion(v.stdout);
    if (version === null) return { caps: null, reason: `${qemuBinary} --version: unrecognised output ${JSON.stringify(v.stdout.trim().slice(0, 100))}` };
    return { caps: { version: version.text, machines: parseMachines(machines.stdout).slice(0, 300), cpuModels: parseCpuModels(cpus.stdout).slice(0, 500) } };
  } catch (e) {
    return { caps: null, reason: `cannot ask ${qemuBinary}: ${toFerryError(e).message}` };
  }
}
