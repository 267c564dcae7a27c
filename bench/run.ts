// `npm run bench`: every benchmark, one after another, each bounded; each
// prints its table and writes JSON under bench/results/. `--quick` (or
// FERRY_BENCH_ROUNDS=N) shortens the rounds; `--only a,b` runs some of them.
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes("--quick");
// bounds for the full run on a quiet 2-core TCG machine (≈ 3× what each took there)
const benches: { file: string; timeoutMs: number }[] = [
  { file: "placement.ts", timeoutMs: 15 * 60_000 },
  { file: "scale.ts", timeoutMs: 10 * 60_000 },
  { file: "local-migration.ts", timeoutMs: 20 * 60_000 },
  { file: "overhead.ts", timeoutMs: 30 * 60_000 },
  { file: "connectivity.ts", timeoutMs: 20 * 60_000 },
  { file: "pingpong.ts", timeoutMs: 20 * 60_000 },
  { file: "failover-gap.ts", timeoutMs: 25 * 60_000 },
  { file: "memory-hops.ts", timeoutMs: 30 * 60_000 },
  { file: "tls-cost.ts", timeoutMs: 20 * 60_000 },
  { file: "throughput.ts", timeoutMs: 10 * 60_000 },
  { file: "cli-latency.ts", timeoutMs: 5 * 60_000 },
  { file: "takeover.ts", timeoutMs: 10 * 60_000 },
  { file: "store-cost.ts", timeoutMs: 10 * 60_000 },
  { file: "convergence.ts", timeoutMs: 30 * 60_000 },
];
const onlyArg = process.argv.indexOf("--only");
const only = onlyArg >= 0 ? (process.argv[onlyArg + 1] ?? "").split(",").map((x) => x.replace(/\.ts$/, "")) : null;
let failed = 0;
for (const b of benches.filter((x) => only === null || only.includes(x.file.replace(/\.ts$/, "")))) {
  console.log(`\n=== ${b.file} ===\n`);
  const r = spawnSync(process.execPath, [join(here, b.file), ...(quick ? ["--quick"] : [])], { stdio: "inherit", timeout: b.timeoutMs });
  if (r.status !== 0) {
    failed++;
    console.error(`${b.file}: ${r.signal ? `stopped (${r.signal}) at its ${b.timeoutMs / 60_000} min bound` : `exit ${r.status}`}`);
  }
}
process.exit(failed > 0 ? 1 : 0);
