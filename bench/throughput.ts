// Control-plane throughput: 8 small no-OS VMs (128 MiB, no NIC) on host1 of
// a 3-host lab, first migrated one at a time (the baseline), then all 8 at
// once by `ferry evacuate host1 --parallel 8 --max-bandwidth 256` (the
// scheduler spreads them over host2 and host3; the cap is split evenly over
// the migrations in flight). Measured: wall time, the controller process's
// CPU time (utime + stime from /proc/<pid>/stat) per migration, and the
// controller's SQLite writes per migration (journal rows, and record
// versions: every update of a migration record bumps it).
//   scripts/rt node bench/throughput.ts [--quick]      FERRY_BENCH_ROUNDS=N single migrations (default 4; --quick 2)
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { run } from "../src/core/run.ts";
import { follow } from "../src/lab/lab-demo.ts";
import { labClient, labDown, labSpec, labUp } from "../src/lab/lab.ts";
import { detectAccel } from "../src/qemu/accel.ts";
import { benchRounds, machine, median, table, writeResult } from "./lib/report.ts";

const VMS = 8;
const MEMORY_MIB = 128;
const CAP_MIBPS = 256;
const SINGLES = benchRounds(4, 2);

async function cpuMs(pid: number, tick: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / tick; // fields 14 and 15: utime, stime
}

function writesPerMigration(db: string, ids: readonly string[]): { journal: number[]; versions: number[] } {
  const d = new DatabaseSync(db, { readOnly: true });
  try {
    const journal = ids.map((id) => Number((d.prepare("SELECT COUNT(*) AS n FROM journal WHERE migration_id = ?").get(id) as { n: number }).n));
    const versions = ids.map((id) => Number((d.prepare("SELECT version FROM migrations WHERE id = ?").get(id) as { version: number } | undefined)?.version ?? 0));
    return { journal, versions };
  } finally {
    d.close();
  }
}

async function main(): Promise<void> {
  process.env["FERRY_CONTEXT"] = `/tmp/ferry-bench-throughput-context-${process.pid}.json`;
  const { accel } = await detectAccel();
  const tick = Number((await run("getconf", ["CLK_TCK"])).stdout.trim()) || 100;
  await labDown("bthru").catch(() => undefined);
  const state = await labUp(labSpec({ name: "bthru", hosts: 3, configText: "networks: [physnet1]\nvfs: { physnet1: 2 }\n" }));
  const cpid = state.controller.pid;
  const db = join(state.dir, "controller", "controller.db");
  try {
    const client = await labClient(state);
    for (let i = 0; i < VMS; i++) await client.createVm({ name: `t${i}`, host: "host1", memoryMiB: MEMORY_MIB, nics: [], noOs: true });
    // baseline: one migration at a time (t0 back and forth)
    const single: { ms: number; cpuMs: number; id: string; qemuMs: number }[] = [];
    for (let i = 0; i < SINGLES; i++) {
      const to = i % 2 === 0 ? "host2" : "host1";
      const c0 = await cpuMs(cpid, tick);
      const t0 = performance.now();
      const started = await client.migrate({ vm: "t0", to });
      if (started.kind !== "started") throw new Error("the controller answered with a plan");
      const r = await follow(client, started.migration.id, () => undefined, 20);
      if (r.outcome !== "succeeded") throw new Error(`single migration ${r.id}: ${r.outcome} ${r.reason ?? ""}`);
      single.push({ ms: performance.now() - t0, cpuMs: (await cpuMs(cpid, tick)) - c0, id: r.id, qemuMs: r.switchover?.totalMs ?? 0 });
    }
    // t0 is back on host1 when SINGLES is even; evacuate moves whatever runs there
    const onHost1 = (await client.vms()).filter((v) => v.host === "host1").length;
    const c0 = await cpuMs(cpid, tick);
    const t0 = performance.now();
    let ev = await client.evacuate("host1", { parallel: VMS, maxBandwidthMiBps: CAP_MIBPS });
    const until = Date.now() + 900_000;
    while (ev.state !== "done") {
      if (Date.now() > until) throw new Error(`evacuation ${ev.id} did not finish within 900 s`);
      await new Promise((r) => setTimeout(r, 20));
      ev = await client.evacuation(ev.id);
    }
    const concurrentMs = performance.now() - t0;
    const concurrentCpu = (await cpuMs(cpid, tick)) - c0;
    const migrations = await client.migrations();
    const evIds = migrations.filter((m) => m.createdAt >= Date.now() - concurrentMs - 1_000 && !single.some((s) => s.id === m.id)).map((m) => m.id);
    const moved = ev.counts.moved;
    const singleW = writesPerMigration(db, single.map((s) => s.id));
    const evW = writesPerMigration(db, evIds);
    const f = (x: number): string => x.toFixed(0);
    const perMigrationCap = ev.perMigrationBytes === null ? null : ev.perMigrationBytes / 2 ** 20;
    // the most the cap can explain: every VM's whole RAM sent at its share of the cap (no-OS RAM is zero pages: far less is sent)
    const capBoundMs = perMigrationCap === null ? 0 : (MEMORY_MIB / perMigrationCap) * 1000;
    const t1 = median(single.map((s) => s.ms));
    console.log(`Control-plane throughput (${accel}; ${VMS} no-OS VMs of ${MEMORY_MIB} MiB; evacuation --parallel ${VMS} --max-bandwidth ${CAP_MIBPS} MiB/s)\n`);
    console.log(table(["run", "migrations", "wall ms", "controller CPU ms / migration", "journal rows / migration", "record writes / migration"], [
      [`one at a time (median of ${SINGLES})`, SINGLES, f(t1), f(median(single.map((s) => s.cpuMs))), f(median(singleW.journal)), f(median(singleW.versions))],
      [`${onHost1} at once (evacuation)`, moved, f(concurrentMs), moved > 0 ? f(concurrentCpu / moved) : "-", f(median(evW.journal)), f(median(evW.versions))],
    ]));
    console.log(`\n${moved} concurrent migrations took ${(concurrentMs / t1).toFixed(2)} × one migration (${f(concurrentMs)} vs ${f(t1)} ms); one after another would take ≈ ${f(moved * t1)} ms`);
    console.log(`bandwidth cap: ${perMigrationCap === null ? "none" : `${perMigrationCap.toFixed(0)} MiB/s per migration`}; at most ${f(capBoundMs)} ms of each migration is explained by it (whole RAM at that rate)`);
    console.log(`target: concurrent wall time ≤ one migration + what the cap explains (${f(t1 + capBoundMs)} ms) — ${concurrentMs <= t1 + capBoundMs ? "met" : "NOT met"}`);
    console.log(`wrote ${writeResult("throughput", { machine: machine(accel), vms: VMS, memoryMiB: MEMORY_MIB, capMiBps: CAP_MIBPS, single, singleWrites: singleW, concurrent: { ms: concurrentMs, cpuMs: concurrentCpu, moved, counts: ev.counts, perMigrationBytes: ev.perMigrationBytes, writes: evW } })}`);
  } finally {
    await labDown("bthru");
  }
}

await main();
