// `ferry migrations [--json]`: every migration, oldest first.
import { parse, UsageError } from "../args.ts";
import { EXIT } from "../exit-codes.ts";
import { renderMigrations } from "../render/migration.ts";
import { CONNECT_HELP, CONNECT_OPTIONS, connect, printJson } from "./connect.ts";

export const USAGE = `usage: ferry migrations [--json]\n${CONNECT_HELP}\n`;
const OPTIONS = { ...CONNECT_OPTIONS, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export async function run(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse("migrations", argv, OPTIONS);
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (positionals.length > 0) throw new UsageError("migrations", `unexpected argument ${JSON.stringify(positionals[0])}`);
  const list = await (await connect("migrations", values)).migrations();
  if (values.json) printJson(list);
  else process.stdout.write(renderMigrations(list));
  return EXIT.ok;
}
