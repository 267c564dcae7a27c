// `ferry vms [--json]`: every VM, where it runs, its NICs and their VFs.
import { parse, UsageError } from "../args.ts";
import { EXIT } from "../exit-codes.ts";
import { renderVms } from "../render/cluster.ts";
import { CONNECT_HELP, CONNECT_OPTIONS, connect, printJson } from "./connect.ts";

export const USAGE = `usage: ferry vms [--json]\n${CONNECT_HELP}\n`;
const OPTIONS = { ...CONNECT_OPTIONS, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export async function run(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse("vms", argv, OPTIONS);
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (positionals.length > 0) throw new UsageError("vms", `unexpected argument ${JSON.stringify(positionals[0])}`);
  const vms = await (await connect("vms", values)).vms();
  if (values.json) printJson(vms);
  else process.stdout.write(renderVms(vms));
  return EXIT.ok;
}
