// `ferry events [--follow] [--json]`: the controller's event stream (migration
// phases and outcomes, host up/down, VM lifecycle); --json prints one JSON object a line.
import { rejectExtra } from "../args.ts";
import { command } from "../command.ts";
import { EXIT } from "../exit-codes.ts";
import { eventLine } from "../render/cluster.ts";
import { CONNECT_HELP, CONNECT_OPTIONS, connect } from "./connect.ts";

export const USAGE = `usage: ferry events [--follow] [--json]\n${CONNECT_HELP}\n`;
const OPTIONS = { ...CONNECT_OPTIONS, follow: { type: "boolean", short: "f" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export const run = command("events", USAGE, OPTIONS, async ({ values, positionals }) => {
  rejectExtra("events", positionals);
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
});
