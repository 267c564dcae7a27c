// The VF lifecycle on the agent's lease paths (issue 17), driven through the
// agent opened in-process. Stand-ins for what this machine lacks (no SR-IOV,
// no VFIO): a sysfs fixture of a host with real (non-stand-in) 82599 VFs,
// the recording seam (src/host/testdata/recording-seam.ts: the kernel's PCI
// driver core) over a fake PF (testdata/fake-pf.ts: its netlink), and a fake
// QEMU binary (a shell script that records what it was given and what the
// seam had done by then, then fails as QEMU does without VFIO). Assertions
// are the exact sysfs writes and `ip` argv, in order.
import assert from "node:assert/strict";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { VF_SETUP_NS } from "../host/features.ts";
import type { LeaseHolder } from "../host/leases.ts";
import type { FakePf } from "../host/testdata/fake-pf.ts";
import type { RecordingSeam } from "../host/testdata/recording-seam.ts";
import { VFIO_BIND_NS } from "../host/vf-setup.ts";
import { instancePaths } from "../qemu/instance.ts";
import { Agent } from "./agent.ts";
import { abortDestination, DEST, prepare } from "./migration/destination.ts";
import type { DestRecord } from "./migration/destination.ts";
import { restoreInstance } from "./migration/save.ts";
import { makeTestHost, recordingVfs } from "./testing.ts";
import type { RealVfOptions, TestHost } from "./testing.ts";

const VM = "6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab";
const hosts: TestHost[] = [];
after(() => Promise.all(hosts.map((h) => h.cleanup())));
const signal = (): AbortSignal => AbortSignal.timeout(20_000);

interface Rig {
  host: TestHost;
  agent: Agent;
  seam: RecordingSeam;
  pf: FakePf;
  pfName: string;
  vfs: string[];
  /** What the fake QEMU saw of the seam's log when it ran (null: it never ran), and its argv. */
  qemuSaw(): Promise<{ seam: string[]; argv: string[] } | null>;
  reopen(): Promise<Agent>;
  close(): Promise<void>;
}

async function rig(o: { realVfs?: RealVfOptions; standIns?: boolean; lab?: boolean } = {}): Promise<Rig> {
  const host = await makeTestHost({ numVfs: 4, lab: o.lab ?? false, ...(o.standIns === true ? {} : { realVfs: o.realVfs ?? { vlan: 100 } }) });
  hosts.push(host);
  // the seam's log is on disk after every call (logFile), for the QEMU stand-in to copy when it runs
  const { pf, pfName, seam, vfSeam: traced, logFile } = recordingVfs(host);
  await mkdir(host.qemuDir, { recursive: true });
  const qemu = join(host.qemuDir, "fake-qemu");
  const seen = join(host.dir, "qemu-saw-seam.log");
  const argvFile = join(host.dir, "qemu-argv");
  await writeFile(qemu, `#!/bin/sh\ncp '${logFile}' '${seen}'\nprintf '%s\\n' "$@" > '${argvFile}'\necho "qemu-system-x86_64: -device vfio-pci: fake QEMU (test stand-in): no VFIO on this machine" >&2\nexit 1\n`);
  await chmod(qemu, 0o755);
  const open = async (): Promise<Agent> => {
    const a = await Agent.open({ config: host.config, accel: { accel: "tcg", reason: "test" }, vfSeam: traced, qemuBinary: qemu, reclaimIntervalMs: 3_600_000 });
    // the agent's start-up probe (native VFIO migration) ran the fake QEMU too: only what runs later counts
    await rm(seen, { force: true });
    return a;
  };
  const r: Rig = {
    host, seam, pf, pfName, vfs: host.vfs,
    agent: await open(),
    async qemuSaw() {
      const s = await readFile(seen, "utf8").catch(() => null);
      if (s === null) return null;
      return { seam: s.split("\n").filter(Boolean), argv: (await readFile(argvFile, "utf8")).split("\n").filter(Boolean) };
    },
    async reopen() {
      await r.agent.close();
      r.agent = await open();
      return r.agent;
    },
    close: () => r.agent.close(),
  };
  return r;
}

// the exact sysfs writes and ip argv (the fixture's PF is enp59s0f0, its VFs 0000:3b:10.0, 10.1, …)
const bind = (vf: string): string[] => [`write bus/pci/drivers/ixgbevf/unbind "${vf}"`, `write bus/pci/devices/${vf}/driver_override "vfio-pci"`, `write bus/pci/drivers_probe "${vf}"`];
const show = (r: Rig): string => `ip -json -d link show dev ${r.pfName}`;
const set = (r: Rig, i: number, mac: string, vlan = 100): string => `ip link set dev ${r.pfName} vf ${i} mac ${mac} vlan ${vlan}`;
const reset = (r: Rig, i: number, mac = "00:00:00:00:00:00"): string => `ip link set dev ${r.pfName} vf ${i} mac ${mac} vlan 0`;
const acquired = (r: Rig, i: number, mac: string): string[] => [...bind(r.vfs[i]!), show(r), set(r, i, mac)];

const MAC = ["52:54:00:00:00:01", "52:54:00:00:00:02"] as const;
const vfioNic = (name: string, mac: string, vf: string, port: number) => ({ name, mode: "failover", mac, guestPorts: { standby: port, primary: port + 1 }, standby: { kind: "none" }, primary: { kind: "vfio", host: vf } });
const baseSpec = { uuid: VM, name: "vm1", memoryMiB: 64, vcpus: 1, kernel: "/k", initrd: "/i", cmdline: "", noOs: true };

function journalEmpty(r: Rig): void {
  assert.deepEqual(r.agent.records.list(VFIO_BIND_NS), [], "no vfio-bind journal left");
  assert.deepEqual(r.agent.records.list(VF_SETUP_NS), [], "no vf-setup journal left");
}

/** The state a prepared (or running) holder leaves: VFs leased to it and set up, as the agent's paths do it. */
async function leaseAndAcquire(r: Rig, holder: LeaseHolder, vfs: number[]): Promise<void> {
  for (const i of vfs) r.agent.acquireLease(r.vfs[i]!, holder);
  await r.agent.vfLife.acquire(vfs.map((i) => ({ vf: r.vfs[i]!, mac: MAC[i] ?? "52:54:00:00:00:09" })), signal());
}

describe("VF lifecycle on the agent's lease paths (stand-ins: sysfs fixture of real VFs + recording seam + fake QEMU)", () => {
  test("instance start: both VFs bound to vfio-pci and set (MAC, VLAN) before QEMU runs; QEMU failing: each reset, last first, and no lease left", async () => {
    const r = await rig();
    try {
      const spec = { ...baseSpec, nics: [vfioNic("net0", MAC[0], r.vfs[0]!, 1), vfioNic("net1", MAC[1], r.vfs[1]!, 3)] };
      await assert.rejects(r.agent.startInstance(spec), (e: unknown) => isFerryError(e, "FERRY_ERR_QEMU_START") && /no VFIO on this machine/.test(e.message));
      const acquire = [...acquired(r, 0, MAC[0]), ...acquired(r, 1, MAC[1])];
      assert.deepEqual(r.seam.log, [...acquire, reset(r, 1), reset(r, 0)]);
      const saw = await r.qemuSaw();
      assert.deepEqual(saw?.seam, acquire, "QEMU ran after every VF was set up, before any reset");
      assert.ok(saw?.argv.some((a) => a.startsWith(`vfio-pci,host=${r.vfs[0]!}`)), saw?.argv.join(" "));
      assert.deepEqual(r.agent.listLeases(), []);
      journalEmpty(r);
      assert.equal(r.seam.devices.get(r.vfs[0]!)?.driver, "vfio-pci", "released (not rolled back): the VF stays on vfio-pci by default");
      assert.deepEqual(r.pf.vfs[0], { mac: "00:00:00:00:00:00", vlan: 0, spoofchk: true, trust: false });
    } finally {
      await r.close();
    }
  });

  test("instance start: the second VF failing to bind (drivers_probe EIO): it goes back to ixgbevf, the first is reset, QEMU never runs, no lease left", async () => {
    const r = await rig();
    try {
      let n = 0;
      r.seam.failOn = (entry) => entry === `write bus/pci/drivers_probe "${r.vfs[1]!}"` && n++ === 0;
      const spec = { ...baseSpec, nics: [vfioNic("net0", MAC[0], r.vfs[0]!, 1), vfioNic("net1", MAC[1], r.vfs[1]!, 3)] };
      await assert.rejects(r.agent.startInstance(spec), (e: unknown) => {
        assert.ok(isFerryError(e, "FERRY_ERR_FEATURE"));
        assert.equal(e.details["feature"], `vfio-bind:${r.vfs[1]!}`);
        assert.match(e.message, /^feature vfio-bind:\S+: init failed: .*drivers_probe: cannot write "\S+": EIO/);
        return true;
      });
      assert.deepEqual(r.seam.log, [
        ...acquired(r, 0, MAC[0]),
        ...bind(r.vfs[1]!),
        `write bus/pci/devices/${r.vfs[1]!}/driver_override "\\n"`, `write bus/pci/drivers_probe "${r.vfs[1]!}"`,
        reset(r, 0),
      ]);
      assert.equal(await r.qemuSaw(), null, "QEMU never ran");
      assert.equal(r.seam.devices.get(r.vfs[1]!)?.driver, "ixgbevf");
      assert.deepEqual(r.agent.listLeases(), []);
      journalEmpty(r);
    } finally {
      await r.close();
    }
  });

  test("migration prepare on the destination: VF set up before the incoming QEMU runs; QEMU failing (a failed prepare): VF reset, migration lease gone", async () => {
    const r = await rig({ realVfs: { vlan: 100, spoofchk: true, trust: false } });
    try {
      const spec = { ...baseSpec, nics: [vfioNic("net0", MAC[0], "0000:5e:10.0", 1)] };
      const admitted = await r.agent.admitSpec(spec);
      await assert.rejects(prepare(r.agent.stepContext(), "m-prep", { spec: admitted, nics: [{ name: "net0", vf: r.vfs[0]! }], leaseTtlMs: 60_000 }, signal()), (e: unknown) => isFerryError(e, "FERRY_ERR_QEMU_START"));
      const acquire = [...bind(r.vfs[0]!), show(r), `${set(r, 0, MAC[0])} spoofchk on trust off`];
      assert.deepEqual(r.seam.log, [...acquire, reset(r, 0), `ip link set dev ${r.pfName} vf 0 spoofchk on`, `ip link set dev ${r.pfName} vf 0 trust off`]);
      assert.deepEqual((await r.qemuSaw())?.seam, acquire);
      assert.deepEqual(r.agent.listLeases(), []);
      journalEmpty(r);
    } finally {
      await r.close();
    }
  });

  test("migration prepare rolled back by a failure after the VFs were set up (lab fault port-profile-fail): VF reset before the lease goes", async () => {
    const r = await rig({ lab: true });
    try {
      r.agent.faults.arm("port-profile-fail", true);
      const spec = await r.agent.admitSpec({ ...baseSpec, nics: [vfioNic("net0", MAC[0], "0000:5e:10.0", 1)] });
      await assert.rejects(prepare(r.agent.stepContext(), "m-pp", { spec, nics: [{ name: "net0", vf: r.vfs[0]! }], leaseTtlMs: 60_000 }, signal()), (e: unknown) => isFerryError(e, "FERRY_ERR_FEATURE"));
      assert.deepEqual(r.seam.log, [...acquired(r, 0, MAC[0]), reset(r, 0)]);
      assert.equal(await r.qemuSaw(), null);
      assert.deepEqual(r.agent.listLeases(), []);
    } finally {
      await r.close();
    }
  });

  test("restore: VF set up before the restoring QEMU runs; QEMU failing: VF reset, lease gone", async () => {
    const r = await rig();
    try {
      const file = join(r.host.dir, "vm1.state");
      await writeFile(file, "saved state");
      const saved = await r.agent.admitSpec({ ...baseSpec, nics: [vfioNic("net0", MAC[0], "0000:5e:10.0", 1)] });
      await assert.rejects(restoreInstance(r.agent.stepContext(), file, saved, [{ name: "net0", vf: r.vfs[0]! }], { primaryBackMs: 1_000, timeoutMs: 5_000 }, signal()), (e: unknown) => isFerryError(e, "FERRY_ERR_QEMU_START"));
      assert.deepEqual(r.seam.log, [...acquired(r, 0, MAC[0]), reset(r, 0)]);
      assert.deepEqual((await r.qemuSaw())?.seam, acquired(r, 0, MAC[0]));
      assert.deepEqual(r.agent.listLeases(), []);
      journalEmpty(r);
    } finally {
      await r.close();
    }
  });

  test("abort on the destination (its QEMU already gone): the migration's VFs reset with the configured MAC, given back to ixgbevf, leases gone", async () => {
    const r = await rig({ realVfs: { vlan: 100, onRelease: { mac: "02:00:00:00:00:aa", restoreDriver: true } } });
    try {
      const holder: LeaseHolder = { kind: "migration", migrationId: "m-abort", vmUuid: VM, expiresAt: r.agent.now() + 60_000 };
      await leaseAndAcquire(r, holder, [0, 1]);
      const spec = await r.agent.admitSpec({ ...baseSpec, nics: [] });
      r.agent.records.put(DEST, "m-abort", { instanceId: "i-0000dead", uri: "tcp:127.0.0.1:1", vmUuid: VM, spec, planned: { net0: r.vfs[0]!, net1: r.vfs[1]! } } satisfies DestRecord);
      r.seam.log.length = 0;
      assert.deepEqual(await abortDestination(r.agent.stepContext(), "m-abort"), { aborted: false });
      const back = (vf: string): string[] => [`write bus/pci/devices/${vf}/driver_override "\\n"`, `write bus/pci/drivers/vfio-pci/unbind "${vf}"`, `write bus/pci/drivers_probe "${vf}"`];
      assert.deepEqual(r.seam.log, [reset(r, 1, "02:00:00:00:00:aa"), ...back(r.vfs[1]!), reset(r, 0, "02:00:00:00:00:aa"), ...back(r.vfs[0]!)]);
      assert.equal(r.seam.devices.get(r.vfs[0]!)?.driver, "ixgbevf");
      assert.deepEqual(r.agent.listLeases(), []);
      journalEmpty(r);
    } finally {
      await r.close();
    }
  });

  test("expired migration leases reclaimed by the agent's tick: VF reset first, then the lease goes; a live lease is left alone", async () => {
    const r = await rig();
    try {
      await leaseAndAcquire(r, { kind: "migration", migrationId: "m-old", vmUuid: VM, expiresAt: r.agent.now() - 1 }, [0]);
      await leaseAndAcquire(r, { kind: "migration", migrationId: "m-live", vmUuid: VM, expiresAt: r.agent.now() + 60_000 }, [1]);
      r.seam.log.length = 0;
      const leasedWhenReset: boolean[] = [];
      const pfRun = r.pf.run;
      r.pf.run = (file, args, o) => {
        if (args.includes("00:00:00:00:00:00")) leasedWhenReset.push(r.agent.leases.get(r.vfs[0]!) !== undefined);
        return pfRun(file, args, o);
      };
      await r.agent.tick();
      assert.deepEqual(r.seam.log, [reset(r, 0)]);
      assert.deepEqual(leasedWhenReset, [true], "the lease still held the VF while it was reset");
      assert.deepEqual(r.agent.listLeases().map((l) => l.vf), [r.vfs[1]!]);
    } finally {
      await r.close();
    }
  });

  test("the controller reports a migration ended (reconcile): its VFs reset, leases gone", async () => {
    const r = await rig();
    try {
      await leaseAndAcquire(r, { kind: "migration", migrationId: "m-ended", vmUuid: VM, expiresAt: r.agent.now() + 60_000 }, [0]);
      r.seam.log.length = 0;
      assert.deepEqual(r.agent.knownMigrations(), ["m-ended"]);
      await r.agent.reconcileEnded(["m-ended"]);
      assert.deepEqual(r.seam.log, [reset(r, 0)]);
      assert.deepEqual(r.agent.listLeases(), []);
      journalEmpty(r);
    } finally {
      await r.close();
    }
  });

  test("agent restarted: an instance whose QEMU died meanwhile has its VFs reset and leases released; a VF journaled with no lease (a crash between reset and release) is reset too", async () => {
    const r = await rig();
    try {
      const holder: LeaseHolder = { kind: "instance", vmUuid: VM, instanceId: "i-0000dead" };
      await leaseAndAcquire(r, holder, [0]);
      // the instance's runtime dir, its QEMU gone (pid 2^31-1 does not exist)
      const dir = instancePaths(r.host.config.runDir, VM, "i-0000dead").dir;
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "meta.json"), JSON.stringify({ instanceId: "i-0000dead", vmUuid: VM, vmName: "vm1", pid: 2 ** 31 - 1 }));
      // VF 1: set up, its lease gone (what a crash between the two leaves)
      await r.agent.vfLife.acquire([{ vf: r.vfs[1]!, mac: MAC[1] }], signal());
      r.seam.log.length = 0;
      const a = await r.reopen();
      assert.deepEqual(a.recovery.gone.map((g) => [g.instanceId, g.releasedVfs]), [["i-0000dead", [r.vfs[0]!]]]);
      assert.deepEqual(r.seam.log, [reset(r, 0), reset(r, 1)]);
      assert.deepEqual(a.listLeases(), []);
      journalEmpty(r);
    } finally {
      await r.close();
    }
  });

  test("a reset the PF refuses is logged, the lease still goes, the journal stays, and the next tick resets the VF", async () => {
    const r = await rig();
    try {
      await leaseAndAcquire(r, { kind: "migration", migrationId: "m-x", vmUuid: VM, expiresAt: r.agent.now() + 60_000 }, [0]);
      r.pf.refuse.push({ vf: 0, key: "vlan" });
      r.seam.log.length = 0;
      await r.agent.reconcileEnded(["m-x"]);
      assert.deepEqual(r.agent.listLeases(), []);
      assert.deepEqual(r.agent.records.list(VF_SETUP_NS).map((x) => x.key), [r.vfs[0]!]);
      r.pf.refuse.length = 0;
      await r.agent.tick();
      assert.deepEqual(r.seam.log, [reset(r, 0), reset(r, 0)]);
      journalEmpty(r);
      assert.deepEqual(r.pf.vfs[0], { mac: "00:00:00:00:00:00", vlan: 0, spoofchk: true, trust: false });
    } finally {
      await r.close();
    }
  });

  test("stand-in VFs (the lab's): no sysfs write and no ip command on any path; their MAC stays QEMU's emulated NIC's", async () => {
    const r = await rig({ standIns: true });
    try {
      const nic = { name: "net0", mode: "ephemeral", mac: MAC[0], guestPorts: { primary: 1 }, primary: { kind: "stand-in", model: "rtl8139", backend: { kind: "none" }, vf: r.vfs[0]! } };
      await assert.rejects(r.agent.startInstance({ ...baseSpec, nics: [nic] }), (e: unknown) => isFerryError(e, "FERRY_ERR_QEMU_START"));
      assert.ok((await r.qemuSaw())?.argv.some((a) => a.includes(`mac=${MAC[0]}`)), "the MAC went to QEMU's emulated NIC");
      await leaseAndAcquire(r, { kind: "migration", migrationId: "m-s", vmUuid: VM, expiresAt: r.agent.now() - 1 }, [1]);
      await r.agent.tick();
      await r.reopen();
      assert.deepEqual(r.seam.log, []);
      assert.deepEqual(r.agent.listLeases(), []);
    } finally {
      await r.close();
    }
  });
});
