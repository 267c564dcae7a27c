// The front every `ferry` command shares: a strict parse of its options,
// -h/--help printing its usage (exit 0), then the command's body; and the
// list commands (`ferry vms|hosts|migrations|devices`), which differ only in
// what they fetch and how they print it.
import type { ParseArgsOptionsConfig } from "node:util";
import type { ControllerClient } from "../api/client.ts";
import { parse, rejectExtra } from "./args.ts";
import type { Parsed } from "./args.ts";
import { connect, printJson } from "./commands/connect.ts";
import type { CONNECT_OPTIONS } from "./commands/connect.ts";
import { EXIT } from "./exit-codes.ts";

/** A command module's entry point: argv after the command's name → exit code. */
export type Run = (argv: readonly string[]) => Promise<number>;

type HelpOption = { help: { type: "boolean"; short: "h" } };

/** `run` for command `name`: parse argv with `options` (which has -h/--help: prints `usage`, exit 0), then `body`. */
export function command<O extends ParseArgsOptionsConfig & HelpOption>(name: string, usage: string, options: O, body: (args: Parsed<O>) => Promise<number>): Run {
  return async (argv) => {
    const args = parse(name, argv, options);
    if (args.values.help) {
      process.stdout.write(usage);
      return EXIT.ok;
    }
    return body(args);
  };
}

type ListOptions = typeof CONNECT_OPTIONS & HelpOption & { json: { type: "boolean" } };

/** A list command: no arguments; fetch from the controller, then JSON (--json) or `render`'s text. */
export function listCommand<O extends ParseArgsOptionsConfig & ListOptions, T>(o: { name: string; usage: string; options: O; fetch: (client: ControllerClient, values: Parsed<O>["values"]) => Promise<T>; render: (x: T) => string }): Run {
  return command(o.name, o.usage, o.options, async ({ values, positionals }) => {
    rejectExtra(o.name, positionals);
    const flags = values as Parsed<ListOptions>["values"]; // O extends ListOptions: these keys are typed alike
    const x = await o.fetch(await connect(o.name, flags), values);
    if (flags.json) printJson(x);
    else process.stdout.write(o.render(x));
    return EXIT.ok;
  });
}
