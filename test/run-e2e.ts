// `npm run test:e2e` (and npm test, with test/security too): the end-to-end
// and lab test files, two at a time, the longest first, then the two that
// compare timings with a same-run reference one at a time. Alone, one at a time, these files left a core idle 20–55 %
// of the time (vmstat): they wait for guests to boot, heartbeats, deadlines.
// The longest-first order (seconds measured in a CI run; a file not listed
// counts as DEFAULT_S) keeps a long file from starting last. ALONE: managed
// against raw QEMU failover (the worst gap of each, same run) and Ferry's gaps
// against an independent ping's run with nothing beside them, as they always
// have. It is node:test's run() and not `node --test <files>`, which sorts
// the files by name. The fault files (test:faults) are not here: the fault
// matrix's real-guest points keep their own pause budgets, set with the other
// fault files beside it, not these.
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
};

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
  // the directories to run, relative to the repository (default: test/e2e and test/lab)
  const dirs = process.argv.slice(2);
  const files = e2eTestFiles(root, dirs.length > 0 ? dirs : DIRS);
  await runFiles(files.filter((f) => !ALONE.has(f)).map((f) => join(root, f)), 2);
  await runFiles(files.filter((f) => ALONE.has(f)).map((f) => join(root, f)), 1);
}
