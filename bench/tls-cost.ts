// The cost of TLS on the migration stream (issue 14 item 2): two labs of two
// apart hosts each, one with TLS on the migration network (the default) and
// one plain (tls: false: the agents' migration.tls is false too), a 1 GiB
// guest with 448 MiB of random data (the most guestFillMiB allows for 1 GiB)
// in each, migrated back and forth, TLS and plain interleaved round by round.
// Reports end to end (request → done), the perform phase (the RAM stream
// until pre-switchover) and the stream's throughput (filled RAM ÷ perform),
// medians, and the TLS ÷ plain ratios. JSON in bench/results/tls-cost.json.
//   scripts/rt node bench/tls-cost.ts [--quick]      FERRY_BENCH_ROUNDS=N (default 8; --quick 2)
import { follow } from "../src/lab/lab-demo.ts";
import { labClient, labDown, labSpec, labUp } from "../src/lab/lab.ts";
import type { MigrationRecord } from "../src/migration/types.ts";
import { detectAccel } from "../src/qemu/accel.ts";
import { benchRounds, machine, median, table, writeResult } from "./lib/report.ts";

const ROUNDS = benchRounds(8, 2);
const FILL_MIB = 448;

interface Sample { mode: "tls" | "plain"; round: number; outcome: string; endToEndMs: number; performMs: number; downtimeMs: number | null; mibPerS: number }

const phaseMs = (r: MigrationRecord, p: "perform"): number => {
  const t = r.timings[p];
  return t && t.endedAt !== undefined && t.startedAt !== undefined ? t.endedAt - t.startedAt : NaN;
};

async function main(): Promise<void> {
  const { accel } = await detectAccel();
  process.env["FERRY_CONTEXT"] = `/tmp/ferry-bench-tls-context-${process.pid}.json`;
  const labs = { tls: "btlson", plain: "btlsoff" } as const;
  for (const n of Object.values(labs)) await labDown(n).catch(() => undefined);
  const cfg = "networks: [physnet1]\nvfs: { physnet1: 2 }\n";
  const states = {
    tls: await labUp(labSpec({ name: labs.tls, hosts: 2, configText: cfg, tls: true }), (l) => console.log(`  tls: ${l}`)),
    plain: await labUp(labSpec({ name: labs.plain, hosts: 2, configText: cfg, tls: false }), (l) => console.log(`  plain: ${l}`)),
  };
  const samples: Sample[] = [];
  try {
    const clients = { tls: await labClient(states.tls), plain: await labClient(states.plain) };
    for (const mode of ["tls", "plain"] as const) {
      await clients[mode].createVm({ name: "big", host: "host1", memoryMiB: 1024, guestFillMiB: FILL_MIB, nics: [{ network: "physnet1", mode: "failover", policy: "mandatory" }] });
    }
    for (let round = 1; round <= ROUNDS; round++) {
      const order: ("tls" | "plain")[] = round % 2 === 1 ? ["tls", "plain"] : ["plain", "tls"];
      for (const mode of order) {
        const c = clients[mode];
        const vm = await c.vm("big");
        const to = vm.host === "host1" ? "host2" : "host1";
        const t0 = performance.now();
        const started = await c.migrate({ vm: "big", to });
        if (started.kind !== "started") throw new Error("the controller answered with a plan");
        const r = await follow(c, started.migration.id);
        const endToEndMs = Math.round(performance.now() - t0);
        const performMs = phaseMs(r, "perform");
        const s: Sample = { mode, round, outcome: r.outcome ?? "?", endToEndMs, performMs, downtimeMs: r.switchover?.downtimeMs ?? null, mibPerS: Math.round(FILL_MIB / (performMs / 1000)) };
        samples.push(s);
        console.log(`  #${round} ${mode}: ${s.outcome}, end to end ${endToEndMs} ms, perform ${performMs} ms (${s.mibPerS} MiB/s of filled RAM), downtime ${s.downtimeMs ?? "-"} ms`);
      }
    }
  } finally {
    for (const n of Object.values(labs)) await labDown(n).catch(() => undefined);
  }
  const ok = (m: "tls" | "plain") => samples.filter((s) => s.mode === m && s.outcome === "succeeded");
  const med = (m: "tls" | "plain", k: "endToEndMs" | "performMs" | "mibPerS") => median(ok(m).map((s) => s[k]));
  const rows = (["tls", "plain"] as const).map((m) => [m, ok(m).length, med(m, "endToEndMs"), med(m, "performMs"), med(m, "mibPerS")]);
  console.log(`\nTLS on the migration stream vs plain TCP (${accel}; 1 GiB guest, ${FILL_MIB} MiB random; medians of succeeded migrations)\n`);
  console.log(table(["stream", "migrations", "end to end ms", "perform ms", "MiB/s"], rows));
  const ratio = { endToEnd: med("tls", "endToEndMs") / med("plain", "endToEndMs"), perform: med("tls", "performMs") / med("plain", "performMs"), throughput: med("tls", "mibPerS") / med("plain", "mibPerS") };
  console.log(`\nTLS ÷ plain: end to end ${ratio.endToEnd.toFixed(2)}, perform ${ratio.perform.toFixed(2)}, throughput ${ratio.throughput.toFixed(2)}`);
  console.log(`wrote ${writeResult("tls-cost", { machine: machine(accel), rounds: ROUNDS, fillMiB: FILL_MIB, samples, ratio })}`);
}

await main();
