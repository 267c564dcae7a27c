import assert from "node:assert/strict";
import { mkdir, mkdtemp, readlink, realpath, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { writeSysfsFixture } from "./fixture.ts";
import { findDevice, pfOfVf, physicalFunctions, readInventory, virtualFunctionsOf } from "./sysfs.ts";

const base = await mkdtemp(join(tmpdir(), "ferry-sysfs-"));
after(() => rm(base, { recursive: true, force: true }));
let n = 0;
const freshRoot = (): string => join(base, `host${n++}`);

describe("sysfs fixture + inventory", () => {
  test("default fixture: an Intel 82599 and a Mellanox ConnectX-5, 8 VFs each, with their drivers and netdevs", async () => {
    const root = freshRoot();
    const fx = await writeSysfsFixture(root);
    const inv = await readInventory({ root });
    assert.deepEqual(inv.problems, []);
    const pfs = physicalFunctions(inv);
    assert.deepEqual(pfs.map((p) => [p.bdf, p.vendor, p.device, p.driver, p.numaNode]), [
      ["0000:3b:00.0", "8086", "10fb", "ixgbe", 0],
      ["0000:5e:00.0", "15b3", "1017", "mlx5_core", 1],
    ]);
    assert.deepEqual(pfs.map((p) => [p.sriov?.numVfs, p.sriov?.totalVfs]), [[8, 63], [8, 16]]);
    assert.equal(inv.devices.length, 18);
    const intelVfs = virtualFunctionsOf(inv, "0000:3b:00.0");
    assert.deepEqual(intelVfs.map((d) => d.vf?.index), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.ok(intelVfs.every((d) => d.vendor === "8086" && d.device === "10ed" && d.driver === "ixgbevf"));
    const mlxVf = virtualFunctionsOf(inv, "0000:5e:00.0")[3]!;
    assert.equal(mlxVf.device, "1018");
    assert.equal(mlxVf.driver, "mlx5_core");
    assert.equal(mlxVf.numaNode, 1);
    // netdevs with MACs and speeds, as the fixture reported them
    const pf0 = findDevice(inv, "0000:3b:00.0")!;
    assert.deepEqual(pf0.netdevs, [{ ifname: fx.pfs[0]!.ifname, mac: fx.pfs[0]!.mac, speedMbps: 10000 }]);
    assert.equal(pf0.netdevs[0]!.ifname, "enp59s0f0");
    assert.deepEqual(intelVfs[2]!.netdevs.map((x) => x.mac), [fx.pfs[0]!.vfs[2]!.mac]);
    // the real layout: bus/pci/devices entries are symlinks into devices/
    const link = await readlink(join(root, "bus/pci/devices/0000:3b:10.0"));
    assert.equal(link, "../../../devices/pci0000:00/0000:3b:10.0");
    assert.equal(await readlink(join(root, "devices/pci0000:00/0000:3b:00.0/virtfn1")), "../0000:3b:10.1");
    assert.equal(await realpath(join(root, "bus/pci/devices/0000:3b:10.1/physfn")), await realpath(join(root, "devices/pci0000:00/0000:3b:00.0")));
  });

  test("VF MACs are locally administered unicast, distinct, and differ between two simulated hosts", async () => {
    const a = await writeSysfsFixture(freshRoot());
    const b = await writeSysfsFixture(freshRoot());
    const macs = (fx: typeof a): string[] => fx.pfs.flatMap((p) => p.vfs.map((x) => x.mac!));
    for (const m of [...macs(a), ...macs(b)]) {
      const first = parseInt(m.slice(0, 2), 16);
      assert.equal(first & 1, 0, `${m} is unicast`);
      assert.equal(first & 2, 2, `${m} is locally administered`);
    }
    assert.equal(new Set([...macs(a), ...macs(b)]).size, 32);
    // same seed → same MACs
    const c = await writeSysfsFixture(freshRoot(), { seed: "lab-host-1" });
    const d = await writeSysfsFixture(freshRoot(), { seed: "lab-host-1" });
    assert.deepEqual(macs(c), macs(d));
  });

  test("a host with no SR-IOV at all: plain NICs are listed, non-network devices are not", async () => {
    const root = freshRoot();
    await writeSysfsFixture(root, {
      pfs: [],
      extraNics: [
        { bdf: "0000:00:03.0", vendor: "1af4", device: "1041", driver: "virtio-pci", ifname: "ens3" },
        { bdf: "0000:00:1f.2", vendor: "8086", device: "2922", driver: "ahci", class: "010601" },
      ],
    });
    const inv = await readInventory({ root });
    assert.deepEqual(inv.problems, []);
    assert.deepEqual(inv.devices.map((d) => [d.bdf, d.driver, d.sriov, d.vf, d.netdevs.map((x) => x.ifname)]), [
      ["0000:00:03.0", "virtio-pci", null, null, ["ens3"]],
    ]);
    assert.deepEqual(physicalFunctions(inv), []);
  });

  test("a PF with 0 VFs, a PF with VFs, VFs without netdevs or driver", async () => {
    const root = freshRoot();
    await writeSysfsFixture(root, {
      pfs: [
        { vendor: "intel-82599", numVfs: 0 },
        { vendor: "mellanox-cx5", numVfs: 3, vfNetdevs: false, vfsUnbound: true, numaNode: -1 },
      ],
    });
    const inv = await readInventory({ root });
    assert.deepEqual(inv.problems, []);
    const [p0, p1] = physicalFunctions(inv);
    assert.equal(p0!.sriov!.numVfs, 0);
    assert.deepEqual(p0!.sriov!.vfs, []);
    assert.deepEqual(p1!.sriov!.vfs.map((x) => x.index), [0, 1, 2]);
    const vfs = virtualFunctionsOf(inv, p1!.bdf);
    assert.deepEqual(vfs.map((x) => [x.vf?.index, x.driver, x.netdevs.length, x.numaNode]), [
      [0, null, 0, null],
      [1, null, 0, null],
      [2, null, 0, null],
    ]);
  });

  test("malformed and missing files: that device is reported with its path, the others still count", async () => {
    const root = freshRoot();
    await writeSysfsFixture(root, { pfs: [{ vendor: "intel-82599", numVfs: 2 }, { vendor: "mellanox-cx5", numVfs: 2 }] });
    const dev = (bdf: string, f: string): string => join(root, "devices/pci0000:00", bdf, f);
    await writeFile(dev("0000:3b:10.1", "vendor"), "intel\n"); // malformed
    await unlink(dev("0000:5e:10.0", "device")); // missing
    await writeFile(dev("0000:5e:00.0", "numa_node"), "zero\n"); // malformed optional file on a PF
    const inv = await readInventory({ root });
    assert.deepEqual(
      inv.problems.map((p) => [p.bdf, p.path]),
      [
        ["0000:3b:10.1", join(root, "bus/pci/devices/0000:3b:10.1/vendor")],
        ["0000:5e:00.0", join(root, "bus/pci/devices/0000:5e:00.0/numa_node")],
        ["0000:5e:10.0", join(root, "bus/pci/devices/0000:5e:10.0/device")],
        ["0000:5e:10.1", join(root, "bus/pci/devices/0000:5e:10.1/physfn")],
      ],
    );
    assert.match(inv.problems[0]!.message, /malformed.*"intel"/);
    assert.match(inv.problems[2]!.message, /missing/);
    // the VF whose PF is broken is still listed, with its PF named and index unknown
    assert.deepEqual(findDevice(inv, "0000:5e:10.1")?.vf, { pf: "0000:5e:00.0", index: null });
    assert.deepEqual(inv.devices.map((d) => d.bdf), ["0000:3b:00.0", "0000:3b:10.0", "0000:5e:10.1"]);
  });

  test("a device directory whose name is not a PCI address is ignored and reported", async () => {
    const root = freshRoot();
    await writeSysfsFixture(root, { pfs: [{ vendor: "intel-82599", numVfs: 1 }] });
    const etc = join(base, "planted-etc");
    await mkdir(etc, { recursive: true });
    await writeFile(join(etc, "class"), "0x020000\n");
    await symlink(etc, join(root, "bus/pci/devices/..%2f..%2fetc"));
    await mkdir(join(root, "bus/pci/devices/0000:3b:20.8")); // function 8 does not exist
    const inv = await readInventory({ root });
    assert.deepEqual(inv.devices.map((d) => d.bdf), ["0000:3b:00.0", "0000:3b:10.0"]);
    assert.deepEqual(inv.problems.map((p) => p.bdf).sort(), ["..%2f..%2fetc", "0000:3b:20.8"]);
    assert.ok(inv.problems.every((p) => /not a PCI address/.test(p.message)));
  });

  test("a tree that cannot be listed is FERRY_ERR_SYSFS naming the path", async () => {
    const root = freshRoot();
    await assert.rejects(readInventory({ root }), (e: unknown) => {
      assert.ok(isFerryError(e, "FERRY_ERR_SYSFS"));
      assert.ok(e.message.includes(join(root, "bus/pci/devices")));
      return true;
    });
  });

  test("the PF of a VF by reverse lookup, with its index", async () => {
    const root = freshRoot();
    await writeSysfsFixture(root);
    assert.deepEqual(await pfOfVf("0000:5e:10.6", { root }), { pf: "0000:5e:00.0", index: 6 });
    await assert.rejects(pfOfVf("0000:3b:00.0", { root }), (e: unknown) => isFerryError(e, "FERRY_ERR_NOT_FOUND"));
    await assert.rejects(pfOfVf("../../etc", { root }), (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"));
  });

  test("a PF with more than 8 VFs uses several device numbers", async () => {
    const root = freshRoot();
    const fx = await writeSysfsFixture(root, { pfs: [{ vendor: "intel-82599", numVfs: 10, bdf: "0000:af:00.1" }] });
    assert.deepEqual(fx.pfs[0]!.vfs.slice(7, 10).map((x) => x.bdf), ["0000:af:10.7", "0000:af:11.0", "0000:af:11.1"]);
    assert.equal(fx.pfs[0]!.ifname, "enp175s0f1");
    const inv = await readInventory({ root });
    assert.equal(virtualFunctionsOf(inv, "0000:af:00.1").length, 10);
  });
});
