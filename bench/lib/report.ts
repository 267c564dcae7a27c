// Shared bench output: a plain-text table on stdout and JSON under bench/results/.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "results");

export { median } from "../../src/core/stats.ts";

export function table(headers: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = [headers, ...rows].map((r) => r.map(String));
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: readonly string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(cells[0]!), line(widths.map((w) => "-".repeat(w))), ...cells.slice(1).map(line)].join("\n");
}

export function machine(accel: string): Record<string, unknown> {
  return { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "unknown", accel };
}

export function writeResult(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(data, null, 2)}\n`);
  return file;
}

/** Rounds per benchmark: FERRY_BENCH_ROUNDS when set, else `full` (or `quick` with --quick). */
export function benchRounds(full: number, quick: number): number {
  const env = process.env["FERRY_BENCH_ROUNDS"];
  if (env !== undefined && env !== "") {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new Error(`FERRY_BENCH_ROUNDS=${env}: expected a whole number from 1 to 1000`);
    return n;
  }
  return process.argv.includes("--quick") ? quick : full;
}
