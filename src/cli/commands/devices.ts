// `ferry devices [--host H] [--network N] [--json]`: VFs of the live hosts, with their leases.
import { parse, UsageError } from "../args.ts";
import { EXIT } from "../exit-codes.ts";
import { renderDevices } from "../render/cluster.ts";
import { CONNECT_HELP, CONNECT_OPTIONS, connect, printJson } from "./connect.ts";

export const USAGE = `usage: ferry devices [--host H] [--network N] [--json]\n${CONNECT_HELP}\n`;
const OPTIONS = { ...CONNECT_OPTIONS, host: { type: "string" }, network: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export async function run(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse("devices", argv, OPTIONS);
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (positionals.length > 0) throw new UsageError("devices", `unexpected argument ${JSON.stringify(positionals[0])}`);
  const rows = await (await connect("devices", values)).devices({
    ...(values.host === undefined ? {} : { host: values.host }),
    ...(values.network === undefined ? {} : { network: values.network }),
  });
  if (values.json) printJson(rows);
  else process.stdout.write(renderDevices(rows));
  return EXIT.ok;
}
