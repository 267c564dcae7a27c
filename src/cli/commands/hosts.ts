// `ferry hosts [--json]`: the registered hosts, their state and last heartbeat.
import { systemClock } from "../../core/clock.ts";
import { parse, UsageError } from "../args.ts";
import { EXIT } from "../exit-codes.ts";
import { renderHosts } from "../render/cluster.ts";
import { CONNECT_HELP, CONNECT_OPTIONS, connect, printJson } from "./connect.ts";

export const USAGE = `usage: ferry hosts [--json]\n${CONNECT_HELP}\n`;
const OPTIONS = { ...CONNECT_OPTIONS, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export async function run(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse("hosts", argv, OPTIONS);
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (positionals.length > 0) throw new UsageError("hosts", `unexpected argument ${JSON.stringify(positionals[0])}`);
  const hosts = await (await connect("hosts", values)).hosts();
  if (values.json) printJson(hosts);
  else process.stdout.write(renderHosts(hosts, systemClock.now()));
  return EXIT.ok;
}
