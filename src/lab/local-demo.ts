// The local demo: boot the test guest in one QEMU instance and live-migrate
// it into a second instance on this machine through the QEMU layer, printing
// what happens (boot time, migration phases, total time, downtime, the
// guest's heartbeat before and after). The multi-host lab builds on this.
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock } from "../core/clock.ts";
import { FerryError } from "../core/errors.ts";
import { pollUntil } from "../core/poll.ts";
import type { VmSpec } from "../model/vm.ts";
import { detectAccel } from "../qemu/accel.ts";
import { deviceIds } from "../qemu/argv.ts";
import { lastHeartbeat, readConsole, waitForConsole, waitForHeartbeat } from "../qemu/console.ts";
import type { Instance } from "../qemu/instance.ts";
import { startInstance } from "../qemu/instance.ts";
import { continueMigration, prepareIncoming, startMigration, waitMigration } from "../qemu/migration.ts";
import { listDeviceIds, queryStatus } from "../qmp/commands.ts";
import { guestCmdline } from "../model/guest.ts";
import { ensureGuestImage } from "./guest-image.ts";

export interface LocalDemoResult {
  bootMs: number;
  totalMs: number;
  qemuTotalMs: number;
  downtimeMs: number;
  transferredMiB: number;
  heartbeatBefore: number;
  heartbeatAfter: number;
  primaryBackMs: number | undefined;
}

export async function runLocalDemo(out: (line: string) => void = (l) => console.log(l)): Promise<LocalDemoResult> {
  const t0 = systemClock.monotonic();
  const at = (): string => `[${((systemClock.monotonic() - t0) / 1000).toFixed(1).padStart(5)}s]`;
  const say = (s: string): void => out(`${at()} ${s}`);
  out("Ferry demo: live migration of a real guest between two QEMU instances on this machine");
  const accel = await detectAccel();
  out(`  accelerator: ${accel.accel} (${accel.reason})`);
  const img = await ensureGuestImage({ log: (m) => out(`  guest image: ${m}`) });
  out(`  guest image: kernel ${img.kernelVersion}, ${img.dir}`);

  const mac = "52:54:00:d0:00:01";
  const spec: VmSpec = {
    uuid: randomUUID(),
    name: "demo",
    memoryMiB: 256,
    vcpus: 1,
    kernel: img.kernel,
    initrd: img.initrd,
    cmdline: guestCmdline("demo", [{ mac, cidr: "10.99.0.10/24" }]),
    nics: [
      {
        name: "net0", mode: "failover", mac, standby: { kind: "none" },
        // a stand-in VF: an emulated NIC with the VF's MAC (no SR-IOV hardware here)
        primary: { kind: "stand-in", model: "vmxnet3", backend: { kind: "none" }, vf: "0000:3b:10.0" },
        guestPorts: { standby: 1, primary: 2 },
      },
    ],
  };
  const runDir = await mkdtemp(join(tmpdir(), "ferry-demo-"));
  const started: Instance[] = [];
  try {
    say(`booting guest "${spec.name}" (${spec.memoryMiB} MiB, failover NIC: virtio standby + vmxnet3 stand-in VF)`);
    const src = await startInstance({ runDir, spec, accel: accel.accel });
    started.push(src);
    say(`  source instance ${src.id}, pid ${src.pid}, runtime dir ${src.paths.dir}`);
    const bootStart = systemClock.monotonic();
    await waitForConsole(src.paths.serialLog, /ferry-ready/, { timeoutMs: 90_000 });
    const bootMs = systemClock.monotonic() - bootStart;
    await waitForHeartbeat(src.paths.serialLog, 2, { timeoutMs: 10_000 });
    say(`guest ready in ${(bootMs / 1000).toFixed(1)} s; heartbeat ${lastHeartbeat(await readConsole(src.paths.serialLog))}`);

    const migStart = systemClock.monotonic();
    const dst = await startInstance({ runDir, spec, accel: accel.accel, incoming: true });
    started.push(dst);
    const uri = await prepareIncoming(dst.qmp, "tcp:127.0.0.1:0");
    say(`destination instance ${dst.id}, pid ${dst.pid}, waiting on ${uri} (-incoming defer)`);
    const phases: string[] = [];
    const off = src.qmp.onEvent((e) => {
      if (e.event === "MIGRATION") phases.push(String(e.data["status"]));
      if (e.event === "UNPLUG_PRIMARY") say(`  UNPLUG_PRIMARY: QEMU asks the guest to release ${String(e.data["device-id"])}`);
    });
    await startMigration(src.qmp, uri, { capabilities: { "pause-before-switchover": true }, parameters: { downtimeLimit: 300 } });
    say("migrating with pause-before-switchover …");
    const pre = await waitMigration(src.qmp, { until: ["pre-switchover"], timeoutMs: 120_000 });
    const destOk = (await queryStatus(dst.qmp)).status === "inmigrate" && (await dst.alive());
    say(`pre-switchover: source paused; destination check ${destOk ? "passed" : "FAILED"} (RAM sent so far ${mib(pre.ram?.transferred)} MiB)`);
    if (!destOk) throw new FerryError("FERRY_ERR_MIGRATION", "destination check failed at pre-switchover");
    const beforeHb = lastHeartbeat(await readConsole(src.paths.serialLog)) ?? 0;
    const done = await continueMigration(src.qmp, { timeoutMs: 60_000 });
    off();
    say(`completed: phases ${phases.join(" → ")}`);
    const afterHb = await waitForHeartbeat(dst.paths.serialLog, 0, { timeoutMs: 10_000 });
    const totalMs = systemClock.monotonic() - migStart;
    say(`heartbeat on the destination: ${afterHb} (last on the source ${beforeHb}): guest memory survived`);
    if (afterHb <= beforeHb) throw new FerryError("FERRY_ERR_MIGRATION", `heartbeat reset: ${beforeHb} → ${afterHb}`);
    const waitStart = systemClock.monotonic();
    const primaryBackMs = await pollUntil(systemClock, { timeoutMs: 15_000, everyMs: 50 }, async () =>
      (await listDeviceIds(dst.qmp)).includes(deviceIds("net0").primary) ? systemClock.monotonic() - waitStart : undefined,
    );
    say(primaryBackMs === undefined ? "failover primary did NOT come back on the destination within 15 s" : "failover primary (stand-in VF) is back on the destination");
    await src.stop();
    say(`source instance ${src.id} stopped`);
    const result: LocalDemoResult = {
      bootMs,
      totalMs,
      qemuTotalMs: done.totalTimeMs ?? 0,
      downtimeMs: done.downtimeMs ?? 0,
      transferredMiB: Number(mib(done.ram?.transferred)),
      heartbeatBefore: beforeHb,
      heartbeatAfter: afterHb,
      primaryBackMs,
    };
    out("");
    out("  boot     migration (end to end)   QEMU total   downtime   RAM sent   heartbeat");
    out(`  ${fmtS(bootMs).padEnd(8)} ${fmtS(totalMs).padEnd(24)} ${`${result.qemuTotalMs} ms`.padEnd(12)} ${`${result.downtimeMs} ms`.padEnd(10)} ${`${result.transferredMiB} MiB`.padEnd(10)} ${beforeHb} → ${afterHb}`);
    return result;
  } finally {
    for (const i of started) {
      i.kill();
      await i.waitExit(5_000);
      i.qmp.close();
    }
    await rm(runDir, { recursive: true, force: true });
  }
}

function mib(bytes: number | undefined): string {
  return ((bytes ?? 0) / 1024 / 1024).toFixed(1);
}

function fmtS(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

if (import.meta.main) {
  runLocalDemo().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
      process.exit(1);
    },
  );
}
