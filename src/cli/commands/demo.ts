// `ferry demo`: boots the test guest and live-migrates it between two QEMU
// instances on this machine, printing what happened (src/lab/local-demo.ts).
import { runLocalDemo } from "../../lab/local-demo.ts";
import { EXIT } from "../exit-codes.ts";

export async function run(_argv: readonly string[]): Promise<number> {
  try {
    await runLocalDemo((line) => process.stdout.write(`${line}\n`));
    return EXIT.ok;
  } catch (e) {
    process.stderr.write(`ferry demo: failed: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT.failed;
  }
}
