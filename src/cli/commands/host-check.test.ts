// `ferry host check` as an operator runs it: bin/ferry spawned with a host
// config whose sysfsRoot is a fixture (stand-in for the SR-IOV hardware this
// machine lacks); /proc/cmdline, /dev/vfio, QEMU and /dev/kvm are this
// machine's own (no IOMMU, no VFIO here).
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, describe, test } from "node:test";
import { run } from "../../core/run.ts";
import type { HostCheckReport } from "../../host/check.ts";
import { writeSysfsFixture } from "../../host/fixture.ts";

const FERRY = fileURLToPath(new URL("../../../bin/ferry", import.meta.url));
const base = await mkdtemp(join(tmpdir(), "ferry-host-check-cli-"));
after(() => rm(base, { recursive: true, force: true }));

async function config(name: string, numVfs: number, standIns: boolean): Promise<string> {
  const root = join(base, name, "sys");
  await writeSysfsFixture(root, { pfs: [{ vendor: "intel-82599", numVfs }] });
  const file = join(base, name, "host.yaml");
  await writeFile(file, `name: ${name}\nsysfsRoot: ./sys\nnetworks:\n  physnet1: {}\nuplinks:\n  - pf: 0000:3b:00.0\n    network: physnet1\n${standIns ? "    standIns: { vfs: all }\n" : ""}`);
  return file;
}

const ferry = (args: string[]) => run(FERRY, args, { allowFailure: true, timeoutMs: 60_000 });

describe("ferry host check", () => {
  test("a lab host (stand-in VFs on a fixture): exit 0, the stand-ins named, warnings only", async () => {
    const r = await ferry(["host", "check", "--config", await config("lab-a", 4, true)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^host check: lab-a\n/);
    assert.match(r.stdout, /^ok {4}iommu: stand-in: no VFIO needed \(every configured VF is a stand-in/m);
    assert.match(r.stdout, /^ok {4}pf 0000:3b:00\.0: PF 0000:3b:00\.0 \(enp59s0f0\) on network physnet1: 4 of 63 VFs enabled; all its VFs are stand-ins \(vmxnet3\)$/m);
    assert.match(r.stdout, /^ok {4}vf-iommu-group 0000:3b:10\.3: stand-in: no VFIO needed \(stand-in VF, vmxnet3\)$/m);
    assert.match(r.stdout, /^ok {4}qemu: qemu-system-x86_64: QEMU \d+\.\d+/m);
    assert.match(r.stdout, /^WARN {2}migration-address: no migration block/m);
    assert.match(r.stdout, /\d+ ok, \d+ warn, 0 fail\n$/);
  });

  test("a broken host (numvfs 0, real VFs wanted, no IOMMU here): exit 1, each problem named with its fix; --json has the same items", async () => {
    const file = await config("broken-b", 0, false);
    const r = await ferry(["host", "check", "--config", file]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^FAIL {2}pf 0000:3b:00\.0: PF 0000:3b:00\.0 \(enp59s0f0\) on network physnet1: sriov_numvfs is 0 \(of 63 possible\): no VFs$/m);
    assert.match(r.stdout, /^ {6}fix: echo 8 > \/sys\/bus\/pci\/devices\/0000:3b:00\.0\/sriov_numvfs/m);
    const j = await ferry(["host", "check", "--config", file, "--json"]);
    assert.equal(j.code, 1);
    const report = JSON.parse(j.stdout) as HostCheckReport;
    assert.equal(report.host, "broken-b");
    assert.ok(report.counts.fail >= 1);
    assert.deepEqual(report.items.find((x) => x.check === "pf")?.status, "fail");
  });

  test("ferry agent runs the check first: a fail refuses to start (the report on stderr, exit 1); --force is for 'ferry agent' only", async () => {
    const file = await config("refused-c", 0, false);
    const r = await ferry(["agent", "--config", file]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /^FAIL {2}pf 0000:3b:00\.0: .*sriov_numvfs is 0/m);
    assert.match(r.stderr, /ferry: agent refused-c not started: the host check failed \(fix the FAIL items above, or start with --force\)\n$/);
    const u = await ferry(["agent", "inventory", "--config", file, "--force"]);
    assert.equal(u.code, 2);
    assert.match(u.stderr, /--force applies to 'ferry agent' only/);
  });

  test("usage: --config is required, no HOST argument", async () => {
    const r = await ferry(["host", "check"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /missing --config <host\.yaml>/);
    assert.equal((await ferry(["host", "check", "h1", "--config", "x.yaml"])).code, 2);
  });
});
