// PCI network inventory from sysfs (root injectable, default /sys), after
// libvirt's virpci: `<root>/bus/pci/devices/<bdf>/` for every device, class
// 0x02xxxx for network controllers, SR-IOV PFs with `sriov_totalvfs`,
// `sriov_numvfs` and `virtfnN` links, VFs with a `physfn` link.
//
// Everything read here is external data: it enters as text and is validated.
// A tree that cannot be listed at all is a FERRY_ERR_SYSFS naming the path; a
// single broken device is reported in `problems` and the rest still counts.
import { readdir, readFile, readlink } from "node:fs/promises";
import { basename, join } from "node:path";
import { FerryError } from "../core/errors.ts";
import { isPciAddress } from "../model/validate.ts";

export const DEFAULT_SYSFS_ROOT = "/sys";

export interface NetDev {
  ifname: string;
  /** Lower-case MAC, or null when absent/unreadable. */
  mac: string | null;
  /** Link speed in Mb/s; null when absent, unknown (-1) or link down. */
  speedMbps: number | null;
}

export interface SriovPf {
  totalVfs: number;
  numVfs: number;
  /** VF PCI addresses by VF index (from the `virtfnN` links), sorted by index. Plain data: JSON-serialisable. */
  vfs: { index: number; bdf: string }[];
}

export interface PciNetDevice {
  bdf: string;
  /** Four lower-case hex digits, no 0x: "8086". */
  vendor: string;
  device: string;
  /** Six hex digits: "020000". */
  class: string;
  /** Bound driver (basename of the `driver` link), null when unbound. */
  driver: string | null;
  /** NUMA node, null when the platform reports none (-1) or the file is absent. */
  numaNode: number | null;
  netdevs: NetDev[];
  /** Present on an SR-IOV physical function. */
  sriov: SriovPf | null;
  /** Present on a virtual function: its PF and its index there. */
  vf: { pf: string; index: number | null } | null;
}

export interface SysfsProblem {
  /** The device's directory name (may be a non-address when that is the problem). */
  bdf: string;
  path: string;
  message: string;
}

export interface Inventory {
  root: string;
  /** Network devices (class 0x02xxxx), sorted by PCI address. */
  devices: PciNetDevice[];
  problems: SysfsProblem[];
}

const HEX16_RE = /^0x[0-9a-fA-F]{4}$/;
const CLASS_RE = /^0x[0-9a-fA-F]{6}$/;
const DRIVER_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IFNAME_RE = /^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,14}$/;
const VIRTFN_RE = /^virtfn(\d{1,4})$/;

/** A per-device read failure: becomes one entry of `problems`. */
class DeviceProblem extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(message);
    this.path = path;
  }
}

function errno(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

async function readText(path: string, signal: AbortSignal | undefined): Promise<string | null> {
  try {
    return (await readFile(path, { encoding: "utf8", signal })).trim();
  } catch (e) {
    if (errno(e) === "ENOENT") return null;
    if (signal?.aborted) throw e;
    throw new DeviceProblem(path, `unreadable: ${e instanceof Error ? e.message : String(e)}`);
  }
}

async function required(path: string, signal: AbortSignal | undefined): Promise<string> {
  const s = await readText(path, signal);
  if (s === null) throw new DeviceProblem(path, "missing");
  return s;
}

function hex16(path: string, s: string): string {
  if (!HEX16_RE.test(s)) throw new DeviceProblem(path, `malformed: expected 0xhhhh, got ${JSON.stringify(s.slice(0, 40))}`);
  return s.slice(2).toLowerCase();
}

function intIn(path: string, s: string, min: number, max: number): number {
  if (!/^-?\d{1,9}$/.test(s)) throw new DeviceProblem(path, `malformed: expected an integer, got ${JSON.stringify(s.slice(0, 40))}`);
  const n = Number(s);
  if (n < min || n > max) throw new DeviceProblem(path, `out of range: ${n} not in [${min}, ${max}]`);
  return n;
}

async function linkBase(path: string): Promise<string | null> {
  try {
    return basename(await readlink(path));
  } catch (e) {
    if (errno(e) === "ENOENT") return null;
    throw new DeviceProblem(path, `unreadable link: ${e instanceof Error ? e.message : String(e)}`);
  }
}

async function listDir(path: string): Promise<string[] | null> {
  try {
    return await readdir(path);
  } catch (e) {
    if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR") return null;
    throw new DeviceProblem(path, `unreadable directory: ${e instanceof Error ? e.message : String(e)}`);
  }
}

async function readNetdevs(dir: string, signal: AbortSignal | undefined, problems: SysfsProblem[], bdf: string): Promise<NetDev[]> {
  const names = await listDir(join(dir, "net"));
  if (names === null) return [];
  const out: NetDev[] = [];
  for (const ifname of names.sort()) {
    const base = join(dir, "net", ifname);
    if (!IFNAME_RE.test(ifname)) {
      problems.push({ bdf, path: base, message: "not a network interface name; ignored" });
      continue;
    }
    let mac: string | null = null;
    let speedMbps: number | null = null;
    try {
      const a = await readText(join(base, "address"), signal);
      if (a !== null) {
        const m = a.toLowerCase();
        if (!MAC_RE.test(m)) throw new DeviceProblem(join(base, "address"), `malformed MAC ${JSON.stringify(a.slice(0, 40))}`);
        mac = m;
      }
      // `speed` fails with EINVAL when the link is down: that is "unknown", not a problem.
      const s = await readText(join(base, "speed"), signal).catch((e: unknown) => {
        if (e instanceof DeviceProblem) return null;
        throw e;
      });
      if (s !== null) {
        const n = intIn(join(base, "speed"), s, -1, 10_000_000);
        speedMbps = n > 0 ? n : null;
      }
    } catch (e) {
      if (!(e instanceof DeviceProblem)) throw e;
      problems.push({ bdf, path: e.path, message: e.message });
    }
    out.push({ ifname, mac, speedMbps });
  }
  return out;
}

/** Read one device; null when it is not a network device. Throws DeviceProblem. */
async function readDevice(root: string, bdf: string, signal: AbortSignal | undefined, problems: SysfsProblem[]): Promise<PciNetDevice | null> {
  const dir = join(root, "bus", "pci", "devices", bdf);
  const classPath = join(dir, "class");
  const cls = await required(classPath, signal);
  if (!CLASS_RE.test(cls)) throw new DeviceProblem(classPath, `malformed: expected 0xhhhhhh, got ${JSON.stringify(cls.slice(0, 40))}`);
  const klass = cls.slice(2).toLowerCase();
  if (!klass.startsWith("02")) return null;

  const vendor = hex16(join(dir, "vendor"), await required(join(dir, "vendor"), signal));
  const device = hex16(join(dir, "device"), await required(join(dir, "device"), signal));

  const driverName = await linkBase(join(dir, "driver"));
  if (driverName !== null && !DRIVER_RE.test(driverName)) throw new DeviceProblem(join(dir, "driver"), `malformed driver name ${JSON.stringify(driverName)}`);

  const numaText = await readText(join(dir, "numa_node"), signal);
  const numa = numaText === null ? -1 : intIn(join(dir, "numa_node"), numaText, -1, 1023);

  let sriov: SriovPf | null = null;
  const totalText = await readText(join(dir, "sriov_totalvfs"), signal);
  if (totalText !== null) {
    const totalVfs = intIn(join(dir, "sriov_totalvfs"), totalText, 0, 65535);
    const numVfs = intIn(join(dir, "sriov_numvfs"), await required(join(dir, "sriov_numvfs"), signal), 0, totalVfs);
    const vfs: { index: number; bdf: string }[] = [];
    for (const entry of (await listDir(dir)) ?? []) {
      const m = VIRTFN_RE.exec(entry);
      if (!m) continue;
      const target = await linkBase(join(dir, entry));
      if (target === null || !isPciAddress(target)) throw new DeviceProblem(join(dir, entry), `link does not point to a PCI address (${JSON.stringify(target)})`);
      vfs.push({ index: Number(m[1]), bdf: target });
    }
    sriov = { totalVfs, numVfs, vfs: vfs.sort((a, b) => a.index - b.index) };
  }

  let vf: PciNetDevice["vf"] = null;
  const pf = await linkBase(join(dir, "physfn"));
  if (pf !== null) {
    if (!isPciAddress(pf)) throw new DeviceProblem(join(dir, "physfn"), `link does not point to a PCI address (${JSON.stringify(pf)})`);
    vf = { pf, index: null };
  }

  const netdevs = await readNetdevs(dir, signal, problems, bdf);
  return { bdf, vendor, device, class: klass, driver: driverName, numaNode: numa < 0 ? null : numa, netdevs, sriov, vf };
}

/**
 * Read the PCI network inventory under `root` (default /sys).
 * Throws FERRY_ERR_SYSFS only when `<root>/bus/pci/devices` cannot be listed.
 */
export async function readInventory(options: { root?: string; signal?: AbortSignal } = {}): Promise<Inventory> {
  const root = options.root ?? DEFAULT_SYSFS_ROOT;
  const signal = options.signal;
  const devicesDir = join(root, "bus", "pci", "devices");
  let names: string[];
  try {
    names = await readdir(devicesDir);
  } catch (e) {
    throw new FerryError("FERRY_ERR_SYSFS", `${devicesDir}: cannot list PCI devices: ${e instanceof Error ? e.message : String(e)}`, {
      cause: e,
      details: { path: devicesDir },
    });
  }
  const problems: SysfsProblem[] = [];
  const devices: PciNetDevice[] = [];
  for (const name of names.sort()) {
    signal?.throwIfAborted();
    if (!isPciAddress(name)) {
      problems.push({ bdf: name, path: join(devicesDir, name), message: "directory name is not a PCI address (dddd:bb:dd.f); ignored" });
      continue;
    }
    try {
      const d = await readDevice(root, name, signal, problems);
      if (d) devices.push(d);
    } catch (e) {
      if (!(e instanceof DeviceProblem)) throw e;
      problems.push({ bdf: name, path: e.path, message: e.message });
    }
  }
  // VF indexes come from the PF's virtfnN links (the kernel's own numbering).
  const byBdf = new Map(devices.map((d) => [d.bdf, d]));
  for (const d of devices) {
    if (!d.vf) continue;
    const pf = byBdf.get(d.vf.pf);
    if (!pf?.sriov) {
      problems.push({ bdf: d.bdf, path: join(devicesDir, d.bdf, "physfn"), message: `its PF ${d.vf.pf} is not an SR-IOV network device in this inventory` });
      continue;
    }
    for (const x of pf.sriov.vfs) if (x.bdf === d.bdf) d.vf.index = x.index;
    if (d.vf.index === null) problems.push({ bdf: d.bdf, path: join(devicesDir, d.vf.pf), message: `PF ${d.vf.pf} has no virtfnN link to ${d.bdf}` });
  }
  return { root, devices, problems };
}

/** The PF of a VF and its index, by the VF's `physfn` link and the PF's `virtfnN` links (reverse lookup). */
export async function pfOfVf(vfBdf: string, options: { root?: string; signal?: AbortSignal } = {}): Promise<{ pf: string; index: number }> {
  const root = options.root ?? DEFAULT_SYSFS_ROOT;
  const devicesDir = join(root, "bus", "pci", "devices");
  if (!isPciAddress(vfBdf)) throw new FerryError("FERRY_ERR_INVALID", `not a PCI address: ${JSON.stringify(vfBdf)}`, { details: { vf: vfBdf } });
  const physfn = join(devicesDir, vfBdf, "physfn");
  let pf: string | null;
  try {
    pf = await linkBase(physfn);
  } catch (e) {
    throw new FerryError("FERRY_ERR_SYSFS", e instanceof Error ? e.message : String(e), { cause: e, details: { path: physfn } });
  }
  if (pf === null) throw new FerryError("FERRY_ERR_NOT_FOUND", `${vfBdf} is not a VF (no ${physfn})`, { details: { path: physfn } });
  if (!isPciAddress(pf)) throw new FerryError("FERRY_ERR_SYSFS", `${physfn}: does not point to a PCI address`, { details: { path: physfn } });
  const pfDir = join(devicesDir, pf);
  const entries = (await listDir(pfDir).catch(() => null)) ?? [];
  for (const entry of entries) {
    options.signal?.throwIfAborted();
    const m = VIRTFN_RE.exec(entry);
    if (!m) continue;
    const target = await linkBase(join(pfDir, entry)).catch(() => null);
    if (target === vfBdf) return { pf, index: Number(m[1]) };
  }
  throw new FerryError("FERRY_ERR_SYSFS", `${pfDir}: no virtfnN link points to ${vfBdf}`, { details: { path: pfDir, vf: vfBdf } });
}

/** Convenience views over an inventory. */
export function physicalFunctions(inv: Inventory): PciNetDevice[] {
  return inv.devices.filter((d) => d.sriov !== null);
}

export function virtualFunctionsOf(inv: Inventory, pfBdf: string): PciNetDevice[] {
  return inv.devices.filter((d) => d.vf?.pf === pfBdf).sort((a, b) => (a.vf?.index ?? 1e9) - (b.vf?.index ?? 1e9));
}

export function findDevice(inv: Inventory, bdf: string): PciNetDevice | undefined {
  return inv.devices.find((d) => d.bdf === bdf);
}
