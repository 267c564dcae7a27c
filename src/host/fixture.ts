// A simulated host's sysfs tree, in the real layout, for tests and the lab
// (several hosts on one machine, each with its own root):
//
//   <root>/devices/pci0000:00/<bdf>/{vendor,device,class,numa_node,...}   real directories
//   <root>/bus/pci/devices/<bdf> -> ../../../devices/pci0000:00/<bdf>      as on Linux
//   <root>/bus/pci/drivers/<driver>/<bdf> -> ../../../../devices/pci0000:00/<bdf>
//   PF: sriov_totalvfs, sriov_numvfs, virtfnN -> ../<vf-bdf>, net/<ifname>/{address,speed}
//   VF: physfn -> ../<pf-bdf>, driver -> ../../../bus/pci/drivers/<vf-driver>, net/<ifname>/…
//   net/<ifname>/{flags,operstate}: the PF up (0x1003), VFs down (0x1002) unless listed in vfNetdevsUp
//   with `iommu`: <root>/kernel/iommu_groups/<n>/devices/<bdf> -> ../../../../devices/pci0000:00/<bdf>
//                 and <bdf>/iommu_group -> ../../../kernel/iommu_groups/<n> (one group per device
//                 unless `sharedIommuGroups` puts several in one)
//   with `vfioPci`: <root>/bus/pci/drivers/vfio-pci/ (the module loaded)
//
// VF MACs are derived from `seed` (default: the root path) so two simulated
// hosts get different, stable MACs: locally administered, unicast.
import { createHash } from "node:crypto";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FerryError, invalid } from "../core/errors.ts";
import * as v from "../model/validate.ts";

export const NIC_MODELS = {
  "intel-82599": { vendor: "8086", device: "10fb", vfDevice: "10ed", driver: "ixgbe", vfDriver: "ixgbevf", totalVfs: 63, speedMbps: 10_000 },
  "mellanox-cx5": { vendor: "15b3", device: "1017", vfDevice: "1018", driver: "mlx5_core", vfDriver: "mlx5_core", totalVfs: 16, speedMbps: 25_000 },
} as const;
export type NicModelName = keyof typeof NIC_MODELS;

export interface CustomNicModel {
  vendor: string;
  device: string;
  vfDevice: string;
  driver?: string;
  vfDriver?: string;
}

export interface FixturePf {
  /** Default: 0000:<bus>:00.0 on buses 3b, 5e, 86, af, d8, then 10+i. */
  bdf?: string;
  vendor: NicModelName | CustomNicModel;
  numVfs: number;
  /** Default: the model's (63 for 82599, 16 for ConnectX-5), at least numVfs. */
  totalVfs?: number;
  /** Default 0; -1 writes "-1" (no NUMA information). */
  numaNode?: number;
  speedMbps?: number;
  /** Default enp<bus>s0f0 (bus in decimal). */
  ifname?: string;
  /** PF MAC; VF n gets macBase + n + 1 (low 24 bits). Default: derived from the seed. */
  macBase?: string;
  /** Give VFs a netdev (`<pf-ifname>v<n>`) as when bound to a host driver. Default true. */
  vfNetdevs?: boolean;
  /** Write no `driver` link on the VFs (as when unbound). Default false. */
  vfsUnbound?: boolean;
  /** Bind the VFs to this driver instead of the model's (e.g. "vfio-pci": then no VF netdevs). */
  vfDriver?: string;
  /** VF indexes whose host netdev is up (IFF_UP), as when the host uses it. Default none. */
  vfNetdevsUp?: number[];
}

export interface FixtureNic {
  bdf: string;
  vendor: string;
  device: string;
  driver?: string;
  ifname?: string;
  mac?: string;
  numaNode?: number;
  /** Default 0x020000 (Ethernet). */
  class?: string;
}

export interface FixtureSpec {
  /** Default: two PFs × 8 VFs, an Intel 82599 (NUMA 0) and a Mellanox ConnectX-5 (NUMA 1). */
  pfs?: FixturePf[];
  /** Devices without SR-IOV (plain NICs, or other classes to be filtered out). */
  extraNics?: FixtureNic[];
  /** MAC seed; default the root path. */
  seed?: string;
  /** Write IOMMU groups (as with intel_iommu=on). Default false: no <root>/kernel/iommu_groups. */
  iommu?: boolean;
  /** With `iommu`: these devices share one group each (the first device's); the rest get one group per device. */
  sharedIommuGroups?: string[][];
  /** The vfio-pci driver is loaded (<root>/bus/pci/drivers/vfio-pci exists). Default false. */
  vfioPci?: boolean;
}

export interface FixtureDevice {
  bdf: string;
  ifname: string | null;
  mac: string | null;
}

export interface FixtureResult {
  root: string;
  pfs: { bdf: string; ifname: string; mac: string; vfs: FixtureDevice[] }[];
  extraNics: FixtureDevice[];
}

export const DEFAULT_FIXTURE: Required<Pick<FixtureSpec, "pfs">> = {
  pfs: [
    { vendor: "intel-82599", numVfs: 8, numaNode: 0 },
    { vendor: "mellanox-cx5", numVfs: 8, numaNode: 1 },
  ],
};

const DEFAULT_BUSES = [0x3b, 0x5e, 0x86, 0xaf, 0xd8];

const hex = (n: number, w: number): string => n.toString(16).padStart(w, "0");

function macFromBytes(b: Uint8Array): string {
  const bytes = [...b.slice(0, 6)];
  bytes[0] = ((bytes[0] ?? 0) & 0xfc) | 0x02; // locally administered, unicast
  return bytes.map((x) => hex(x, 2)).join(":");
}

/** A stable, locally administered unicast MAC for (seed, what). */
export function seededMac(seed: string, what: string): string {
  return macFromBytes(createHash("sha256").update(`${seed}\0${what}`).digest());
}

function macPlus(base: string, n: number): string {
  const parts = base.split(":").map((x) => parseInt(x, 16));
  const low = (((parts[3] ?? 0) << 16) | ((parts[4] ?? 0) << 8) | (parts[5] ?? 0)) + n;
  return [parts[0] ?? 0, parts[1] ?? 0, parts[2] ?? 0, (low >> 16) & 0xff, (low >> 8) & 0xff, low & 0xff].map((x) => hex(x, 2)).join(":");
}

function model(pf: FixturePf, i: number): Required<CustomNicModel> & { totalVfs: number; speedMbps: number } {
  if (typeof pf.vendor === "string") {
    const m: unknown = NIC_MODELS[pf.vendor];
    if (m === undefined) throw invalid(`pfs[${i}].vendor`, pf.vendor, `must be one of ${Object.keys(NIC_MODELS).join(", ")} or {vendor, device, vfDevice}`);
    return { ...NIC_MODELS[pf.vendor] };
  }
  const c = pf.vendor;
  const h4 = (f: string, x: string): string => {
    if (!/^[0-9a-f]{4}$/.test(x)) throw invalid(`pfs[${i}].vendor.${f}`, x, "must be 4 lower-case hex digits");
    return x;
  };
  return {
    vendor: h4("vendor", c.vendor),
    device: h4("device", c.device),
    vfDevice: h4("vfDevice", c.vfDevice),
    driver: c.driver ?? "ixgbe",
    vfDriver: c.vfDriver ?? "ixgbevf",
    totalVfs: 64,
    speedMbps: 10_000,
  };
}

interface Writer {
  root: string;
  drivers: Set<string>;
}

async function writeDevice(
  w: Writer,
  d: { bdf: string; vendor: string; device: string; class: string; numaNode: number; driver: string | null; net: { ifname: string; mac: string; speedMbps: number; up: boolean } | null },
): Promise<string> {
  const dir = join(w.root, "devices", "pci0000:00", d.bdf);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "vendor"), `0x${d.vendor}\n`);
  await writeFile(join(dir, "device"), `0x${d.device}\n`);
  await writeFile(join(dir, "class"), `0x${d.class}\n`);
  await writeFile(join(dir, "numa_node"), `${d.numaNode}\n`);
  await symlink(`../../../devices/pci0000:00/${d.bdf}`, join(w.root, "bus", "pci", "devices", d.bdf));
  if (d.driver !== null) {
    const drvDir = join(w.root, "bus", "pci", "drivers", d.driver);
    if (!w.drivers.has(d.driver)) {
      await mkdir(drvDir, { recursive: true });
      w.drivers.add(d.driver);
    }
    await symlink(`../../../bus/pci/drivers/${d.driver}`, join(dir, "driver"));
    await symlink(`../../../../devices/pci0000:00/${d.bdf}`, join(drvDir, d.bdf));
  }
  if (d.net) {
    const nd = join(dir, "net", d.net.ifname);
    await mkdir(nd, { recursive: true });
    await writeFile(join(nd, "address"), `${d.net.mac}\n`);
    await writeFile(join(nd, "speed"), `${d.net.speedMbps}\n`);
    await writeFile(join(nd, "flags"), d.net.up ? "0x1003\n" : "0x1002\n");
    await writeFile(join(nd, "operstate"), d.net.up ? "up\n" : "down\n");
  }
  return dir;
}

/**
 * Write a simulated host's sysfs tree under `root` (which should be empty or
 * absent). Returns the addresses, netdev names and MACs it chose.
 */
export async function writeSysfsFixture(root: string, spec: FixtureSpec = {}): Promise<FixtureResult> {
  v.absPath("root", root);
  const seed = spec.seed ?? root;
  const pfs = spec.pfs ?? DEFAULT_FIXTURE.pfs;
  const w: Writer = { root, drivers: new Set() };
  await mkdir(join(root, "bus", "pci", "devices"), { recursive: true });
  await mkdir(join(root, "bus", "pci", "drivers"), { recursive: true });
  await mkdir(join(root, "devices", "pci0000:00"), { recursive: true });

  const used = new Set<string>();
  const claim = (field: string, bdf: string): string => {
    const b = v.pciAddress(field, bdf);
    if (used.has(b)) throw new FerryError("FERRY_ERR_INVALID", `${field}: PCI address ${b} used twice in the fixture`);
    used.add(b);
    return b;
  };

  const result: FixtureResult = { root, pfs: [], extraNics: [] };
  for (const [i, pf] of pfs.entries()) {
    const m = model(pf, i);
    const bus = DEFAULT_BUSES[i] ?? 0x10 + i;
    const pfBdf = claim(`pfs[${i}].bdf`, pf.bdf ?? `0000:${hex(bus, 2)}:00.0`);
    const [, busHex = "00", devfn = "00.0"] = pfBdf.split(":");
    const busNum = parseInt(busHex, 16);
    const numVfs = v.int(`pfs[${i}].numVfs`, pf.numVfs, 0, 128);
    const totalVfs = v.int(`pfs[${i}].totalVfs`, pf.totalVfs ?? Math.max(m.totalVfs, numVfs), numVfs, 128);
    const ifname = v.ifname(`pfs[${i}].ifname`, pf.ifname ?? `enp${busNum}s${parseInt(devfn, 16)}f${devfn.split(".")[1] ?? "0"}`);
    const pfMac = pf.macBase !== undefined ? v.mac(`pfs[${i}].macBase`, pf.macBase) : seededMac(seed, pfBdf);
    const speed = pf.speedMbps ?? m.speedMbps;
    const numa = pf.numaNode ?? 0;
    const pfDir = await writeDevice(w, {
      bdf: pfBdf, vendor: m.vendor, device: m.device, class: "020000", numaNode: numa, driver: m.driver,
      net: { ifname, mac: pfMac, speedMbps: speed, up: true },
    });
    await writeFile(join(pfDir, "sriov_totalvfs"), `${totalVfs}\n`);
    await writeFile(join(pfDir, "sriov_numvfs"), `${numVfs}\n`);
    const vfs: FixtureDevice[] = [];
    for (let n = 0; n < numVfs; n++) {
      // VF routing ids after the PF: device 0x10 + n/8, function n%8 (82599-like).
      const vfBdf = claim(`pfs[${i}] VF ${n}`, `0000:${busHex}:${hex(0x10 + Math.floor(n / 8), 2)}.${n % 8}`);
      const mac = pf.macBase !== undefined ? macPlus(pfMac, n + 1) : seededMac(seed, `${pfBdf}/vf${n}`);
      const vfDriver = pf.vfsUnbound ? null : (pf.vfDriver ?? m.vfDriver);
      const vfIfname = pf.vfNetdevs === false || vfDriver === "vfio-pci" ? null : v.ifname(`pfs[${i}] VF ${n} ifname`, `${ifname}v${n}`);
      const vfDir = await writeDevice(w, {
        bdf: vfBdf, vendor: m.vendor, device: m.vfDevice, class: "020000", numaNode: numa,
        driver: vfDriver,
        net: vfIfname === null ? null : { ifname: vfIfname, mac, speedMbps: speed, up: pf.vfNetdevsUp?.includes(n) ?? false },
      });
      await symlink(`../${pfBdf}`, join(vfDir, "physfn"));
      await symlink(`../${vfBdf}`, join(pfDir, `virtfn${n}`));
      vfs.push({ bdf: vfBdf, ifname: vfIfname, mac });
    }
    result.pfs.push({ bdf: pfBdf, ifname, mac: pfMac, vfs });
  }

  for (const [i, nic] of (spec.extraNics ?? []).entries()) {
    const bdf = claim(`extraNics[${i}].bdf`, nic.bdf);
    const cls = nic.class ?? "020000";
    if (!/^[0-9a-f]{6}$/.test(cls)) throw invalid(`extraNics[${i}].class`, cls, "must be 6 lower-case hex digits");
    const ifname = nic.ifname === undefined ? null : v.ifname(`extraNics[${i}].ifname`, nic.ifname);
    const mac = nic.mac !== undefined ? v.mac(`extraNics[${i}].mac`, nic.mac) : seededMac(seed, bdf);
    await writeDevice(w, {
      bdf, vendor: nic.vendor, device: nic.device, class: cls, numaNode: nic.numaNode ?? 0, driver: nic.driver ?? null,
      net: ifname === null ? null : { ifname, mac, speedMbps: 1000, up: true },
    });
    result.extraNics.push({ bdf, ifname, mac: ifname === null ? null : mac });
  }
  if (spec.vfioPci) await mkdir(join(root, "bus", "pci", "drivers", "vfio-pci"), { recursive: true });
  if (spec.iommu) await writeIommuGroups(root, [...used].sort(), spec.sharedIommuGroups ?? []);
  return result;
}

/** One IOMMU group per device (numbered in address order), except `shared` sets, which get one each. */
async function writeIommuGroups(root: string, bdfs: string[], shared: string[][]): Promise<void> {
  const groupOf = new Map<string, number>();
  let next = 0;
  for (const set of shared) {
    const g = next++;
    for (const b of set) groupOf.set(v.pciAddress("sharedIommuGroups[]", b), g);
  }
  for (const b of bdfs) if (!groupOf.has(b)) groupOf.set(b, next++);
  for (const [bdf, g] of groupOf) {
    const gdir = join(root, "kernel", "iommu_groups", String(g), "devices");
    await mkdir(gdir, { recursive: true });
    const ddir = join(root, "devices", "pci0000:00", bdf);
    await mkdir(ddir, { recursive: true });
    await symlink(`../../../../devices/pci0000:00/${bdf}`, join(gdir, bdf));
    await symlink(`../../../kernel/iommu_groups/${g}`, join(ddir, "iommu_group"));
  }
}
