// The host check on sysfs fixtures of good and broken hosts (real layout,
// ./fixture.ts). Stand-ins for what this machine lacks: the SR-IOV PF's
// netlink answers (testdata/fake-pf.ts) and QEMU's probe output (recorded
// from QEMU 7.2, testdata/qemu-7.2-*.txt).
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import type { Runner } from "../core/run.ts";
import type { CheckItem, HostCheckDeps } from "./check.ts";
import { checkHost, hasFailover, parseQemuVersion, STAND_IN_OK } from "./check.ts";
import { parseHostConfig } from "./config.ts";
import type { FixtureSpec } from "./fixture.ts";
import { writeSysfsFixture } from "./fixture.ts";
import { fakePf } from "./testdata/fake-pf.ts";

const base = await mkdtemp(join(tmpdir(), "ferry-check-"));
after(() => rm(base, { recursive: true, force: true }));
let n = 0;

const testdata = join(import.meta.dirname, "testdata");
const QEMU_VERSION = await readFile(join(testdata, "qemu-7.2-version.txt"), "utf8");
const QEMU_HELP = await readFile(join(testdata, "qemu-7.2-virtio-net-pci-help.txt"), "utf8");

const GOOD: FixtureSpec = { pfs: [{ vendor: "intel-82599", numVfs: 4, vfNetdevs: true }], iommu: true, vfioPci: true };
const CMDLINE = "BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64 root=/dev/sda1 ro quiet intel_iommu=on iommu=pt\n";
const ADDR = { address: "10.92.0.11", netmask: "255.255.255.0", family: "IPv4" as const, mac: "3c:fd:fe:a1:b2:c0", internal: false, cidr: "10.92.0.11/24" };

function hostYaml(root: string, extra = ""): string {
  return `name: host-a
sysfsRoot: ${root}
networks:
  physnet1: { vlan: 100 }
uplinks:
  - pf: 0000:3b:00.0
    network: physnet1
${extra}migration:
  address: 10.92.0.11
  tls: false
`;
}

/** QEMU's probe answers from the recorded output; `ip` goes to the fake PF. */
function runner(opts: { help?: string; ip: Runner }): Runner {
  return (file, args, o) => {
    if (file === "qemu-system-x86_64" && args[0] === "--version") return Promise.resolve({ code: 0, stdout: QEMU_VERSION, stderr: "" });
    if (file === "qemu-system-x86_64" && args.join(" ") === "-device virtio-net-pci,help") return Promise.resolve({ code: 0, stdout: opts.help ?? QEMU_HELP, stderr: "" });
    return opts.ip(file, args, o);
  };
}

interface Host {
  root: string;
  deps: HostCheckDeps;
}

async function host(spec: FixtureSpec, o: { yamlExtra?: string; cmdline?: string; devVfio?: boolean } = {}): Promise<Host> {
  const dir = join(base, `h${n++}`);
  const root = join(dir, "sys");
  await writeSysfsFixture(root, spec);
  await writeFile(join(dir, "cmdline"), o.cmdline ?? CMDLINE);
  await mkdir(join(dir, "dev", "vfio"), { recursive: true });
  if (o.devVfio !== false) await writeFile(join(dir, "dev", "vfio", "vfio"), "");
  const vfs = Array.from({ length: 4 }, () => ({ mac: "00:00:00:00:00:00", vlan: 0, spoofchk: true, trust: false }));
  const pf = fakePf("enp59s0f0", vfs);
  return {
    root,
    deps: {
      config: parseHostConfig(hostYaml(root, o.yamlExtra)),
      run: runner({ ip: pf.run }),
      accel: () => Promise.resolve({ accel: "kvm", reason: "/dev/kvm with hardware virtualization" }),
      cmdlineFile: join(dir, "cmdline"),
      devVfio: join(dir, "dev", "vfio"),
      interfaces: () => ({ eth1: [ADDR] }),
    },
  };
}

const fails = (items: CheckItem[]): CheckItem[] => items.filter((x) => x.status === "fail");
const only = (items: CheckItem[], check: string, subject: string | null = null): CheckItem => {
  const found = items.filter((x) => x.check === check && (subject === null || x.subject === subject));
  assert.equal(found.length, 1, `${check} ${subject ?? ""}: ${JSON.stringify(found)}`);
  return found[0]!;
};

describe("host check", () => {
  test("a good host: every item ok except the plain-TCP migration warning; each item names what it checked", async () => {
    const h = await host(GOOD);
    // the fixture's IOMMU groups in the real layout
    assert.match(await readlink(join(h.root, "bus/pci/devices/0000:3b:10.0/iommu_group")), /^\.\.\/\.\.\/\.\.\/kernel\/iommu_groups\/\d+$/);
    const r = await checkHost(h.deps);
    assert.deepEqual(fails(r.items), []);
    assert.deepEqual(r.items.filter((x) => x.status === "warn").map((x) => x.check), ["migration-address"]);
    assert.equal(r.counts.fail, 0);
    assert.match(only(r.items, "iommu").message, /IOMMU on: \d+ groups \(kernel command line: intel_iommu=on iommu=pt\)/);
    assert.equal(only(r.items, "vfio-pci").status, "ok");
    assert.equal(only(r.items, "dev-vfio").status, "ok");
    assert.match(only(r.items, "pf").message, /PF 0000:3b:00\.0 \(enp59s0f0\) on network physnet1: 4 of 63 VFs enabled$/);
    assert.equal(r.items.filter((x) => x.check === "vf-iommu-group").length, 4);
    assert.match(only(r.items, "vf-iommu-group", "0000:3b:10.0").message, /^alone in IOMMU group \d+$/);
    assert.match(only(r.items, "vf-driver", "0000:3b:10.1").message, /bound to ixgbevf, no host interface up/);
    assert.match(only(r.items, "vf-settings").message, /set via ip link set dev enp59s0f0 vf N mac … vlan … \(network physnet1: VLAN 100\)/);
    assert.equal(only(r.items, "qemu").message, "qemu-system-x86_64: QEMU 7.2.22");
    assert.equal(only(r.items, "qemu-failover").status, "ok");
    assert.equal(only(r.items, "accel").status, "ok");
    assert.equal(r.items.filter((x) => x.check === "hugepages").length, 0, "not configured: not checked");
  });

  test("no IOMMU: one fail naming the kernel parameters, and each VF has no group", async () => {
    const h = await host({ ...GOOD, iommu: false }, { cmdline: "root=/dev/sda1 ro quiet\n" });
    const r = await checkHost(h.deps);
    const iommu = only(r.items, "iommu");
    assert.equal(iommu.status, "fail");
    assert.match(iommu.message, /^IOMMU off: .*kernel\/iommu_groups has no groups; it is not enabled \(no IOMMU parameter on the kernel command line\)/);
    assert.match(iommu.fix ?? "", /intel_iommu=on iommu=pt .*amd_iommu=on iommu=pt/);
    assert.deepEqual(fails(r.items).map((x) => x.check), ["iommu", "vf-iommu-group", "vf-iommu-group", "vf-iommu-group", "vf-iommu-group"]);
    assert.match(only(r.items, "vf-iommu-group", "0000:3b:10.0").message, /no IOMMU group/);
  });

  test("IOMMU asked for on the command line but no groups: the firmware is named", async () => {
    const h = await host({ ...GOOD, iommu: false });
    assert.match(only((await checkHost(h.deps)).items, "iommu").message, /asks for it, so the firmware has it disabled/);
  });

  test("IOMMU on without iommu=pt: a warning", async () => {
    const h = await host(GOOD, { cmdline: "root=/dev/sda1 intel_iommu=on\n" });
    const i = only((await checkHost(h.deps)).items, "iommu");
    assert.equal(i.status, "warn");
    assert.equal(i.fix, "add iommu=pt to the kernel command line and reboot");
  });

  test("a VF sharing its IOMMU group with an unrelated device: fail naming the device", async () => {
    const h = await host({ ...GOOD, extraNics: [{ bdf: "0000:00:1f.6", vendor: "8086", device: "15bb", driver: "e1000e", ifname: "eno1" }], sharedIommuGroups: [["0000:3b:10.2", "0000:00:1f.6"]] });
    const r = await checkHost(h.deps);
    assert.deepEqual(fails(r.items).map((x) => [x.check, x.subject]), [["vf-iommu-group", "0000:3b:10.2"]]);
    assert.match(only(r.items, "vf-iommu-group", "0000:3b:10.2").message, /^VF 0000:3b:10\.2 shares IOMMU group 0 with 0000:00:1f\.6 \(class 020000, driver e1000e\): VFIO gives a guest a whole group/);
    assert.match(only(r.items, "vf-iommu-group", "0000:3b:10.2").fix ?? "", /ACS/);
  });

  test("two VFs of one slot in one group: each shares with another VF, not its own function", async () => {
    const h = await host({ ...GOOD, sharedIommuGroups: [["0000:3b:10.0", "0000:3b:10.1"]] });
    const r = await checkHost(h.deps);
    assert.deepEqual(fails(r.items).map((x) => x.subject), ["0000:3b:10.0", "0000:3b:10.1"]);
  });

  test("a VF in use by a host interface (netdev up): fail naming the interface and the command", async () => {
    const h = await host({ ...GOOD, pfs: [{ vendor: "intel-82599", numVfs: 4, vfNetdevsUp: [3] }] });
    const r = await checkHost(h.deps);
    assert.deepEqual(fails(r.items).map((x) => [x.check, x.subject]), [["vf-driver", "0000:3b:10.3"]]);
    const d = only(r.items, "vf-driver", "0000:3b:10.3");
    assert.equal(d.message, "VF 0000:3b:10.3 is in use by a host interface: enp59s0f0v3 (up), driver ixgbevf. Ferry would unbind it from under the host");
    assert.match(d.fix ?? "", /^stop using it on the host: ip link set dev enp59s0f0v3 down/);
  });

  test("sriov_numvfs 0: fail with the sysfs write that creates VFs", async () => {
    const h = await host({ ...GOOD, pfs: [{ vendor: "intel-82599", numVfs: 0 }] });
    const r = await checkHost(h.deps);
    const pf = only(r.items, "pf");
    assert.equal(pf.status, "fail");
    assert.equal(pf.message, "PF 0000:3b:00.0 (enp59s0f0) on network physnet1: sriov_numvfs is 0 (of 63 possible): no VFs");
    assert.match(pf.fix ?? "", /^echo 8 > \/sys\/bus\/pci\/devices\/0000:3b:00\.0\/sriov_numvfs/);
    assert.deepEqual(fails(r.items).map((x) => x.check), ["pf"]);
  });

  test("vfio-pci missing: its own fail, and /dev/vfio missing its own", async () => {
    const h = await host({ ...GOOD, vfioPci: false }, { devVfio: false });
    const r = await checkHost(h.deps);
    assert.deepEqual(fails(r.items).map((x) => x.check), ["vfio-pci", "dev-vfio"]);
    assert.match(only(r.items, "vfio-pci").message, /^vfio-pci missing: .*bus\/pci\/drivers\/vfio-pci does not exist/);
    assert.match(only(r.items, "vfio-pci").fix ?? "", /^modprobe vfio-pci/);
  });

  test("VFs already bound to vfio-pci: ok", async () => {
    const h = await host({ ...GOOD, pfs: [{ vendor: "intel-82599", numVfs: 4, vfDriver: "vfio-pci" }] });
    const r = await checkHost(h.deps);
    assert.deepEqual(fails(r.items), []);
    assert.equal(only(r.items, "vf-driver", "0000:3b:10.0").message, "bound to vfio-pci");
  });

  test("stand-in VFs (the lab): no IOMMU, no vfio-pci, and still no fail; each stand-in is named", async () => {
    const h = await host({ pfs: [{ vendor: "intel-82599", numVfs: 4 }] }, { cmdline: "root=/dev/vda1\n", devVfio: false, yamlExtra: "    standIns: { vfs: all, model: vmxnet3 }\n" });
    const r = await checkHost(h.deps);
    assert.deepEqual(fails(r.items), []);
    assert.match(only(r.items, "iommu").message, new RegExp(`^${STAND_IN_OK} \\(every configured VF is a stand-in`));
    assert.equal(only(r.items, "vfio-pci").status, "ok");
    assert.equal(r.items.filter((x) => x.check === "dev-vfio").length, 0);
    assert.match(only(r.items, "pf").message, /all its VFs are stand-ins \(vmxnet3\)/);
    assert.equal(only(r.items, "vf-iommu-group", "0000:3b:10.1").message, `${STAND_IN_OK} (stand-in VF, vmxnet3)`);
    assert.match(only(r.items, "vf-driver", "0000:3b:10.1").message, /^stand-in: no VFIO needed \(stand-in VF: its MAC [0-9a-f:]{17} is given to QEMU's emulated NIC\)$/);
    assert.match(only(r.items, "vf-settings").message, /^stand-in: no VFIO needed/);
  });

  test("QEMU without virtio-net failover, TCG, an address this host lacks, too few huge pages: each its own item", async () => {
    const h = await host(GOOD);
    const ip = h.deps.run;
    const r = await checkHost({
      ...h.deps,
      run: runner({ help: QEMU_HELP.replace(/^\s*failover.*\n/gm, ""), ip }),
      accel: () => Promise.resolve({ accel: "tcg", reason: "/dev/kvm not usable" }),
      interfaces: () => ({ eth1: [{ ...ADDR, address: "10.92.0.12" }] }),
      hugepages: { sizeKb: 2048, pages: 512 },
    });
    assert.deepEqual(fails(r.items).map((x) => x.check), ["qemu-failover", "hugepages", "migration-address"]);
    assert.equal(only(r.items, "accel").status, "warn");
    assert.match(only(r.items, "accel").message, /^TCG: .*\/dev\/kvm not usable/);
    assert.match(only(r.items, "migration-address").message, /migration\.address 10\.92\.0\.11 is not an address of this host \(it has 10\.92\.0\.12 \(eth1\)\)/);
    assert.match(only(r.items, "hugepages").message, /no 2048 kB huge pages/);
  });

  test("an uplink naming a device that is not there: one fail for it, the rest still checked", async () => {
    const h = await host(GOOD, { yamlExtra: "  - pf: 0000:d8:00.0\n    network: physnet1\n" });
    const r = await checkHost(h.deps);
    const bad = fails(r.items);
    assert.deepEqual(bad.map((x) => [x.check, x.subject]), [["pf", "0000:d8:00.0"]]);
    assert.match(bad[0]!.message, /^uplinks\[1\]\.pf: 0000:d8:00\.0 is not a network device on this host/);
    assert.equal(r.items.filter((x) => x.check === "vf-driver").length, 4);
  });

  test("QEMU probe parsers", () => {
    assert.deepEqual(parseQemuVersion(QEMU_VERSION), { major: 7, minor: 2, text: "7.2.22" });
    assert.deepEqual(parseQemuVersion("QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)\n"), { major: 8, minor: 2, text: "8.2.2" });
    assert.equal(parseQemuVersion("bash: qemu: not found"), null);
    assert.equal(hasFailover(QEMU_HELP), true);
    assert.equal(hasFailover("virtio-net-pci options:\n  mac=<str>\n  failover_pair_id=<str>\n"), false);
  });
});
