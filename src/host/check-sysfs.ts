// What the host check reads from sysfs beyond the inventory (./sysfs.ts): a
// device's IOMMU group and its members, and whether a netdev is up or
// enslaved. External data: read as text, validated, never trusted.
import { readdir, readFile, readlink } from "node:fs/promises";
import { basename, join } from "node:path";
import { isPciAddress } from "../model/validate.ts";

export interface IommuGroup {
  group: string;
  /** The group's members (PCI addresses), sorted, this device included. */
  members: string[];
}

function errno(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

async function linkBase(path: string): Promise<string | null> {
  try {
    return basename(await readlink(path));
  } catch (e) {
    if (errno(e) === "ENOENT" || errno(e) === "EINVAL") return null;
    throw e;
  }
}

async function text(path: string): Promise<string | null> {
  try {
    return (await readFile(path, "utf8")).trim();
  } catch (e) {
    if (errno(e) === "ENOENT") return null;
    throw e;
  }
}

const deviceDir = (root: string, bdf: string): string => join(root, "bus", "pci", "devices", bdf);

/** The IOMMU groups the kernel made (`<root>/kernel/iommu_groups/*`); 0 when the IOMMU is off. */
export async function countIommuGroups(root: string): Promise<number> {
  try {
    return (await readdir(join(root, "kernel", "iommu_groups"))).filter((g) => /^\d+$/.test(g)).length;
  } catch (e) {
    if (errno(e) === "ENOENT") return 0;
    throw e;
  }
}

/** A device's IOMMU group (its `iommu_group` link) and the group's members; null when it has none. */
export async function iommuGroupOf(root: string, bdf: string): Promise<IommuGroup | null> {
  const group = await linkBase(join(deviceDir(root, bdf), "iommu_group"));
  if (group === null || !/^\d+$/.test(group)) return null;
  let names: string[];
  try {
    names = await readdir(join(root, "kernel", "iommu_groups", group, "devices"));
  } catch (e) {
    if (errno(e) === "ENOENT") return { group, members: [bdf] };
    throw e;
  }
  return { group, members: names.filter(isPciAddress).sort() };
}

/** Whether a PCI device is a VF (has a `physfn` link). */
export async function isVf(root: string, bdf: string): Promise<boolean> {
  return (await linkBase(join(deviceDir(root, bdf), "physfn"))) !== null;
}

/** A PCI device's class (six hex digits) and bound driver, for naming it in a message. */
export async function describeDevice(root: string, bdf: string): Promise<string> {
  const cls = (await text(join(deviceDir(root, bdf), "class")))?.replace(/^0x/, "") ?? "??????";
  const driver = await linkBase(join(deviceDir(root, bdf), "driver"));
  return `${bdf} (class ${cls}, driver ${driver ?? "none"})`;
}

export interface NetdevUse {
  ifname: string;
  /** Administratively up (IFF_UP in `flags`). */
  up: boolean;
  /** The bridge or bond it is enslaved to (`master` link), or null. */
  master: string | null;
}

/** The host netdevs on a PCI device, whether each is up and whether it is enslaved. */
export async function netdevUse(root: string, bdf: string): Promise<NetdevUse[]> {
  let names: string[];
  try {
    names = await readdir(join(deviceDir(root, bdf), "net"));
  } catch (e) {
    if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR") return [];
    throw e;
  }
  const out: NetdevUse[] = [];
  for (const ifname of names.sort()) {
    const dir = join(deviceDir(root, bdf), "net", ifname);
    const flags = await text(join(dir, "flags"));
    const up = flags !== null && /^0x[0-9a-fA-F]{1,8}$/.test(flags) ? (parseInt(flags, 16) & 1) === 1 : (await text(join(dir, "operstate"))) === "up";
    out.push({ ifname, up, master: await linkBase(join(dir, "master")) });
  }
  return out;
}

/** Whether a PCI driver is loaded (`<root>/bus/pci/drivers/<name>` exists). */
export async function driverLoaded(root: string, name: string): Promise<boolean> {
  try {
    await readdir(join(root, "bus", "pci", "drivers", name));
    return true;
  } catch (e) {
    if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR") return false;
    throw e;
  }
}
