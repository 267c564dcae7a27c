// `ferry events [--follow] [--json]`: the controller's event stream (migration
// phases and outcomes, host up/down, VM lifecycle); --json prints one JSON object a line.
import { parse, UsageError } from "../args.ts";
import { EXIT } from "../exit-codes.ts";
import { eventLine } from "../render/cluster.ts";
import { CONNECT_HELP, CONNECT_OPTIONS, connect } from "./connect.ts";

export const USAGE = `usage: ferry events [--follow] [--json]\n${CONNECT_HELP}\n`;
const OPTIONS = { ...CONNECT_OPTIONS, follow: { type: "boolean", short: "f" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export async function run(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse("events", argv, OPTIONS);
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (positionals.length > 0) throw new UsageError("events", `unexpected argument ${JSON.stringify(positionals[0])}`);
  const client = await connect("events", values);
  const stop = new AbortController();
  const onSig = (): void => stop.abort();
  process.once("SIGINT", onSig);
  process.once("SIGTERM", onSig);
  try {
    await client.events((e) => process.stdout.write(values.json ? `${JSON.stringify(e)}\n` : `${eventLine(e)}\n`), { follow: values.follow ?? false, signal: stop.signal });
  } finally {
    process.off("SIGINT", onSig);
    process.off("SIGTERM", onSig);
  }
  return EXIT.ok;
}
