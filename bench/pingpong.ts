// Ping-pong migrations (issue 20 finding 5): one real guest with a failover
// NIC (stand-in VF: emulated vmxnet3 with the VF's MAC) and an emulated NIC,
// migrated host1 ↔ host2 in a 2-host lab, each migration followed until
// Ferry's watch has seen every NIC answer steadily past the end. Beside
// Ferry's probe (busybox ping every 10 ms, stamped on read) an independent
// iputils `ping -D` (kernel receive times, ≈ 16 ms apart) runs per NIC for
// the whole run (bench/lib/pinger.ts). Per NIC mode: longest gap and time
// until stable, Ferry's and the independent ping's, p50/p99/max; and the
// longest gap the ping saw up to the migration's end only (what a probe that
// stops at the end, as Ferry's did before, can see at most). Before each
// migration it asks for the plan (`ferry migrate --plan`) and prints the
// predicted RAM time and downtime against QEMU's actual total time and
// downtime, with the bandwidth the prediction used and where it came from.
//   scripts/rt node bench/pingpong.ts [--quick]      FERRY_BENCH_ROUNDS=N (default 20; --quick 5)
import { FerryError } from "../src/core/errors.ts";
import { reachable } from "../src/lab/lab-demo.ts";
import { labClient, labDown, labSpec, labUp } from "../src/lab/lab.ts";
import type { MigrationRecord } from "../src/migration/types.ts";
import { detectAccel } from "../src/qemu/accel.ts";
import { longestGap, longestOutage, outAfter, stableSince, startPinger } from "./lib/pinger.ts";
import type { Pinger } from "./lib/pinger.ts";
import { benchRounds, machine, table, writeResult } from "./lib/report.ts";

const ROUNDS = benchRounds(20, 5);
const NAME = "bpingpong";

interface Prediction {
  migration: number;
  route: string;
  dirtyMiBps: number | null;
  bandwidthMiBps: number;
  bandwidthSource: string;
  converges: boolean;
  predictedMs: number | null;
  predictedDowntimeMs: number | null;
  /** QEMU's total time and downtime (the record's switchover). */
  actualMs: number | null;
  actualDowntimeMs: number | null;
  /** Ferry's whole migration, created → ended. */
  endToEndMs: number;
  planMs: number;
}

interface Sample {
  migration: number;
  route: string;
  nic: string;
  mode: string;
  outcome: string;
  endMs: number;
  ferry: { longestGapMs: number; untilStableMs: number | null; afterEndMs: number | null; outAfterEndMs: number | null; lost: number; probes: number };
  ping: { longestGapMs: number; longestOutageMs: number; untilEndGapMs: number; untilStableMs: number; afterEndMs: number; outAfterEndMs: number };
}

/** Nearest-rank percentile. */
function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

async function main(): Promise<void> {
  const { accel } = await detectAccel();
  process.env["FERRY_CONTEXT"] = `/tmp/ferry-bench-pingpong-context-${process.pid}.json`;
  await labDown(NAME).catch(() => undefined);
  const state = await labUp(labSpec({ name: NAME, hosts: 2, configText: "networks: [physnet1, physnet2]\nvfs: { physnet1: 2, physnet2: 2 }\n" }), (l) => console.log(`  ${l}`));
  const samples: Sample[] = [];
  const predictions: Prediction[] = [];
  const pingers = new Map<string, Pinger>();
  try {
    const client = await labClient(state);
    const vm = await client.createVm({ name: "pp", host: "host1", memoryMiB: 256, nics: [{ network: "physnet1", mode: "failover", policy: "mandatory" }, { network: "physnet2", mode: "emulated", policy: "optional" }] });
    for (const n of vm.nics) {
      const ip = n.address.split("/")[0]!;
      if (!(await reachable(state.netns, ip, 120_000))) throw new FerryError("FERRY_ERR_TIMEOUT", `the guest never answered on ${n.name} (${ip})`);
      pingers.set(n.name, startPinger({ netns: state.netns, target: ip }));
    }
    for (let i = 1; i <= ROUNDS; i++) {
      const current = await client.vm("pp");
      const to = current.host === "host1" ? "host2" : "host1";
      const planT0 = performance.now();
      const planned = await client.migrate({ vm: "pp", to, plan: true });
      const planMs = Math.round(performance.now() - planT0);
      const pred = planned.kind === "plan" ? planned.plan.predictions?.find((x) => x.host === to) : undefined;
      const dirty = planned.kind === "plan" && planned.plan.dirtyRate?.measured === true ? planned.plan.dirtyRate.MiBps : null;
      const started = await client.migrate({ vm: "pp", to });
      if (started.kind !== "started") throw new FerryError("FERRY_ERR_INTERNAL", "the controller answered with a plan");
      let r: MigrationRecord & { settling?: boolean; measuring?: boolean };
      for (const until = Date.now() + 300_000; ; await new Promise((x) => setTimeout(x, 150))) {
        if (Date.now() > until) throw new FerryError("FERRY_ERR_TIMEOUT", `migration ${i} not measured within 300 s`);
        r = await client.migration(started.migration.id, { timeoutMs: 10_000 });
        if (r.phase === "done" && r.settling !== true && r.measuring !== true) break;
      }
      for (const n of vm.nics) {
        const c = r.connectivity?.[n.name];
        if (!c || c.endMs === undefined || c.watchedMs === undefined || c.outageMs === undefined) continue;
        const from = r.createdAt;
        const end = from + c.endMs;
        const stop = from + c.watchedMs;
        const times = pingers.get(n.name)!.times();
        const pingStable = stableSince(times, from, stop, c.outageMs) - from;
        const ferryStable = c.untilStableMs ?? null;
        samples.push({
          migration: i, route: `${current.host}→${to}`, nic: n.name, mode: n.mode, outcome: r.outcome ?? "?", endMs: c.endMs,
          ferry: { longestGapMs: c.longestGapMs, untilStableMs: ferryStable, afterEndMs: ferryStable === null ? null : Math.max(0, ferryStable - c.endMs), outAfterEndMs: c.outAfterEndMs ?? null, lost: c.lost, probes: c.probes },
          ping: {
            longestGapMs: Math.round(longestGap(times, from, stop)),
            longestOutageMs: Math.round(longestOutage(times, from, stop, { minGapMs: 40, minRunMs: 50 })),
            untilEndGapMs: Math.round(longestGap(times, from, end)),
            untilStableMs: Math.round(pingStable),
            afterEndMs: Math.max(0, Math.round(pingStable - c.endMs)),
            outAfterEndMs: Math.round(outAfter(times, from, end, stop, c.outageMs)),
          },
        });
      }
      if (pred) {
        predictions.push({
          migration: i, route: `${current.host}→${to}`, dirtyMiBps: dirty, bandwidthMiBps: Math.round(pred.bandwidth.bytesPerSec / 2 ** 20), bandwidthSource: pred.bandwidth.source, converges: pred.converges,
          predictedMs: pred.durationMs ?? null, predictedDowntimeMs: pred.downtimeMs ?? null,
          actualMs: r.switchover?.totalMs ?? null, actualDowntimeMs: r.switchover?.downtimeMs ?? null, endToEndMs: r.updatedAt - r.createdAt, planMs,
        });
      }
      const here = samples.filter((s) => s.migration === i);
      console.log(`  #${i} ${current.host}→${to}: ${r.outcome}, end ${here[0]?.endMs ?? "?"} ms; ${here.map((s) => `${s.nic} gap ${s.ferry.longestGapMs}/${s.ping.longestGapMs} ms, stable ${s.ferry.untilStableMs ?? "never"}/${s.ping.untilStableMs} ms`).join("; ")} (Ferry/ping)`);
    }
  } finally {
    for (const p of pingers.values()) await p.stop();
    await labDown(NAME);
  }

  const ok = samples.filter((s) => s.outcome === "succeeded");
  const rows: (string | number)[][] = [];
  const summary: Record<string, Record<string, { p50: number; p99: number; max: number }>> = {};
  const fig = (xs: number[]): { p50: number; p99: number; max: number } => ({ p50: pct(xs, 50), p99: pct(xs, 99), max: Math.max(...xs) });
  for (const mode of ["failover", "emulated"]) {
    const s = ok.filter((x) => x.mode === mode);
    if (s.length === 0) continue;
    const never = s.filter((x) => x.ferry.untilStableMs === null).length;
    const figures: Record<string, number[]> = {
      "longest gap, Ferry": s.map((x) => x.ferry.longestGapMs),
      "longest gap, ping": s.map((x) => x.ping.longestGapMs),
      "longest gap, ping, lone replies ignored": s.map((x) => x.ping.longestOutageMs),
      "longest gap, ping, up to the end only": s.map((x) => x.ping.untilEndGapMs),
      "until stable, Ferry": s.flatMap((x) => (x.ferry.untilStableMs === null ? [] : [x.ferry.untilStableMs])),
      "until stable, ping": s.map((x) => x.ping.untilStableMs),
      "stable after the end, Ferry": s.flatMap((x) => (x.ferry.afterEndMs === null ? [] : [x.ferry.afterEndMs])),
      "stable after the end, ping": s.map((x) => x.ping.afterEndMs),
      "out after the end, Ferry": s.flatMap((x) => (x.ferry.outAfterEndMs === null ? [] : [x.ferry.outAfterEndMs])),
      "out after the end, ping": s.map((x) => x.ping.outAfterEndMs),
      "migration (start → end)": s.map((x) => x.endMs),
    };
    summary[mode] = {};
    for (const [k, xs] of Object.entries(figures)) {
      if (xs.length === 0) continue;
      const f = fig(xs);
      summary[mode][k] = f;
      rows.push([mode, k, s.length, f.p50, f.p99, f.max]);
    }
    if (never > 0) rows.push([mode, "not stable within the deadline (Ferry)", never, "-", "-", "-"]);
  }
  const diffs = ok.map((x) => Math.abs(x.ferry.longestGapMs - x.ping.longestGapMs));
  const stableDiffs = ok.flatMap((x) => (x.ferry.untilStableMs === null ? [] : [Math.abs(x.ferry.untilStableMs - x.ping.untilStableMs)]));
  console.log(`\nPing-pong migrations (${accel}; ${ok.length / 2} of ${ROUNDS} succeeded; ms; Ferry's probe every 10 ms, independent iputils ping ≈ 16 ms)\n`);
  console.log(table(["NIC", "figure", "n", "p50", "p99", "max"], rows));
  console.log(`\n|Ferry − ping|: longest gap p50 ${pct(diffs, 50)} max ${Math.max(...diffs)} ms; time until stable p50 ${pct(stableDiffs, 50)} max ${Math.max(...stableDiffs)} ms`);
  const n = (x: number | null): string | number => (x === null ? "-" : x);
  console.log("\nPredicted (ferry migrate --plan, just before) against actual (QEMU's total time and downtime; Ferry's end to end)\n");
  console.log(table(["#", "route", "dirty MiB/s", "bandwidth", "predicted RAM ms", "actual QEMU ms", "predicted downtime ms", "actual downtime ms", "end to end ms", "plan took ms"],
    predictions.map((p) => [p.migration, p.route, n(p.dirtyMiBps), `${p.bandwidthMiBps} MiB/s (${p.bandwidthSource})`, p.converges ? n(p.predictedMs) : "no convergence", n(p.actualMs), n(p.predictedDowntimeMs), n(p.actualDowntimeMs), p.endToEndMs, p.planMs])));
  const ratio = predictions.flatMap((p) => (p.predictedMs !== null && p.actualMs !== null && p.actualMs > 0 ? [p.predictedMs / p.actualMs] : []));
  if (ratio.length > 0) console.log(`\npredicted ÷ actual QEMU time: p50 ${pct(ratio, 50).toFixed(2)}, min ${Math.min(...ratio).toFixed(2)}, max ${Math.max(...ratio).toFixed(2)}`);
  console.log(`wrote ${writeResult("pingpong", { machine: machine(accel), rounds: ROUNDS, summary, diffs: { longestGap: fig(diffs), untilStable: fig(stableDiffs) }, samples, predictions })}`);
  if (ok.length / 2 < ROUNDS) process.exitCode = 1;
}

await main();
