// How fast the CLI answers: the wall time of `bin/ferry <read command>`
// against a running, idle controller (two hosts, no VMs), median of N runs
// after two warm-up runs (which fill Node's module compile cache), and of
// `ferry --help`; `hosts` once more with the compile cache off, to show what
// it is worth. Target: read commands ≤ 200 ms on an idle machine (issue 16
// item 7); the machine's load average is recorded beside the numbers.
//   scripts/rt node bench/cli-latency.ts [--quick] [--bin PATH]...
// --bin: the ferry to time (default this checkout's bin/ferry); given more
// than once (e.g. another checkout's and this one's, for a before/after),
// their runs alternate, so that a shared machine's load falls on both alike.
import { execFile } from "node:child_process";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { liveCluster } from "../src/api/testing.ts";
import { benchRounds, machine, median, table, writeResult } from "./lib/report.ts";

const TARGET_MS = 200;
const runs = benchRounds(15, 5);
const bins = process.argv.flatMap((a, i) => (a === "--bin" ? [process.argv[i + 1] ?? ""] : []));
if (bins.some((b) => b === "" || b.startsWith("--"))) throw new Error("--bin needs a path to a ferry executable");
if (bins.length === 0) bins.push(fileURLToPath(new URL("../bin/ferry", import.meta.url)));

/** One run's wall time in ms; async so that the controller in this process keeps answering. */
function once(bin: string, argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    execFile(bin, argv, { env, timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`ferry ${argv.join(" ")} failed: ${err.message}\n${stderr}`));
      else resolve(performance.now() - t0);
    });
  });
}

interface Stats {
  medianMs: number;
  minMs: number;
  maxMs: number;
}

/** Per bin, in the order given: warm-up runs, then runs alternating between the bins. */
async function measure(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<Stats[]> {
  for (let i = 0; i < 2; i++) for (const b of bins) await once(b, argv, env);
  const xs: number[][] = bins.map(() => []);
  for (let i = 0; i < runs; i++) for (const [k, b] of bins.entries()) xs[k]!.push(await once(b, argv, env));
  return xs.map((x) => ({ medianMs: median(x), minMs: Math.min(...x), maxMs: Math.max(...x) }));
}

const cluster = await liveCluster([
  { name: "bench-a", network: "physnet1", numVfs: 4 },
  { name: "bench-b", network: "physnet1", numVfs: 4 },
]);
const loadBefore = loadavg()[0]!;
const rows: ({ command: string; bin: string; withinTarget: boolean | null } & Stats)[] = [];
try {
  const cases: { label: string; argv: string[]; env: NodeJS.ProcessEnv; target: boolean }[] = [
    { label: "ferry --help", argv: ["--help"], env: cluster.env, target: false },
    ...["hosts", "vms", "migrations", "events"].map((c) => ({ label: `ferry ${c}`, argv: [c], env: cluster.env, target: true })),
    { label: "ferry hosts (compile cache off)", argv: ["hosts"], env: { ...cluster.env, NODE_DISABLE_COMPILE_CACHE: "1" }, target: false },
  ];
  for (const c of cases) {
    for (const [k, m] of (await measure(c.argv, c.env)).entries()) rows.push({ command: c.label, bin: bins[k]!, ...m, withinTarget: c.target ? m.medianMs <= TARGET_MS : null });
  }
} finally {
  await cluster.close();
}
const loadAfter = loadavg()[0]!;
const ms = (x: number): string => x.toFixed(0);
console.log(table(["command", ...(bins.length > 1 ? ["bin"] : []), "median ms", "min ms", "max ms", `≤ ${TARGET_MS} ms`], rows.map((r) => [r.command, ...(bins.length > 1 ? [r.bin] : []), ms(r.medianMs), ms(r.minMs), ms(r.maxMs), r.withinTarget === null ? "-" : r.withinTarget ? "yes" : "no"])));
console.log(`\n${runs} runs each after 2 warm-up runs; load average (1 min) ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after: on a busy machine the numbers are higher than idle`);
const file = writeResult("cli-latency", { machine: machine("n/a"), bins, runs, targetMs: TARGET_MS, loadAverage1m: { before: loadBefore, after: loadAfter }, rows });
console.log(`wrote ${file}`);
