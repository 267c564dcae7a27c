// `ferry host check`: can this host give VFs to guests and migrate them?
// Every item is ok / warn / fail with a message and what to do. Everything
// the check reads is injectable (the sysfs root, /proc/cmdline, /dev/vfio,
// the command runner for QEMU and `ip`, the accelerator probe, the
// interfaces), so tests run it on sysfs fixtures of good and broken hosts.
//
// Stand-in VFs (config `standIns`: no real device behind them) are named as
// stand-ins; what only a real VF needs (IOMMU, vfio-pci, its group, its host
// driver, the PF's VF settings) is "ok (stand-in: no VFIO needed)" for them.
import { access, readFile } from "node:fs/promises";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { toFerryError } from "../core/errors.ts";
import type { Runner } from "../core/run.ts";
import type { HostConfig, ResolvedUplink, UsableVf } from "./config.ts";
import { resolveUplinks } from "./config.ts";
import { countIommuGroups, describeDevice, driverLoaded, iommuGroupOf, isVf, netdevUse } from "./check-sysfs.ts";
import { ipLinkShow, parseVfInfo } from "./iproute.ts";
import { checkMigrationAddress } from "./migration-net.ts";
import type { Inventory } from "./sysfs.ts";
import { findDevice, readInventory } from "./sysfs.ts";

export type CheckStatus = "ok" | "warn" | "fail";

export interface CheckItem {
  /** What is checked: iommu, vfio-pci, dev-vfio, sysfs, pf, vf-iommu-group, vf-driver, vf-settings, qemu, qemu-failover, accel, hugepages, migration-address. */
  check: string;
  /** The PF or VF (PCI address) it is about; null for the host as a whole. */
  subject: string | null;
  status: CheckStatus;
  message: string;
  /** What to do about it; null when nothing. */
  fix: string | null;
}

export interface HostCheckReport {
  host: string;
  items: CheckItem[];
  counts: Record<CheckStatus, number>;
}

export interface HostCheckDeps {
  config: HostConfig;
  run: Runner;
  /** KVM or TCG, and why (src/qemu/accel.ts detectAccel in the CLI). */
  accel: () => Promise<{ accel: "kvm" | "tcg"; reason: string }>;
  /** Default: the config's sysfsRoot. */
  sysfsRoot?: string;
  /** Default /proc/cmdline. */
  cmdlineFile?: string;
  /** Default /dev/vfio. */
  devVfio?: string;
  /** Default qemu-system-x86_64 (from PATH). */
  qemuBinary?: string;
  interfaces?: () => ReturnType<typeof networkInterfaces>;
  /** Checked only when given: free huge pages of this size the host must have. */
  hugepages?: { sizeKb: number; pages: number } | null;
  signal?: AbortSignal;
}

export const STAND_IN_OK = "stand-in: no VFIO needed";
const IOMMU_FIX =
  "enable VT-d (Intel) or AMD-Vi / IOMMU (AMD) in the firmware; add intel_iommu=on iommu=pt (Intel) or amd_iommu=on iommu=pt (AMD) to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub and reboot";

const item = (check: string, subject: string | null, status: CheckStatus, message: string, fix: string | null = null): CheckItem => ({ check, subject, status, message, fix });

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Run the whole check. Never throws for what it finds: each finding is an item. */
export async function checkHost(deps: HostCheckDeps): Promise<HostCheckReport> {
  const root = deps.sysfsRoot ?? deps.config.sysfsRoot;
  const items: CheckItem[] = [];
  let inv: Inventory | null = null;
  try {
    inv = await readInventory({ root, ...(deps.signal ? { signal: deps.signal } : {}) });
  } catch (e) {
    items.push(item("sysfs", null, "fail", toFerryError(e).message, `check sysfsRoot in the host config (now ${root})`));
  }
  const uplinks = inv === null ? [] : resolveEach(deps.config, inv, items);
  const realVfs = uplinks.flatMap((u) => u.vfs).filter((x) => x.standIn === null);
  items.push(await checkIommu(root, deps.cmdlineFile ?? "/proc/cmdline", realVfs.length));
  items.push(...(await checkVfio(root, deps.devVfio ?? "/dev/vfio", realVfs.length)));
  if (inv !== null) {
    for (const u of uplinks) {
      items.push(checkPf(u, inv));
      for (const vf of u.vfs) items.push(await checkVfGroup(root, vf), await checkVfDriver(root, vf, inv));
      items.push(await checkVfSettings(deps, u));
    }
  }
  items.push(...(await checkQemu(deps)));
  const accel = await deps.accel();
  items.push(
    accel.accel === "kvm"
      ? item("accel", null, "ok", `KVM (${accel.reason})`)
      : item("accel", null, "warn", `TCG: guests run emulated, far slower, and migrate slower (${accel.reason})`, "enable VT-x/AMD-V in the firmware, load kvm_intel or kvm_amd, and give the agent's user read/write access to /dev/kvm"),
  );
  if (deps.hugepages) items.push(await checkHugepages(root, deps.hugepages));
  items.push(checkMigrationNet(deps));
  const counts: Record<CheckStatus, number> = { ok: 0, warn: 0, fail: 0 };
  for (const x of items) counts[x.status]++;
  return { host: deps.config.name, items, counts };
}

/** Each uplink on its own, so one bad uplink is one fail item and the others are still checked. */
function resolveEach(config: HostConfig, inv: Inventory, items: CheckItem[]): ResolvedUplink[] {
  const out: ResolvedUplink[] = [];
  config.uplinks.forEach((u, i) => {
    try {
      out.push(...resolveUplinks({ ...config, uplinks: [u] }, inv));
    } catch (e) {
      const message = toFerryError(e).message.replaceAll("uplinks[0]", `uplinks[${i}]`);
      items.push(item("pf", u.pf, "fail", message, `fix uplinks[${i}] in the host config: name an SR-IOV PF of this host (see 'ferry agent inventory')`));
    }
  });
  return out;
}

async function checkIommu(root: string, cmdlineFile: string, realVfs: number): Promise<CheckItem> {
  const groups = await countIommuGroups(root);
  const cmdline = (await readFile(cmdlineFile, "utf8").catch(() => "")).trim();
  const params = cmdline.split(/\s+/).filter((p) => /^(intel_iommu|amd_iommu|iommu)=/.test(p));
  const said = params.length ? `kernel command line: ${params.join(" ")}` : "no IOMMU parameter on the kernel command line";
  if (realVfs === 0) return item("iommu", null, "ok", `${STAND_IN_OK} (every configured VF is a stand-in; ${groups} IOMMU groups, ${said})`);
  if (groups === 0) {
    const off = params.some((p) => /^(intel_iommu|amd_iommu)=off$/.test(p));
    const asked = params.some((p) => /^(intel_iommu|amd_iommu)=on$/.test(p));
    const why = off ? "the kernel command line turns it off" : asked ? "the kernel command line asks for it, so the firmware has it disabled (or the platform lacks one)" : "it is not enabled";
    return item("iommu", null, "fail", `IOMMU off: ${join(root, "kernel/iommu_groups")} has no groups; ${why} (${said}). No VF can be given to a guest`, IOMMU_FIX);
  }
  if (!params.includes("iommu=pt")) {
    return item("iommu", null, "warn", `IOMMU on (${groups} groups), but not in passthrough mode (${said}): the host's own DMA is translated too, which costs host network throughput`, "add iommu=pt to the kernel command line and reboot");
  }
  return item("iommu", null, "ok", `IOMMU on: ${groups} groups (${said})`);
}

async function checkVfio(root: string, devVfio: string, realVfs: number): Promise<CheckItem[]> {
  if (realVfs === 0) return [item("vfio-pci", null, "ok", `${STAND_IN_OK} (every configured VF is a stand-in)`)];
  const out: CheckItem[] = [];
  out.push(
    (await driverLoaded(root, "vfio-pci"))
      ? item("vfio-pci", null, "ok", "the vfio-pci driver is loaded")
      : item("vfio-pci", null, "fail", `vfio-pci missing: ${join(root, "bus/pci/drivers/vfio-pci")} does not exist, so no VF can be bound to it`, "modprobe vfio-pci, and make it load at boot: echo vfio-pci > /etc/modules-load.d/vfio-pci.conf"),
  );
  out.push(
    (await exists(join(devVfio, "vfio")))
      ? item("dev-vfio", null, "ok", `${join(devVfio, "vfio")} exists`)
      : item("dev-vfio", null, "fail", `${join(devVfio, "vfio")} is missing: QEMU cannot open VFIO devices`, "modprobe vfio-pci (it creates /dev/vfio/vfio); run the agent as a user that may open /dev/vfio/*"),
  );
  return out;
}

function checkPf(u: ResolvedUplink, inv: Inventory): CheckItem {
  const dev = findDevice(inv, u.pf);
  const total = dev?.sriov?.totalVfs ?? 0;
  const num = dev?.sriov?.numVfs ?? 0;
  const name = `PF ${u.pf}${u.pfIfname ? ` (${u.pfIfname})` : ""} on network ${u.network}`;
  const standIns = u.vfs.filter((x) => x.standIn !== null);
  const named = standIns.length === 0 ? "" : standIns.length === u.vfs.length ? `; all its VFs are stand-ins (${standIns[0]?.standIn?.model})` : `; stand-ins: ${standIns.map((x) => x.bdf).join(", ")}`;
  if (num === 0) {
    return item("pf", u.pf, "fail", `${name}: sriov_numvfs is 0 (of ${total} possible): no VFs`, `echo ${Math.min(total, 8)} > /sys/bus/pci/devices/${u.pf}/sriov_numvfs (and at boot, e.g. a udev rule or systemd unit); at most sriov_totalvfs = ${total}`);
  }
  if (u.vfs.length < num) {
    return item("pf", u.pf, "warn", `${name}: sriov_numvfs is ${num} but only ${u.vfs.length} VFs are visible in sysfs${named}`, "check dmesg for VF probe errors");
  }
  return item("pf", u.pf, "ok", `${name}: ${num} of ${total} VFs enabled${named}`);
}

const slotOf = (bdf: string): string => bdf.slice(0, bdf.lastIndexOf("."));

async function checkVfGroup(root: string, vf: UsableVf): Promise<CheckItem> {
  if (vf.standIn) return item("vf-iommu-group", vf.bdf, "ok", `${STAND_IN_OK} (stand-in VF, ${vf.standIn.model})`);
  const g = await iommuGroupOf(root, vf.bdf);
  if (g === null) return item("vf-iommu-group", vf.bdf, "fail", `VF ${vf.bdf} has no IOMMU group (no iommu_group link): it cannot be given to a guest`, IOMMU_FIX);
  const others = g.members.filter((m) => m !== vf.bdf);
  const foreign: string[] = [];
  for (const m of others) if (slotOf(m) !== slotOf(vf.bdf) || (await isVf(root, m))) foreign.push(m);
  if (foreign.length > 0) {
    const names = await Promise.all(foreign.map((m) => describeDevice(root, m)));
    return item(
      "vf-iommu-group",
      vf.bdf,
      "fail",
      `VF ${vf.bdf} shares IOMMU group ${g.group} with ${names.join(", ")}: VFIO gives a guest a whole group, so this VF cannot be given alone`,
      "put the NIC in a slot whose root port supports ACS (or enable ACS in the firmware) so each VF gets its own group; until then leave this PF out of the config",
    );
  }
  return item("vf-iommu-group", vf.bdf, "ok", others.length ? `IOMMU group ${g.group}, shared only with its own functions ${others.join(", ")}` : `alone in IOMMU group ${g.group}`);
}

async function checkVfDriver(root: string, vf: UsableVf, inv: Inventory): Promise<CheckItem> {
  if (vf.standIn) return item("vf-driver", vf.bdf, "ok", `${STAND_IN_OK} (stand-in VF: its MAC ${vf.mac ?? "(none)"} is given to QEMU's emulated NIC)`);
  const driver = findDevice(inv, vf.bdf)?.driver ?? null;
  if (driver === "vfio-pci") return item("vf-driver", vf.bdf, "ok", "bound to vfio-pci");
  if (driver === null) return item("vf-driver", vf.bdf, "ok", "no driver bound: Ferry binds it to vfio-pci when it leases it");
  const busy = (await netdevUse(root, vf.bdf)).filter((n) => n.up || n.master !== null);
  if (busy.length > 0) {
    const what = busy.map((n) => `${n.ifname} (${[n.up ? "up" : "", n.master ? `in ${n.master}` : ""].filter(Boolean).join(", ")})`).join(", ");
    return item(
      "vf-driver",
      vf.bdf,
      "fail",
      `VF ${vf.bdf} is in use by a host interface: ${what}, driver ${driver}. Ferry would unbind it from under the host`,
      `stop using it on the host: ${busy.map((n) => `ip link set dev ${n.ifname} ${n.master ? "nomaster " : ""}down`).join("; ")} (and remove it from the host's network config), or leave this PF out of the host config`,
    );
  }
  return item("vf-driver", vf.bdf, "ok", `bound to ${driver}, no host interface up: Ferry rebinds it to vfio-pci when it leases it`);
}

async function checkVfSettings(deps: HostCheckDeps, u: ResolvedUplink): Promise<CheckItem> {
  const real = u.vfs.filter((x) => x.standIn === null);
  if (real.length === 0) return item("vf-settings", u.pf, "ok", `${STAND_IN_OK} (stand-ins: the MAC goes to QEMU's emulated NIC, the VLAN to the bridge port; spoof check and trust are recorded, not applied)`);
  const first = real[0];
  if (u.pfIfname === null || first === undefined) return item("vf-settings", u.pf, "fail", `PF ${u.pf} has no host netdev: MAC and VLAN of its VFs are set through it`, "bind the PF to its network driver so it has an interface");
  const cmd = ipLinkShow(u.pfIfname);
  try {
    const r = await deps.run(cmd.file, cmd.args, { timeoutMs: 10_000, allowFailure: true, ...(deps.signal ? { signal: deps.signal } : {}) });
    if (r.code !== 0) return item("vf-settings", u.pf, "fail", `ip ${cmd.args.join(" ")}: exit ${r.code}: ${r.stderr.trim().slice(0, 300)}`, "install iproute2 and run the check as root");
    const s = parseVfInfo(r.stdout, first.vfIndex);
    const missing = (["spoofchk", "trust"] as const).filter((k) => s[k] === undefined);
    const vlan = u.vfs[0]?.vlan ?? null;
    const how = `via ip link set dev ${u.pfIfname} vf N mac … vlan …${vlan === null ? "" : ` (network ${u.network}: VLAN ${vlan})`}`;
    if (missing.length) return item("vf-settings", u.pf, "warn", `the PF reports its VFs' MAC and VLAN (settable ${how}) but not ${missing.join(" or ")}: its driver may refuse them`, "leave spoof check and trust at their defaults for this NIC, or update its driver");
    return item("vf-settings", u.pf, "ok", `MAC, VLAN, spoofchk and trust of its VFs are reported by the PF and set ${how}`);
  } catch (e) {
    return item("vf-settings", u.pf, "fail", `cannot read the VFs' settings from ${u.pfIfname}: ${toFerryError(e).message}`, "the PF's driver must support SR-IOV VF settings over netlink (ip link … vf N)");
  }
}

/** QEMU's version, e.g. "7.2.22", from `qemu-system-x86_64 --version`; null when not recognised. */
export function parseQemuVersion(text: string): { major: number; minor: number; text: string } | null {
  const m = /QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  if (!m) return null;
  return { major: Number(m[1]), minor: Number(m[2]), text: `${m[1]}.${m[2]}${m[3] === undefined ? "" : `.${m[3]}`}` };
}

/** Whether `-device virtio-net-pci,help` lists the `failover` property (QEMU ≥ 4.2). */
export function hasFailover(help: string): boolean {
  return /^\s*failover=<bool>/m.test(help);
}

async function checkQemu(deps: HostCheckDeps): Promise<CheckItem[]> {
  const bin = deps.qemuBinary ?? "qemu-system-x86_64";
  const opts = { timeoutMs: 15_000, allowFailure: true, ...(deps.signal ? { signal: deps.signal } : {}) };
  let version: { code: number; stdout: string; stderr: string };
  try {
    version = await deps.run(bin, ["--version"], opts);
  } catch (e) {
    return [item("qemu", null, "fail", `cannot run ${bin}: ${toFerryError(e).message}`, "install QEMU (apt install qemu-system-x86) or put qemu-system-x86_64 on the agent's PATH")];
  }
  const v = parseQemuVersion(version.stdout);
  const out = [v === null ? item("qemu", null, "warn", `${bin} --version: unrecognised output (exit ${version.code}): ${version.stdout.trim().slice(0, 200)}`, "check that this is QEMU's qemu-system-x86_64") : item("qemu", null, "ok", `${bin}: QEMU ${v.text}`)];
  const help = await deps.run(bin, ["-device", "virtio-net-pci,help"], opts).catch((e: unknown) => ({ code: -1, stdout: "", stderr: toFerryError(e).message }));
  out.push(
    hasFailover(help.stdout)
      ? item("qemu-failover", null, "ok", "virtio-net-pci has the failover property (the standby NIC that keeps a guest online while its VF is away)")
      : item("qemu-failover", null, "fail", `${bin} -device virtio-net-pci,help lists no failover property${help.code === 0 ? "" : ` (exit ${help.code}: ${help.stderr.trim().slice(0, 200)})`}: VMs with VFs cannot migrate`, "install QEMU 4.2 or newer"),
  );
  return out;
}

async function checkHugepages(root: string, want: { sizeKb: number; pages: number }): Promise<CheckItem> {
  const dir = join(root, "kernel", "mm", "hugepages", `hugepages-${want.sizeKb}kB`);
  const free = Number((await readFile(join(dir, "free_hugepages"), "utf8").catch(() => "")).trim() || NaN);
  const fix = `echo ${want.pages} > /sys/kernel/mm/hugepages/hugepages-${want.sizeKb}kB/nr_hugepages (or hugepages=${want.pages} on the kernel command line)`;
  if (!Number.isInteger(free)) return item("hugepages", null, "fail", `no ${want.sizeKb} kB huge pages on this host (${dir} missing)`, fix);
  if (free < want.pages) return item("hugepages", null, "fail", `${free} free ${want.sizeKb} kB huge pages, ${want.pages} needed`, fix);
  return item("hugepages", null, "ok", `${free} free ${want.sizeKb} kB huge pages (${want.pages} needed)`);
}

function checkMigrationNet(deps: HostCheckDeps): CheckItem {
  const m = deps.config.migration;
  if (m === null) return item("migration-address", null, "warn", "no migration block: this host takes no cross-host migration (local ones only)", "add migration: { address: <this host's IPv4 on the migration network> } to the host config");
  try {
    checkMigrationAddress(m, (deps.interfaces ?? networkInterfaces)());
  } catch (e) {
    return item("migration-address", null, "fail", toFerryError(e).message, "set migration.address to an address this host holds on the migration network");
  }
  const ports = `${m.address}, ports ${m.ports.from}-${m.ports.to}`;
  if (m.tls === null) return item("migration-address", null, "warn", `${ports} held by this host; the migration stream is plain TCP (migration.tls: false)`, "turn on TLS for the migration stream (migration.tls: true with the agent's tls files)");
  return item("migration-address", null, "ok", `${ports} held by this host, TLS on`);
}
