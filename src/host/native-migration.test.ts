// Native VFIO device-state migration: the probe's verdict from QEMU's own
// output. qemu-7.2-*.txt are recorded from this machine's QEMU 7.2 (Debian
// 12); qemu-8.2-like-*.fixture.txt are HAND-MADE fixtures (no QEMU 8.2 here):
// the 7.2 output with vfio-pci's enable-migration property as QEMU ≥ 8.1 lists it.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { cluster, host, pf, vm } from "../scheduler/fixtures.ts";
import { place } from "../scheduler/place.ts";
import { nativeVfioVerdict, probeNativeVfioMigration, vfioMigrationProperty } from "./native-migration.ts";

const td = (f: string): Promise<string> => readFile(new URL(`./testdata/${f}`, import.meta.url), "utf8");
const v72 = await td("qemu-7.2-version.txt");
const h72 = await td("qemu-7.2-vfio-pci-help.txt");
const v82 = await td("qemu-8.2-like-version.fixture.txt");
const h82 = await td("qemu-8.2-like-vfio-pci-help.fixture.txt");
const mlx = [{ vendor: "15b3", standIn: false }];
const base = await mkdtemp(join(tmpdir(), "ferry-native-"));
after(() => rm(base, { recursive: true, force: true }));

describe("native VFIO migration probe", () => {
  test("QEMU 7.2 (recorded): only the experimental x-enable-migration: unavailable, saying why", () => {
    assert.equal(vfioMigrationProperty(h72), "x-enable-migration");
    const r = nativeVfioVerdict({ version: v72, vfioHelp: h72, vfs: mlx, loadedDrivers: new Set(["mlx5_vfio_pci"]) });
    assert.equal(r.available, false);
    assert.match(r.reason, /^QEMU 7\.2\.22 has only the experimental x-enable-migration .*needs QEMU ≥ 8\.1 \(vfio-pci enable-migration\); VFs move by failover\/ephemeral$/);
  });

  test("QEMU 8.2-like (fixture) with mlx5_vfio_pci loaded for a Mellanox VF: available; without the variant driver, or with stand-ins only: unavailable, saying why", () => {
    assert.equal(vfioMigrationProperty(h82), "enable-migration");
    const ok = nativeVfioVerdict({ version: v82, vfioHelp: h82, vfs: mlx, loadedDrivers: new Set(["mlx5_vfio_pci"]) });
    assert.deepEqual([ok.available, /mlx5_vfio_pci loaded/.test(ok.reason)], [true, true]);
    const intel = nativeVfioVerdict({ version: v82, vfioHelp: h82, vfs: [{ vendor: "8086", standIn: false }], loadedDrivers: new Set(["mlx5_vfio_pci"]) });
    assert.equal(intel.available, false);
    assert.match(intel.reason, /no vfio-pci variant driver with migration support is loaded for this host's VFs \(vendor 8086;/);
    const lab = nativeVfioVerdict({ version: v82, vfioHelp: h82, vfs: [{ vendor: "8086", standIn: true }], loadedDrivers: new Set() });
    assert.match(lab.reason, /stand-ins \(emulated NICs: no device state to move\)/);
    assert.equal(nativeVfioVerdict({ version: v82, vfioHelp: h72, vfs: mlx, loadedDrivers: new Set(["mlx5_vfio_pci"]) }).available, false, "8.x without enable-migration");
  });

  test("the probe runs QEMU's --version and -device vfio-pci,help and looks for the variant drivers in sysfs; a QEMU that cannot run is unavailable with its cause", async () => {
    const root = join(base, "sys");
    await mkdir(join(root, "bus", "pci", "drivers", "mlx5_vfio_pci"), { recursive: true });
    const calls: string[] = [];
    const run = (file: string, args: readonly string[]) => {
      calls.push([file, ...args].join(" "));
      return Promise.resolve({ code: 0, stdout: args[0] === "--version" ? v82 : h82, stderr: "" });
    };
    const r = await probeNativeVfioMigration({ run, qemuBinary: "/opt/qemu/bin/qemu-system-x86_64", sysfsRoot: root, vfs: mlx });
    assert.equal(r.available, true);
    assert.deepEqual(calls.sort(), ["/opt/qemu/bin/qemu-system-x86_64 --version", "/opt/qemu/bin/qemu-system-x86_64 -device vfio-pci,help"]);
    const gone = await probeNativeVfioMigration({ run: () => Promise.reject(new Error("spawn ENOENT")), sysfsRoot: root, vfs: mlx });
    assert.deepEqual(gone, { available: false, reason: "cannot ask qemu-system-x86_64: spawn ENOENT" });
  });

  test("ferry migrate --plan: each VF NIC's note says whether native VFIO state migration is possible on that host, and why not", () => {
    const why = nativeVfioVerdict({ version: v72, vfioHelp: h72, vfs: mlx, loadedDrivers: new Set() });
    const snap = cluster([host("src"), { ...host("a"), vfioMigration: why }], [pf("a", { network: "physnet1", bus: "3b", vfs: 8, leased: 0 })]);
    const p = place(snap, { vm: vm() });
    assert.equal(p.kind, "placed");
    if (p.kind !== "placed") return;
    assert.match(p.destinations[0]!.nics[0]!.note, /VFs in use after; NUMA \d\); native VFIO state migration unavailable: QEMU 7\.2\.22 has only the experimental x-enable-migration/);
  });
});
