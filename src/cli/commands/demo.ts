// `ferry demo`: the lab demo (3 hosts, real guest, failover + ephemeral NICs,
// a recovery). Without root or network namespaces it says so and runs what it
// can: one guest migrated between two local QEMU instances.
import { toFerryError } from "../../core/errors.ts";
import { canRunLab, demoProblems, runLabDemo } from "../../lab/lab-demo.ts";
import { runLocalDemo } from "../../lab/local-demo.ts";
import { rejectExtra } from "../args.ts";
import { command } from "../command.ts";
import { EXIT, exitForError } from "../exit-codes.ts";

export const USAGE = `usage: ferry demo [--local]
  Boots the real test guest and live-migrates it, printing what happened:
  as root with network namespaces, a 3-host lab (lab 'demo': failover and
  ephemeral NICs, host1 → host2 → host3 → host1, then a recovery), torn down
  at the end; otherwise (or with --local) one guest migrated between two QEMU
  instances on this machine. The lab demo exits 1, naming each problem, when
  a migration ends otherwise than expected, the guest stops answering, or
  its memory is not what it wrote at boot.
  --local   run the local demo even where the lab could run
Needs the guest image and QEMU that 'npm run setup' installs; takes a few minutes under TCG.
`;
const OPTIONS = { local: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export const run = command("demo", USAGE, OPTIONS, async ({ values, positionals }) => {
  rejectExtra("demo", positionals);
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  try {
    const why = values.local ? "--local asked for" : await canRunLab();
    if (why === undefined) {
      const problems = demoProblems(await runLabDemo(out));
      if (problems.length > 0) {
        process.stderr.write(`ferry demo: failed: the demo did not show what it should:\n${problems.map((p) => `  ${p}\n`).join("")}the lab and its logs are gone: run the demo again, or keep a lab to look into with 'ferry lab up' and migrate its VM by hand ('ferry migrate'; each instance's serial.log shows the guest); docs/known-issues.md lists what is known\n`);
        return EXIT.failed;
      }
      out("demo ok: every migration ended as expected, the guest answered after each and its memory was what it wrote at boot");
    } else {
      out(`the lab cannot run here (${why}); running the local demo instead`);
      await runLocalDemo(out);
    }
    return EXIT.ok;
  } catch (e) {
    const err = toFerryError(e);
    process.stderr.write(`ferry demo: failed: ${err.code}: ${err.message}\n`);
    return exitForError(err);
  }
});
