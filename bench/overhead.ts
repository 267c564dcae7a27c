// Orchestration overhead: the same kind of guest migrated (a) by `ferry
// migrate` through the controller and two agents of a lab, and (b) by the
// floor, a minimal raw-QMP sequence doing only what any migration needs:
// start the destination with -incoming defer, migrate-incoming, migrate, wait
// for completed, (the destination resumes by itself), quit the source.
// Interleaved rounds; medians and spread; Ferry ÷ floor.
//   scripts/rt node bench/overhead.ts [--quick]
// (c) libvirt's `virsh migrate --live` is not measured yet (see docs/benchmarks.md).
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ControllerClient } from "../src/api/client.ts";
import { guestCmdline, guestImagePaths } from "../src/lab/guest-image.ts";
import { labDown, labSpec, labUp } from "../src/lab/lab.ts";
import type { MigrationRecord, Phase } from "../src/migration/types.ts";
import { detectAccel } from "../src/qemu/accel.ts";
import { waitForConsole } from "../src/qemu/console.ts";
import type { Instance } from "../src/qemu/instance.ts";
import { startInstance } from "../src/qemu/instance.ts";
import { prepareIncoming, startMigration, waitMigration } from "../src/qemu/migration.ts";
import { quit } from "../src/qmp/commands.ts";
import { machine, median, table, writeResult } from "./lib/report.ts";

const quick = process.argv.includes("--quick");
const ROUNDS = quick ? 3 : 10;
// The guest with ≥ 500 MiB of random data is not measured yet: VMs created through the controller
// cannot ask for the guest's ferry.fill (see docs/benchmarks.md).
const GUESTS = [{ label: "256 MiB, mostly zero pages", memoryMiB: 256, fill: 0 }];

async function follow(client: ControllerClient, id: string): Promise<MigrationRecord> {
  for (;;) {
    const r = (await client.migration(id, { timeoutMs: 10_000 })) as MigrationRecord & { settling?: boolean };
    if (r.phase === "done" && r.settling !== true) return r;
    await new Promise((x) => setTimeout(x, 20));
  }
}

async function main(): Promise<void> {
  process.env["FERRY_CONTEXT"] = join(tmpdir(), `ferry-bench-context-${process.pid}.json`);
  const { accel } = await detectAccel();
  const img = await guestImagePaths();
  await labDown("bench").catch(() => undefined);
  const state = await labUp(labSpec({ name: "bench", hosts: 2, configText: "networks: [physnet1]\nvfs: { physnet1: 4 }\n" }));
  const client = new ControllerClient({ baseUrl: state.controller.url, token: (await readFile(state.controllerTokenFile, "utf8")).trim() });
  const runDir = await mkdtemp(join(tmpdir(), "ferry-floor-"));
  const results: { guest: string; ferryMs: number[]; floorMs: number[]; phases: Record<string, number[]> }[] = [];
  try {
    for (const g of GUESTS) {
      const name = `ov${g.memoryMiB}`;
      // Ferry's VM has no NIC, like the floor's: both move the same devices, and the difference is orchestration
      await client.createVm({ name, host: "host1", memoryMiB: g.memoryMiB, nics: [] });
      // the floor's VM: the same guest, started directly
      const spec = { uuid: randomUUID(), name: `floor${g.memoryMiB}`, memoryMiB: g.memoryMiB, vcpus: 1, kernel: img.kernel, initrd: img.initrd, cmdline: guestCmdline(`floor${g.memoryMiB}`, [], { fillMiB: g.fill }), nics: [] };
      let floorSrc: Instance = await startInstance({ runDir, spec, accel });
      await waitForConsole(floorSrc.paths.serialLog, /ferry-ready/, { timeoutMs: 600_000 });
      await new Promise((r) => setTimeout(r, 3_000)); // the Ferry guest boots meanwhile
      const row = { guest: g.label, ferryMs: [] as number[], floorMs: [] as number[], phases: {} as Record<string, number[]> };
      for (let i = 0; i < ROUNDS; i++) {
        // Ferry
        const vm = await client.vm(name);
        const to = vm.host === "host1" ? "host2" : "host1";
        const t0 = performance.now();
        const started = await client.migrate({ vm: name, to });
        if (started.kind !== "started") throw new Error("plan instead of a migration");
        const rec = await follow(client, started.migration.id);
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
      }
      floorSrc.kill();
      await floorSrc.waitExit(5_000);
      floorSrc.qmp.close();
      await client.deleteVm(name);
      results.push(row);
    }
  } finally {
    await labDown("bench");
    await rm(runDir, { recursive: true, force: true });
  }
  const f = (x: number): string => x.toFixed(0);
  const spread = (xs: number[]): string => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
  console.log(`Orchestration overhead (${accel}, ${ROUNDS} interleaved rounds each)\n`);
  console.log(table(["guest", "Ferry median ms", "Ferry min–max", "floor median ms", "floor min–max", "Ferry ÷ floor"], results.map((r) => [r.guest, f(median(r.ferryMs)), spread(r.ferryMs), f(median(r.floorMs)), spread(r.floorMs), (median(r.ferryMs) / median(r.floorMs)).toFixed(2)])));
  console.log("\nFerry per-phase medians (ms, from the journal):");
  console.log(table(["guest", ...Object.keys(results[0]?.phases ?? {})], results.map((r) => [r.guest, ...Object.values(r.phases).map((xs) => f(median(xs)))])));
  console.log(`\ntarget: Ferry ≤ 1.25 × floor — ${results.every((r) => median(r.ferryMs) <= 1.25 * median(r.floorMs)) ? "met" : "NOT met"}`);
  console.log(`wrote ${writeResult("overhead", { machine: machine(accel), rounds: ROUNDS, results })}`);
}

await main();
