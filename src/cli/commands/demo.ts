// `ferry demo`: the lab demo (3 hosts, real guest, failover + ephemeral NICs,
// a recovery). Without root or network namespaces it says so and runs what it
// can: one guest migrated between two local QEMU instances.
import { canRunLab, runLabDemo } from "../../lab/lab-demo.ts";
import { runLocalDemo } from "../../lab/local-demo.ts";
import { EXIT } from "../exit-codes.ts";

export async function run(argv: readonly string[]): Promise<number> {
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  try {
    const why = argv.includes("--local") ? "--local asked for" : await canRunLab();
    if (why === undefined) await runLabDemo(out);
    else {
      out(`the lab cannot run here (${why}); running the local demo instead`);
      await runLocalDemo(out);
    }
    return EXIT.ok;
  } catch (e) {
    process.stderr.write(`ferry demo: failed: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT.failed;
  }
}
