// The VF lifecycle (issue 17) on the lease paths that need a guest really
// running in QEMU: stop, save, guest lost, a migration's confirm on the
// source, and the transfers that keep a VF as it is (finish on the
// destination, local migration, migrate-back). Agents opened in-process, one
// per simulated host; each path asserts the exact sysfs writes and `ip` argv,
// in order, and that a transfer writes nothing.
//
// Stand-ins for what this machine lacks (no SR-IOV, no VFIO), named in the
// test names: a sysfs fixture of real (non-stand-in) 82599 VFs, the
// recording seam (src/host/testdata/recording-seam.ts, the kernel's PCI
// driver core) over a fake PF (its netlink), and a QEMU wrapper that records
// its argv and what the seam had done when it ran, then execs the real
// qemu-system-x86_64 with each `-device vfio-pci,host=…` replaced by an
// emulated e1000e with the same id, bus and failover pair. The guest is a
// no-OS one (no kernel): its failover primaries stay hidden, so migrations
// need no guest to release them.
import assert from "node:assert/strict";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Agent } from "../../src/agent/agent.ts";
import * as steps from "../../src/agent/migration/steps.ts";
import { localMigrate } from "../../src/agent/migration/local.ts";
import { saveInstance } from "../../src/agent/migration/save.ts";
import { makeTestHost, recordingVfs } from "../../src/agent/testing.ts";
import type { RecordingVfs, TestHost } from "../../src/agent/testing.ts";
import { isFerryError } from "../../src/core/errors.ts";
import { VF_SETUP_NS } from "../../src/host/features.ts";
import { VFIO_BIND_NS } from "../../src/host/vf-setup.ts";
import type { NicSpec, VmSpec } from "../../src/model/vm.ts";
import type { Instance } from "../../src/qemu/instance.ts";
import { listDeviceIds, queryStatus } from "../../src/qmp/commands.ts";

const REAL_QEMU = "/usr/bin/qemu-system-x86_64";
const hosts: TestHost[] = [];
const agents: Agent[] = [];
after(async () => {
  for (const a of agents) {
    // this file's QEMUs only (each agent's own instances)
    for (const i of (await a.listInstances().catch(() => ({ instances: [] }))).instances) a.getInstance(i.instanceId).kill();
    await a.close();
  }
  await Promise.all(hosts.map((h) => h.cleanup()));
});
const sig = (): AbortSignal => AbortSignal.timeout(30_000);

/** One QEMU the wrapper ran: its argv as the agent gave it, and the seam's log at that moment. */
interface QemuRun {
  argv: string[];
  seam: string[];
}

interface Side extends RecordingVfs {
  host: TestHost;
  agent: Agent;
  vfs: string[];
  /** What the wrapper recorded for the QEMU with this pid (exec keeps the pid). */
  qemuRun(pid: number): Promise<QemuRun>;
  /** For each VF reset (`ip link set … mac 00:00:00:00:00:00 …`): whether the QEMU with `pid` was still alive then. */
  aliveAtReset: boolean[];
  watchPid: number | null;
}

/** /proc says the pid is a live process (not a zombie). */
function aliveNow(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

async function side(name: string): Promise<Side> {
  const host = await makeTestHost({ name, numVfs: 4, realVfs: { vlan: 100 } });
  hosts.push(host);
  // the seam's log is on disk after every call (logFile), for the QEMU stand-in to copy when it runs
  const rv = recordingVfs(host);
  const { pf, logFile } = rv;
  const s: Side = {
    ...rv, host, vfs: host.vfs, agent: undefined as unknown as Agent, aliveAtReset: [], watchPid: null,
    async qemuRun(pid) {
      const text = await readFile(join(host.dir, `qemu-run.${pid}`), "utf8");
      const [argv = "", seamPart = ""] = text.split("--- seam\n");
      return { argv: argv.replace(/^--- argv\n/, "").split("\n").filter(Boolean), seam: seamPart.split("\n").filter(Boolean) };
    },
  };
  const pfRun = pf.run;
  pf.run = (file, args, opts) => {
    if (args.includes("00:00:00:00:00:00") && s.watchPid !== null) s.aliveAtReset.push(aliveNow(s.watchPid));
    return pfRun(file, args, opts);
  };
  await mkdir(host.qemuDir, { recursive: true });
  const qemu = join(host.qemuDir, "qemu-vfio-stand-in");
  await writeFile(qemu, [
    "#!/bin/sh",
    "# Test stand-in for QEMU on a host with VFIO (this machine has none): record the argv and the",
    "# VF seam's log now, then run the real QEMU with each vfio-pci device as an emulated e1000e.",
    `{ echo '--- argv'; printf '%s\\n' "$@"; echo '--- seam'; cat '${logFile}'; } > '${host.dir}/qemu-run.'$$`,
    "for a do",
    "  shift",
    "  case \"$a\" in",
    "    vfio-pci,host=*) a=$(printf '%s' \"$a\" | sed -e 's/^vfio-pci,host=[^,]*/e1000e/' -e 's/,rombar=0/,romfile=/') ;;",
    "  esac",
    "  set -- \"$@\" \"$a\"",
    "done",
    `exec ${REAL_QEMU} "$@"`,
    "",
  ].join("\n"));
  await chmod(qemu, 0o755);
  s.agent = await Agent.open({ config: host.config, accel: { accel: "tcg", reason: "test" }, vfSeam: rv.vfSeam, qemuBinary: qemu, reclaimIntervalMs: 3_600_000 });
  agents.push(s.agent);
  return s;
}

// the exact sysfs writes and ip argv (the fixture's PF is enp59s0f0, its VFs 0000:3b:10.0, 10.1, …)
const bind = (vf: string): string[] => [`write bus/pci/drivers/ixgbevf/unbind "${vf}"`, `write bus/pci/devices/${vf}/driver_override "vfio-pci"`, `write bus/pci/drivers_probe "${vf}"`];
const acquired = (s: Side, i: number, mac: string): string[] => [...bind(s.vfs[i]!), `ip -json -d link show dev ${s.pfName}`, `ip link set dev ${s.pfName} vf ${i} mac ${mac} vlan 100`];
const reset = (s: Side, i: number): string => `ip link set dev ${s.pfName} vf ${i} mac 00:00:00:00:00:00 vlan 0`;

const MAC = "52:54:00:17:00:01";
const failoverNic = (vf: string): NicSpec => ({ name: "net0", mode: "failover", mac: MAC, guestPorts: { standby: 1, primary: 2 }, standby: { kind: "none" }, primary: { kind: "vfio", host: vf } });
const spec = (name: string, vf: string, extra: Partial<VmSpec> = {}): VmSpec => ({
  uuid: crypto.randomUUID(), name, memoryMiB: 64, vcpus: 1, kernel: "/k", initrd: "/i", cmdline: "", noOs: true, nics: [failoverNic(vf)], ...extra,
});

function journalEmpty(s: Side): void {
  assert.deepEqual(s.agent.records.list(VFIO_BIND_NS), [], "no vfio-bind journal left");
  assert.deepEqual(s.agent.records.list(VF_SETUP_NS), [], "no vf-setup journal left");
}

/** Start a VM on `s` through the agent; the QEMU runs (real) and the VF was set up before it started. */
async function started(s: Side, vmSpec: VmSpec, vf: number): Promise<Instance> {
  const view = await s.agent.startInstance(vmSpec);
  const inst = s.agent.getInstance(view.instanceId);
  assert.ok(await inst.alive(), "QEMU runs");
  const run = await s.qemuRun(inst.pid);
  assert.ok(run.argv.some((a) => a.startsWith(`vfio-pci,host=${s.vfs[vf]!},id=net0-primary`)), `QEMU was given the VF: ${run.argv.join(" ")}`);
  assert.deepEqual(run.seam, acquired(s, vf, MAC), "QEMU started after the VF was bound to vfio-pci and set");
  return inst;
}

/** A migration from `a`'s instance to `b`'s VF `vf`, up to a finished destination; returns b's instance. */
async function migrate(a: Side, b: Side, id: string, src: Instance, vf: number, o: { adoptFrom?: string } = {}): Promise<{ dst: Instance; finish: steps.FinishResult }> {
  const { spec: portable } = await steps.begin(a.agent.stepContext(), id, src.id, sig());
  const prep = await steps.prepare(b.agent.stepContext(), id, { spec: await b.agent.admitSpec(portable), nics: [{ name: "net0", vf: b.vfs[vf]! }], leaseTtlMs: 600_000, ...o }, sig());
  assert.equal((await steps.perform(a.agent.stepContext(), id, { instanceId: src.id, uri: prep.uri, unplugMs: 5_000, convergeMs: 30_000 }, sig())).status, "pre-switchover");
  await steps.switchover(a.agent.stepContext(), id, src.id, 30_000, sig());
  const finish = await steps.finish(b.agent.stepContext(), id, 300, sig());
  const dst = b.agent.getInstance(prep.instanceId);
  assert.equal((await queryStatus(dst.qmp)).running, true, "the guest runs on the destination");
  return { dst, finish };
}

describe("VF lifecycle with a real QEMU (stand-ins: sysfs fixture of real 82599 VFs + recording seam + QEMU wrapper running e1000e for vfio-pci)", { timeout: 120_000 }, () => {
  test("stop: the VF is set before QEMU starts and reset once, after QEMU has exited; its lease goes", async () => {
    const a = await side("host-a");
    const inst = await started(a, spec("vm-stop", a.vfs[0]!), 0);
    a.watchPid = inst.pid;
    const stopped = await a.agent.stopInstance(inst.id);
    assert.deepEqual(stopped.releasedVfs, [a.vfs[0]!]);
    assert.deepEqual(a.seam.log, [...acquired(a, 0, MAC), reset(a, 0)]);
    assert.deepEqual(a.aliveAtReset, [false], "QEMU was gone when the VF was reset");
    assert.deepEqual(a.agent.listLeases(), []);
    journalEmpty(a);
    assert.deepEqual(a.pf.vfs[0], { mac: "00:00:00:00:00:00", vlan: 0, spoofchk: true, trust: false });
  });

  test("save: the guest's state goes to a file, then its QEMU exits and the VF is reset; its lease goes", async () => {
    const a = await side("host-a");
    const inst = await started(a, spec("vm-save", a.vfs[1]!), 1);
    a.watchPid = inst.pid;
    const file = join(a.host.dir, "saved", "vm-save.state");
    const saved = await saveInstance(a.agent.stepContext(), inst.id, file, { unplugMs: 5_000, timeoutMs: 30_000 }, sig());
    assert.ok(saved.bytes > 0, "state written");
    assert.deepEqual(saved.releasedVfs, [a.vfs[1]!]);
    assert.deepEqual(a.seam.log, [...acquired(a, 1, MAC), reset(a, 1)]);
    assert.deepEqual(a.aliveAtReset, [false], "QEMU was gone when the VF was reset");
    assert.deepEqual(a.agent.listLeases(), []);
    journalEmpty(a);
  });

  test("guest lost (its QEMU SIGKILLed): the agent's tick buries the instance and resets the VF; its lease goes", async () => {
    const a = await side("host-a");
    const inst = await started(a, spec("vm-lost", a.vfs[2]!), 2);
    a.watchPid = inst.pid;
    process.kill(inst.pid, "SIGKILL");
    assert.ok(await inst.waitExit(5_000));
    const until = Date.now() + 5_000;
    while (!inst.qmp.closed && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(a.seam.log, acquired(a, 2, MAC), "nothing reset before the agent noticed");
    await a.agent.tick();
    const gone = (await a.agent.listInstances()).gone;
    assert.deepEqual(gone.map((g) => [g.instanceId, g.reason, g.releasedVfs]), [[inst.id, "QEMU exited", [a.vfs[2]!]]]);
    assert.deepEqual(a.seam.log, [...acquired(a, 2, MAC), reset(a, 2)]);
    assert.deepEqual(a.agent.listLeases(), []);
    journalEmpty(a);
  });

  test("migration between hosts: prepare sets the destination's VF before its QEMU; finish writes nothing on either host; confirm stops the source's QEMU, then resets its VF", async () => {
    const a = await side("host-a");
    const b = await side("host-b");
    const src = await started(a, spec("vm-mig", a.vfs[0]!), 0);
    a.watchPid = src.pid;
    const { dst, finish } = await migrate(a, b, "m-vf-1", src, 3);
    assert.deepEqual((await b.qemuRun(dst.pid)).seam, acquired(b, 3, MAC), "the incoming QEMU started after the VF was set");
    assert.ok((await b.qemuRun(dst.pid)).argv.some((x) => x.startsWith(`vfio-pci,host=${b.vfs[3]!}`)));
    assert.deepEqual(finish.nics.map((n) => n.vf), [b.vfs[3]!]);
    // finish: the lease moved from the migration to the instance; the VF as it was
    assert.deepEqual(b.seam.log, acquired(b, 3, MAC), "finish wrote nothing on the destination");
    assert.deepEqual(b.agent.listLeases().map((l) => [l.vf, l.holder.kind]), [[b.vfs[3]!, "instance"]]);
    assert.deepEqual(a.seam.log, acquired(a, 0, MAC), "nothing reset on the source before confirm");
    assert.deepEqual(await steps.confirmSource(a.agent.stepContext(), "m-vf-1", src.id, true, sig()), { state: "stopped" });
    assert.deepEqual(a.seam.log, [...acquired(a, 0, MAC), reset(a, 0)]);
    assert.deepEqual(a.aliveAtReset, [false], "the source's QEMU was gone when its VF was reset");
    assert.deepEqual(a.agent.listLeases(), []);
    journalEmpty(a);
    assert.deepEqual(b.seam.log, acquired(b, 3, MAC), "confirm on the source wrote nothing on the destination");
    b.watchPid = dst.pid;
    await b.agent.stopInstance(dst.id);
    assert.deepEqual(b.seam.log, [...acquired(b, 3, MAC), reset(b, 3)], "the VF the guest took over is reset when its instance stops");
    journalEmpty(b);
  });

  test("local migration: the VF's lease moves to the new QEMU and nothing is written; stopping the new instance resets it once", async () => {
    const a = await side("host-a");
    const old = await started(a, spec("vm-local", a.vfs[1]!, { sharedMemory: true }), 1);
    const r = await localMigrate(a.agent.stepContext(), { instanceId: old.id, unplugMs: 5_000, timeoutMs: 30_000, primaryBackMs: 300 }, sig());
    assert.deepEqual(r.movedVfs, [a.vfs[1]!]);
    const next = a.agent.getInstance(r.newInstanceId);
    assert.equal(await old.alive(), false, "the old QEMU is gone");
    assert.equal((await queryStatus(next.qmp)).running, true);
    const run = await a.qemuRun(next.pid);
    assert.ok(run.argv.some((x) => x.startsWith(`vfio-pci,host=${a.vfs[1]!}`)), "the new QEMU was given the same VF");
    assert.deepEqual(run.seam, acquired(a, 1, MAC), "the new QEMU started with the VF as it was");
    assert.deepEqual(a.seam.log, acquired(a, 1, MAC), "the local migration wrote nothing");
    assert.deepEqual(a.agent.listLeases().map((l) => [l.vf, l.holder.kind === "instance" && l.holder.instanceId]), [[a.vfs[1]!, next.id]]);
    a.watchPid = next.pid;
    await a.agent.stopInstance(next.id);
    assert.deepEqual(a.seam.log, [...acquired(a, 1, MAC), reset(a, 1)]);
    assert.deepEqual(a.aliveAtReset, [false]);
    journalEmpty(a);
  });

  test("migrate-back: the original source adopts its VF for the guest's return and writes nothing; the destination it left resets its VF at confirm", async () => {
    const a = await side("host-a");
    const b = await side("host-b");
    const src = await started(a, spec("vm-back", a.vfs[2]!), 2);
    // the guest goes to host-b; say its mandatory NIC did not come back there (the no-OS guest never re-plugs it)
    const { dst, finish } = await migrate(a, b, "m-vf-2", src, 0);
    assert.deepEqual(finish.nics.map((n) => [n.vf, n.attached]), [[b.vfs[0]!, false]]);
    assert.deepEqual(a.seam.log, acquired(a, 2, MAC));
    // the coordinator migrates it back onto the VF host-a's old instance still holds (adoptFrom)
    const { dst: back } = await migrate(b, a, "m-vf-2-back", dst, 2, { adoptFrom: src.id });
    assert.equal(await src.alive(), false, "the old source instance was stopped when adopted");
    const run = await a.qemuRun(back.pid);
    assert.deepEqual(run.seam, acquired(a, 2, MAC), "the returning guest's QEMU started with the VF as the old instance left it");
    assert.deepEqual(a.seam.log, acquired(a, 2, MAC), "adopt, prepare and finish on the original source wrote nothing");
    assert.deepEqual(a.agent.listLeases().map((l) => [l.vf, l.holder.kind === "instance" && l.holder.instanceId]), [[a.vfs[2]!, back.id]]);
    b.watchPid = dst.pid;
    assert.deepEqual(await steps.confirmSource(b.agent.stepContext(), "m-vf-2-back", dst.id, true, sig()), { state: "stopped" });
    assert.deepEqual(b.seam.log, [...acquired(b, 0, MAC), reset(b, 0)]);
    assert.deepEqual(b.aliveAtReset, [false]);
    journalEmpty(b);
    assert.deepEqual(a.seam.log, acquired(a, 2, MAC), "host-a still as the guest has it");
    assert.ok((await listDeviceIds(back.qmp)).includes("net0-standby"));
  });

  test("guest lost on the destination after the switch-over (its QEMU SIGKILLed): finish says FERRY_ERR_GUEST_LOST and resets the migration's VF", async () => {
    const a = await side("host-a");
    const b = await side("host-b");
    const src = await started(a, spec("vm-dlost", a.vfs[3]!), 3);
    const id = "m-vf-3";
    const { spec: portable } = await steps.begin(a.agent.stepContext(), id, src.id, sig());
    const prep = await steps.prepare(b.agent.stepContext(), id, { spec: await b.agent.admitSpec(portable), nics: [{ name: "net0", vf: b.vfs[1]! }], leaseTtlMs: 600_000 }, sig());
    await steps.perform(a.agent.stepContext(), id, { instanceId: src.id, uri: prep.uri, unplugMs: 5_000, convergeMs: 30_000 }, sig());
    await steps.switchover(a.agent.stepContext(), id, src.id, 30_000, sig());
    const dst = b.agent.getInstance(prep.instanceId);
    b.watchPid = dst.pid;
    process.kill(dst.pid, "SIGKILL");
    assert.ok(await dst.waitExit(5_000));
    await assert.rejects(steps.finish(b.agent.stepContext(), id, 300, sig()), (e: unknown) => isFerryError(e, "FERRY_ERR_GUEST_LOST"));
    assert.deepEqual(b.seam.log, [...acquired(b, 1, MAC), reset(b, 1)]);
    assert.deepEqual(b.aliveAtReset, [false]);
    assert.deepEqual(b.agent.listLeases(), []);
    journalEmpty(b);
    assert.deepEqual(a.seam.log, acquired(a, 3, MAC), "the source's VF untouched (its instance stays until the coordinator decides)");
  });
});
