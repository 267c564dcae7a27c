// The VF lifecycle through the seam. Stand-ins for hardware this machine lacks:
// the kernel's PCI driver core (testdata/recording-seam.ts, which never touches
// a real sysfs: its root is only a prefix) and an SR-IOV PF's netlink
// (testdata/fake-pf.ts). Assertions are the exact writes and argv, in order.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { FakeClock } from "../core/clock.ts";
import { isFerryError } from "../core/errors.ts";
import { openStateDb, RecordStore } from "./leases.ts";
import { fakePf } from "./testdata/fake-pf.ts";
import type { FakeVf } from "./testdata/fake-pf.ts";
import { recordingSeam } from "./testdata/recording-seam.ts";
import type { VfLifecycleSpec } from "./vf-setup.ts";
import { acquireVf, realVfSeam, releaseVf, VFIO_BIND_NS } from "./vf-setup.ts";

const base = await mkdtemp(join(tmpdir(), "ferry-vf-setup-"));
after(() => rm(base, { recursive: true, force: true }));
let n = 0;
const signal = (): AbortSignal => AbortSignal.timeout(10_000);
const ROOT = "/fake-sysfs"; // a prefix only: the recording seam keeps its state in memory
const VF = "0000:3b:10.2";

const pristine = (): FakeVf[] => [0, 1, 2].map(() => ({ mac: "00:00:00:00:00:00", vlan: 0, spoofchk: true, trust: false }));

function setup(): { seam: ReturnType<typeof recordingSeam>; pf: ReturnType<typeof fakePf>; records: RecordStore; file: string; close: () => void } {
  const pf = fakePf("enp59s0f0", pristine());
  const seam = recordingSeam(ROOT, pf, { [VF]: { driver: "ixgbevf", hostDriver: "ixgbevf" } });
  const file = join(base, `db${n++}`, "state.db");
  const db = openStateDb(file);
  return { seam, pf, records: new RecordStore(db, new FakeClock()), file, close: () => db.close() };
}

const spec = (o: Partial<VfLifecycleSpec> = {}): VfLifecycleSpec => ({
  vf: VF, pf: "enp59s0f0", vfIndex: 2, standIn: false,
  settings: { mac: "52:54:00:00:00:02", vlan: 100, spoofchk: true, trust: false },
  ...o,
});

const BIND = [
  `write bus/pci/drivers/ixgbevf/unbind "${VF}"`,
  `write bus/pci/devices/${VF}/driver_override "vfio-pci"`,
  `write bus/pci/drivers_probe "${VF}"`,
];
const SET = "ip link set dev enp59s0f0 vf 2 mac 52:54:00:00:00:02 vlan 100 spoofchk on trust off";
const SHOW = "ip -json -d link show dev enp59s0f0";
const RESET = ["ip link set dev enp59s0f0 vf 2 mac 00:00:00:00:00:00 vlan 0", "ip link set dev enp59s0f0 vf 2 spoofchk on", "ip link set dev enp59s0f0 vf 2 trust off"];
const UNBIND_VFIO = [`write bus/pci/devices/${VF}/driver_override "\\n"`, `write bus/pci/drivers/vfio-pci/unbind "${VF}"`, `write bus/pci/drivers_probe "${VF}"`];

describe("VF lifecycle (vf-setup)", () => {
  test("acquire: unbind, driver_override, drivers_probe, then MAC/VLAN/spoofchk/trust through the PF; again: no sysfs write", async () => {
    const t = setup();
    const deps = { seam: t.seam, records: t.records, sysfsRoot: ROOT };
    await acquireVf(deps, spec(), signal());
    assert.deepEqual(t.seam.log, [...BIND, SHOW, SET]);
    assert.equal(t.seam.devices.get(VF)?.driver, "vfio-pci");
    assert.deepEqual(t.pf.vfs[2], { mac: "52:54:00:00:00:02", vlan: 100, spoofchk: true, trust: false });
    await acquireVf(deps, spec(), signal());
    assert.deepEqual(t.seam.log, [...BIND, SHOW, SET, SET], "already on vfio-pci: no sysfs write; the same settings set again");
    t.close();
  });

  test("release (default): MAC zeroed, VLAN 0, flags restored; the VF stays on vfio-pci; a second release does nothing", async () => {
    const t = setup();
    const deps = { seam: t.seam, records: t.records, sysfsRoot: ROOT };
    await acquireVf(deps, spec(), signal());
    t.seam.log.length = 0;
    assert.deepEqual(await releaseVf(deps, spec(), signal()), []);
    assert.deepEqual(t.seam.log, RESET);
    assert.deepEqual(t.pf.vfs[2], pristine()[2]);
    assert.equal(t.seam.devices.get(VF)?.driver, "vfio-pci");
    assert.deepEqual(t.records.list(VFIO_BIND_NS), []);
    assert.deepEqual(await releaseVf(deps, spec(), signal()), []);
    assert.deepEqual(t.seam.log, RESET);
    t.close();
  });

  test("release with a configured MAC and restoreDriver, by a restarted agent: the journal in the state file is enough", async () => {
    const t = setup();
    await acquireVf({ seam: t.seam, records: t.records, sysfsRoot: ROOT }, spec(), signal());
    t.close();
    const db = openStateDb(t.file);
    const records = new RecordStore(db, new FakeClock());
    t.seam.log.length = 0;
    const s = spec({ release: { mac: "02:00:00:00:00:01", restoreDriver: true } });
    assert.deepEqual(await releaseVf({ seam: t.seam, records, sysfsRoot: ROOT }, s, signal()), []);
    assert.deepEqual(t.seam.log, ["ip link set dev enp59s0f0 vf 2 mac 02:00:00:00:00:01 vlan 0", ...RESET.slice(1), ...UNBIND_VFIO]);
    assert.deepEqual(t.seam.devices.get(VF), { driver: "ixgbevf", override: null, hostDriver: "ixgbevf" });
    assert.deepEqual(t.pf.vfs[2], { ...pristine()[2], mac: "02:00:00:00:00:01" });
    db.close();
  });

  test("a PF refusing a setting mid-way: the settings are reset and the VF goes back to its driver, in reverse order", async () => {
    const t = setup();
    t.pf.refuse.push({ vf: 2, key: "trust" }); // an ixgbevf-like driver without trust
    const deps = { seam: t.seam, records: t.records, sysfsRoot: ROOT };
    const s = spec({ settings: { mac: "52:54:00:00:00:02", vlan: 100, spoofchk: true, trust: true } });
    await assert.rejects(acquireVf(deps, s, signal()), (e: unknown) => {
      assert.ok(isFerryError(e, "FERRY_ERR_FEATURE"));
      assert.match(e.message, /^feature vf-setup:0000:3b:10\.2: init failed: .*Operation not supported/);
      assert.deepEqual(e.details["rolledBack"], [`vf-setup:${VF}`, `vfio-bind:${VF}`]);
      assert.deepEqual(e.details["rollbackFailures"], []);
      return true;
    });
    assert.deepEqual(t.seam.log, [
      ...BIND,
      SHOW,
      "ip link set dev enp59s0f0 vf 2 mac 52:54:00:00:00:02 vlan 100 spoofchk on trust on",
      ...RESET,
      SHOW, // trust refused on the way back too: it is read, and it was never changed
      ...UNBIND_VFIO,
    ]);
    assert.deepEqual(t.pf.vfs[2], pristine()[2]);
    assert.deepEqual(t.seam.devices.get(VF), { driver: "ixgbevf", override: null, hostDriver: "ixgbevf" });
    assert.deepEqual(t.records.list(VFIO_BIND_NS), []);
    assert.deepEqual(t.records.list("vf-setup"), []);
    t.close();
  });

  test("a sysfs write failing mid-way (drivers_probe): the override is undone and the host driver probed back", async () => {
    const t = setup();
    let failed = 0;
    t.seam.failOn = (entry) => entry.startsWith("write bus/pci/drivers_probe") && failed++ === 0;
    await assert.rejects(acquireVf({ seam: t.seam, records: t.records, sysfsRoot: ROOT }, spec(), signal()), (e: unknown) => {
      assert.ok(isFerryError(e, "FERRY_ERR_FEATURE"));
      assert.match(e.message, /^feature vfio-bind:0000:3b:10\.2: init failed: .*drivers_probe: cannot write "0000:3b:10\.2": EIO/);
      return true;
    });
    assert.deepEqual(t.seam.log, [...BIND, `write bus/pci/devices/${VF}/driver_override "\\n"`, `write bus/pci/drivers_probe "${VF}"`]);
    assert.equal(t.seam.devices.get(VF)?.driver, "ixgbevf");
    t.close();
  });

  test("vfio-pci missing: a clear error naming modprobe, and the VF back on its host driver", async () => {
    const t = setup();
    t.seam.vfioLoaded = false;
    await assert.rejects(acquireVf({ seam: t.seam, records: t.records, sysfsRoot: ROOT }, spec(), signal()), (e: unknown) => {
      assert.ok(isFerryError(e, "FERRY_ERR_FEATURE"));
      assert.match(e.message, /0000:3b:10\.2: vfio-pci did not bind \(driver now none\): is the vfio-pci module loaded \('modprobe vfio-pci'\)/);
      return true;
    });
    assert.deepEqual(t.seam.log, [...BIND, `write bus/pci/devices/${VF}/driver_override "\\n"`, `write bus/pci/drivers_probe "${VF}"`]);
    assert.equal(t.seam.devices.get(VF)?.driver, "ixgbevf");
    t.close();
  });

  test("a stand-in VF: no vfio step and no ip command here (its MAC stays standInSetupFeature's)", async () => {
    const t = setup();
    const deps = { seam: t.seam, records: t.records, sysfsRoot: ROOT };
    await acquireVf(deps, spec({ standIn: true }), signal());
    assert.deepEqual(await releaseVf(deps, spec({ standIn: true }), signal()), []);
    assert.deepEqual(t.seam.log, []);
    t.close();
  });

  test("the real seam writes and reads files (on a temp dir, never /sys) and names the path on failure", async () => {
    const dir = join(base, "real");
    await mkdir(join(dir, "drivers", "ixgbevf"), { recursive: true });
    await symlink("drivers/ixgbevf", join(dir, "driver"));
    const seam = realVfSeam();
    await seam.write(join(dir, "driver_override"), "vfio-pci");
    assert.equal(await readFile(join(dir, "driver_override"), "utf8"), "vfio-pci");
    assert.equal(await seam.readText(join(dir, "driver_override")), "vfio-pci");
    assert.equal(await seam.readText(join(dir, "absent")), null);
    assert.equal(await seam.readLink(join(dir, "driver")), "ixgbevf");
    assert.equal(await seam.readLink(join(dir, "absent")), null);
    await assert.rejects(seam.write(join(dir, "no", "such"), "x"), (e: unknown) => isFerryError(e, "FERRY_ERR_SYSFS") && e.message.includes(join(dir, "no", "such")));
  });
});
