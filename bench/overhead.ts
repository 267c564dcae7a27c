// Orchestration overhead: the same kind of guest migrated (a) by `ferry
// migrate` through the controller and two agents of a lab, (b) by the floor,
// a minimal raw-QMP sequence doing only what any migration needs: start the
// destination with -incoming defer, migrate-incoming, migrate, wait for
// completed, (the destination resumes by itself), quit the source, and (c) by
// libvirt's `virsh migrate --live` between two libvirt daemons on this
// machine (bench/lib/libvirt.ts). Two guests: RAM mostly zero pages, and
// 512 MiB of random data (the guest's ferry.fill, asked through the API).
// Interleaved rounds; medians and spread; Ferry ÷ floor, Ferry ÷ libvirt.
//   scripts/rt node bench/overhead.ts [--quick]    FERRY_BENCH_ROUNDS=N (default 10; --quick 3)
//   FERRY_BENCH_LIBVIRT=0 skips libvirt.
import { randomUUID } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { guestCmdline } from "../src/model/guest.ts";
import { guestImagePaths } from "../src/model/guest-image.ts";
import { labClient, labDown, labSpec, labUp } from "../src/lab/lab.ts";
import type { Phase } from "../src/migration/types.ts";
import { detectAccel } from "../src/qemu/accel.ts";
import { waitForConsole } from "../src/qemu/console.ts";
import type { Instance } from "../src/qemu/instance.ts";
import { startInstance } from "../src/qemu/instance.ts";
import { prepareIncoming, startMigration, waitMigration } from "../src/qemu/migration.ts";
import { quit } from "../src/qmp/commands.ts";
import { run } from "../src/core/run.ts";
import { follow } from "../src/lab/lab-demo.ts";
import type { LibvirtPair } from "./lib/libvirt.ts";
import { domainXml, libvirtMissing, startLibvirtPair, stopLibvirtPair } from "./lib/libvirt.ts";
import { benchRounds, machine, median, table, writeResult } from "./lib/report.ts";

const ROUNDS = benchRounds(10, 3);
// 512 MiB of random data needs a 1152 MiB guest: the guest's RAM disk holds at most half its RAM
const GUESTS = [
  { label: "256 MiB, mostly zero pages", memoryMiB: 256, fill: 0 },
  { label: "1152 MiB, 512 MiB random data", memoryMiB: 1152, fill: 512 },
];

/** The serial log of a lab VM's current instance (the guest prints ferry-ready there). */
async function labSerialLog(labDirPath: string, host: string, uuid: string): Promise<string> {
  const dir = join(labDirPath, host, "run", uuid);
  const inst = (await readdir(dir)).filter((d) => d.startsWith("i-"));
  if (inst.length !== 1) throw new Error(`expected one instance dir in ${dir}, found ${inst.join(", ") || "none"}`);
  return join(dir, inst[0]!, "serial.log");
}

async function main(): Promise<void> {
  process.env["FERRY_CONTEXT"] = join(tmpdir(), `ferry-bench-context-${process.pid}.json`);
  const { accel } = await detectAccel();
  const img = await guestImagePaths();
  await labDown("bench").catch(() => undefined);
  const state = await labUp(labSpec({ name: "bench", hosts: 2, configText: "networks: [physnet1]\nvfs: { physnet1: 4 }\n" }));
  const client = await labClient(state);
  const runDir = await mkdtemp(join(tmpdir(), "ferry-floor-"));
  const results: { guest: string; ferryMs: number[]; floorMs: number[]; libvirtMs: number[]; phases: Record<string, number[]> }[] = [];
  let libvirtNote = process.env["FERRY_BENCH_LIBVIRT"] === "0" ? "skipped (FERRY_BENCH_LIBVIRT=0)" : await libvirtMissing();
  let lv: LibvirtPair | undefined;
  if (libvirtNote === undefined) {
    try {
      lv = await startLibvirtPair(join(runDir, "libvirt"), join(runDir, "libvirtd.out"));
    } catch (e) {
      libvirtNote = `libvirt could not start: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
  if (libvirtNote !== undefined) console.log(`libvirt: ${libvirtNote}`);
  try {
    for (const g of GUESTS) {
      const name = `ov${g.memoryMiB}`;
      // Ferry's VM has no NIC, like the floor's: both move the same devices, and the difference is orchestration
      const vm = await client.createVm({ name, host: "host1", memoryMiB: g.memoryMiB, nics: [], ...(g.fill > 0 ? { guestFillMiB: g.fill } : {}) });
      const fill = g.fill > 0 ? { fillMiB: g.fill } : {};
      // the floor's VM: the same guest, started directly
      const spec = { uuid: randomUUID(), name: `floor${g.memoryMiB}`, memoryMiB: g.memoryMiB, vcpus: 1, kernel: img.kernel, initrd: img.initrd, cmdline: guestCmdline(`floor${g.memoryMiB}`, [], fill), nics: [] };
      let floorSrc: Instance = await startInstance({ runDir, spec, accel });
      // libvirt's VM: the same guest again, a transient domain on the first daemon
      const lvName = `lv${g.memoryMiB}`;
      const lvSerial = join(runDir, `${lvName}.serial.log`);
      if (lv) {
        const xml = join(runDir, `${lvName}.xml`);
        await writeFile(xml, domainXml({ name: lvName, uuid: randomUUID(), memoryMiB: g.memoryMiB, kernel: img.kernel, initrd: img.initrd, cmdline: guestCmdline(lvName, [], fill), serialLog: lvSerial }));
        await run("virsh", ["-c", lv.a.uri, "create", xml], { timeoutMs: 120_000 });
      }
      const ready = g.fill > 0 ? /ferry-filled/ : /ferry-ready/;
      await waitForConsole(floorSrc.paths.serialLog, ready, { timeoutMs: 600_000 });
      await waitForConsole(await labSerialLog(state.dir, "host1", vm.uuid), ready, { timeoutMs: 600_000 });
      if (lv) await waitForConsole(lvSerial, ready, { timeoutMs: 600_000 });
      const row = { guest: g.label, ferryMs: [] as number[], floorMs: [] as number[], libvirtMs: [] as number[], phases: {} as Record<string, number[]> };
      for (let i = 0; i < ROUNDS; i++) {
        // Ferry
        const vm = await client.vm(name);
        const to = vm.host === "host1" ? "host2" : "host1";
        const t0 = performance.now();
        const started = await client.migrate({ vm: name, to });
        if (started.kind !== "started") throw new Error("plan instead of a migration");
        const rec = await follow(client, started.migration.id, () => undefined, 20);
        row.ferryMs.push(performance.now() - t0);
        if (rec.outcome !== "succeeded") throw new Error(`ferry migration ${rec.id}: ${rec.outcome} ${rec.reason ?? ""}`);
        for (const [p, t] of Object.entries(rec.timings) as [Phase, { ms?: number } | undefined][]) if (t?.ms !== undefined) (row.phases[p] ??= []).push(t.ms);
        // floor
        const t1 = performance.now();
        const dst = await startInstance({ runDir, spec, accel, incoming: true });
        const uri = await prepareIncoming(dst.qmp, "tcp:127.0.0.1:0");
        await startMigration(floorSrc.qmp, uri);
        await waitMigration(floorSrc.qmp, { until: ["completed"], timeoutMs: 600_000, pollMs: 10 });
        await quit(floorSrc.qmp).catch(() => undefined);
        row.floorMs.push(performance.now() - t1);
        await floorSrc.waitExit(5_000);
        floorSrc.qmp.close();
        await floorSrc.remove();
        floorSrc = dst;
        // libvirt: client-driven live migration between the two daemons, migration data over loopback
        if (lv) {
          const [from, to] = i % 2 === 0 ? [lv.a, lv.b] : [lv.b, lv.a];
          const t2 = performance.now();
          await run("virsh", ["-c", from.uri, "migrate", "--live", lvName, to.uri, "--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1"], { timeoutMs: 600_000 });
          row.libvirtMs.push(performance.now() - t2);
        }
      }
      if (lv) {
        const on = ROUNDS % 2 === 0 ? lv.a : lv.b;
        await run("virsh", ["-c", on.uri, "destroy", lvName], { allowFailure: true, timeoutMs: 30_000 });
      }
      floorSrc.kill();
      await floorSrc.waitExit(5_000);
      floorSrc.qmp.close();
      await client.deleteVm(name);
      results.push(row);
    }
  } finally {
    await labDown("bench");
    if (lv) await stopLibvirtPair(lv);
    await rm(runDir, { recursive: true, force: true });
  }
  const f = (x: number): string => x.toFixed(0);
  const spread = (xs: number[]): string => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
  const lvCell = (r: (typeof results)[number], x: string): string => (r.libvirtMs.length > 0 ? x : "n/a");
  console.log(`Orchestration overhead (${accel}, ${ROUNDS} interleaved rounds each)\n`);
  console.log(table(["guest", "Ferry median ms", "Ferry min–max", "floor median ms", "floor min–max", "libvirt median ms", "libvirt min–max", "Ferry ÷ floor", "Ferry ÷ libvirt"], results.map((r) => [
    r.guest, f(median(r.ferryMs)), spread(r.ferryMs), f(median(r.floorMs)), spread(r.floorMs),
    lvCell(r, f(median(r.libvirtMs))), lvCell(r, r.libvirtMs.length > 0 ? spread(r.libvirtMs) : ""),
    (median(r.ferryMs) / median(r.floorMs)).toFixed(2), lvCell(r, (median(r.ferryMs) / median(r.libvirtMs)).toFixed(2)),
  ])));
  if (libvirtNote !== undefined) console.log(`libvirt not measured: ${libvirtNote}`);
  console.log("\nFerry per-phase medians (ms, from the journal):");
  console.log(table(["guest", ...Object.keys(results[0]?.phases ?? {})], results.map((r) => [r.guest, ...Object.values(r.phases).map((xs) => f(median(xs)))])));
  console.log(`\ntarget: Ferry ≤ 1.25 × floor — ${results.every((r) => median(r.ferryMs) <= 1.25 * median(r.floorMs)) ? "met" : "NOT met"}`);
  if (results.every((r) => r.libvirtMs.length > 0)) console.log(`target: Ferry ≤ 0.5 × libvirt — ${results.every((r) => median(r.ferryMs) <= 0.5 * median(r.libvirtMs)) ? "met" : "NOT met"}`);
  console.log(`wrote ${writeResult("overhead", { machine: machine(accel), rounds: ROUNDS, libvirt: libvirtNote ?? "measured", results })}`);
}

await main();
