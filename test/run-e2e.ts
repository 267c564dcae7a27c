// `npm run test:e2e` (and npm test, with test/security too): the end-to-end
// and lab test files, two at a time, the longest first, then the two that
// compare timings with a same-run reference one at a time. Alone, one at a time, these files left a core idle 20–55 %
// of the time (vmstat): they wait for guests to boot, heartbeats, deadlines.
// The longest-first order (seconds measured in a CI run; a file not listed
// counts as DEFAULT_S) keeps a long file from starting last. ALONE: managed
// against raw QEMU failover (the worst gap of each, same run) and Ferry's gaps
// against an independent ping's run with nothing beside them, as they always
// have. It is node:test's run() and not `node --test <files>`, which sorts
// the files by name. The fault files run in npm test's last phase
// (--fault-phase): the matrix in one lane, the other fault files and then a
// few light files of these (BESIDE_MATRIX) in the other; heavier e2e files
// beside the matrix failed its real-guest points' pause budgets.
import { readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { run } from "node:test";
import { spec } from "node:test/reporters";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const DIRS = ["test/e2e", "test/lab"];
const DEFAULT_S = 20;
const ALONE = new Set(["test/lab/raw-failover.test.ts", "test/lab/settle.test.ts"]);
/** Seconds each file took in the CI copy of 44c8dce (one at a time); lab-holder measured alone. */
const SECONDS: Record<string, number> = {
  "test/lab/raw-failover.test.ts": 96,
  "test/e2e/lab-vm-ops.test.ts": 50,
  "test/lab/lab-demo.test.ts": 47,
  "test/e2e/controller.test.ts": 43,
  "test/e2e/lab-apart-migration.test.ts": 39,
  "test/e2e/evacuate.test.ts": 34,
  "test/lab/settle.test.ts": 33,
  "test/e2e/lab-dead-peer.test.ts": 29,
  "test/lab/lab-ha.test.ts": 25,
  "test/e2e/coordinator.test.ts": 25,
  "test/e2e/migration-live.test.ts": 23,
  "test/e2e/dashboard.test.ts": 20,
  "test/e2e/stale-operations.test.ts": 16,
  "test/e2e/migration-steps.test.ts": 16,
  "test/e2e/lab-fabric.test.ts": 13,
  "test/e2e/lab-apart.test.ts": 12,
  "test/e2e/vm-create.test.ts": 8,
  "test/e2e/save-restore.test.ts": 7,
  "test/e2e/qemu.test.ts": 6,
  "test/e2e/memcheck.test.ts": 6,
  "test/e2e/vf-lifecycle-qemu.test.ts": 6,
  "test/e2e/local-migration.test.ts": 6,
  "test/e2e/migration-tls.test.ts": 2,
  "test/e2e/lab-holder.test.ts": 9,
  "test/security/cluster.test.ts": 19,
  "test/security/agent-paths.test.ts": 3,
  "test/security/argv.test.ts": 2,
  "test/security/inputs.test.ts": 2,
  "test/security/tls.test.ts": 2,
  // the fault files, CI copy of 9c553ea (the matrix beside the others)
  "test/faults/matrix.test.ts": 464,
  "test/faults/ha.test.ts": 138,
  "test/faults/soak.test.ts": 79,
  "test/faults/switches.test.ts": 58,
  "test/faults/stale.test.ts": 19,
};

/**
 * Light files (no real guest: a few agents and controllers, no-OS QEMUs)
 * that npm test runs in test:faults' second lane, beside the fault matrix,
 * after the other fault files: alone the matrix kept one core busy while the
 * other lane idled its last ~170 s.
 */
export const BESIDE_MATRIX: ReadonlySet<string> = new Set([
  "test/e2e/migration-live.test.ts",
  "test/security/cluster.test.ts",
  "test/e2e/lab-holder.test.ts",
  "test/e2e/vm-create.test.ts",
  "test/e2e/vf-lifecycle-qemu.test.ts",
  "test/security/agent-paths.test.ts",
  "test/e2e/migration-tls.test.ts",
  "test/security/argv.test.ts",
  "test/security/inputs.test.ts",
  "test/security/tls.test.ts",
]);
const MATRIX = "test/faults/matrix.test.ts";

/**
 * npm test's fault phase: the fault matrix in one lane from the start; the
 * other fault files, then the BESIDE_MATRIX files, one after the other in the
 * second lane (each list the longest first).
 */
export function faultPhaseFiles(base: string, seconds: Record<string, number> = SECONDS): string[] {
  const faults = e2eTestFiles(base, ["test/faults"], seconds).filter((f) => f !== MATRIX);
  const beside = e2eTestFiles(base, [...new Set([...BESIDE_MATRIX].map((f) => dirname(f)))], seconds).filter((f) => BESIDE_MATRIX.has(f));
  return [MATRIX, ...faults, ...beside];
}

/** The test files of `dirs` (relative to `base`), the longest first by `seconds`; ties by name. */
export function e2eTestFiles(base: string, dirs: readonly string[] = DIRS, seconds: Record<string, number> = SECONDS): string[] {
  const files = dirs.flatMap((d) => readdirSync(join(base, d)).filter((f) => f.endsWith(".test.ts") && !f.endsWith(".unit.test.ts")).map((f) => relative(base, join(base, d, f))));
  const weight = (f: string): number => seconds[f] ?? DEFAULT_S;
  return files.sort((a, b) => weight(b) - weight(a) || a.localeCompare(b));
}

/** Run `files` (absolute), `concurrency` at a time, with the spec reporter to stdout; a failure sets the exit code. */
async function runFiles(files: readonly string[], concurrency: number): Promise<void> {
  const stream = run({ files: [...files], concurrency });
  stream.on("test:fail", () => {
    process.exitCode = 1;
  });
  for await (const chunk of stream.compose(spec)) process.stdout.write(chunk as string);
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  if (args[0] === "--fault-phase") {
    // npm test's last phase (the BESIDE_MATRIX files left out of its e2e phase run here)
    await runFiles(faultPhaseFiles(root).map((f) => join(root, f)), 2);
  } else {
    // [--leave-beside-matrix] DIR… (relative to the repository; default: test/e2e and test/lab)
    const leave = args[0] === "--leave-beside-matrix";
    const dirs = leave ? args.slice(1) : args;
    const files = e2eTestFiles(root, dirs.length > 0 ? dirs : DIRS).filter((f) => !(leave && BESIDE_MATRIX.has(f)));
    await runFiles(files.filter((f) => !ALONE.has(f)).map((f) => join(root, f)), 2);
    await runFiles(files.filter((f) => ALONE.has(f)).map((f) => join(root, f)), 1);
  }
}
