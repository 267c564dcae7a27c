// `npm run test:slow`: the end-to-end, lab, fault and security tests in one
// `node --test` run, two files at a time, the longest first. Alone the
// end-to-end files leave a core idle ~40 % of the time (they wait for
// deadlines, heartbeats and guests) and the fault files keep both busy; run
// together the idle time of one is the other's. The longest-first order (the
// seconds below, measured in a CI run; a file not listed counts as
// DEFAULT_S) keeps one long file from starting last. The files that compare
// timings against a same-run reference with little margin (ALONE: managed
// against raw QEMU failover, Ferry's gaps against an independent ping's)
// run afterwards, one at a time, as they always have. It is node:test's
// run() and not `node --test <files>`, which sorts the files by name.
import { readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { run } from "node:test";
import { spec } from "node:test/reporters";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const DIRS = ["test/e2e", "test/lab", "test/faults", "test/security"];
const DEFAULT_S = 20;
const ALONE = new Set(["test/lab/raw-failover.test.ts", "test/lab/settle.test.ts"]);
const SECONDS: Record<string, number> = {
  "test/faults/matrix.test.ts": 455,
  "test/faults/ha.test.ts": 140,
  "test/lab/raw-failover.test.ts": 97,
  "test/faults/soak.test.ts": 80,
  "test/lab/lab-demo.test.ts": 48,
  "test/e2e/controller.test.ts": 47,
  "test/e2e/lab-vm-ops.test.ts": 42,
  "test/e2e/lab-apart-migration.test.ts": 38,
  "test/lab/settle.test.ts": 37,
  "test/e2e/evacuate.test.ts": 36,
  "test/e2e/lab-dead-peer.test.ts": 30,
  "test/faults/switches.test.ts": 28,
  "test/e2e/coordinator.test.ts": 26,
  "test/e2e/migration-live.test.ts": 25,
  "test/lab/lab-ha.test.ts": 22,
  "test/e2e/dashboard.test.ts": 20,
  "test/faults/stale.test.ts": 17,
  "test/e2e/migration-steps.test.ts": 17,
  "test/e2e/stale-operations.test.ts": 16,
  "test/e2e/lab-apart.test.ts": 15,
  "test/e2e/lab-fabric.test.ts": 11,
  "test/e2e/vm-create.test.ts": 9,
  "test/e2e/memcheck.test.ts": 8,
  "test/e2e/save-restore.test.ts": 7,
  "test/e2e/local-migration.test.ts": 7,
  "test/e2e/vf-lifecycle-qemu.test.ts": 7,
  "test/e2e/qemu.test.ts": 6,
  "test/e2e/migration-tls.test.ts": 2,
  "test/security/cluster.test.ts": 15,
  "test/security/inputs.test.ts": 6,
  "test/security/tls.test.ts": 3,
  "test/security/argv.test.ts": 1,
  "test/security/agent-paths.test.ts": 1,
};

/** The test files of `dirs` (relative to `base`; not the *.unit.test.ts ones, which test:unit runs), the longest first by `seconds`; ties by name. */
export function slowTestFiles(base: string, dirs: readonly string[] = DIRS, seconds: Record<string, number> = SECONDS): string[] {
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
  const files = slowTestFiles(root);
  await runFiles(files.filter((f) => !ALONE.has(f)).map((f) => join(root, f)), 2);
  await runFiles(files.filter((f) => ALONE.has(f)).map((f) => join(root, f)), 1);
}
