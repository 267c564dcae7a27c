// The `ferry` command: dispatch from a table of subcommands. Each command
// module exports `run(argv): Promise<number>` (an exit code from
// exit-codes.ts) and is loaded only when invoked.
import { isFerryError, toFerryError } from "../core/errors.ts";
import { UsageError } from "./args.ts";
import { EXIT } from "./exit-codes.ts";

interface CommandModule {
  run(argv: readonly string[]): Promise<number>;
}

interface CommandEntry {
  summary: string;
  load: () => Promise<CommandModule>;
}

export const COMMANDS: Record<string, CommandEntry> = {
  agent: { summary: "run the host agent, or show its inventory (ferry agent inventory)", load: () => import("./commands/agent.ts") },
  demo: { summary: "boot the test guest and live-migrate it between two QEMU instances, showing what happened", load: () => import("./commands/demo.ts") },
};

export function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: ferry <command> [options]\n\ncommands:\n${lines.join("\n")}\n\nRun 'ferry <command> --help' for a command's options.\nExit codes: 0 ok, 1 failed, 2 usage, 3 refused (nothing changed), 4 rolled back.\n`;
}

export async function main(argv: readonly string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === "--help" || cmd === "-h" || cmd === "help") {
      process.stdout.write(help());
      return EXIT.ok;
    }
    if (cmd === undefined) throw new UsageError("ferry", "missing command");
    if (cmd.startsWith("-")) throw new UsageError("ferry", `unknown option ${JSON.stringify(cmd)}`);
    const entry = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
    if (!entry) throw new UsageError("ferry", `unknown command ${JSON.stringify(cmd)}`);
    return await (await entry.load()).run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      const hint = e.command === "ferry" ? "ferry --help" : `ferry ${e.command} --help`;
      process.stderr.write(`ferry: ${e.message} (see '${hint}')\n`);
      return EXIT.usage;
    }
    const err = toFerryError(e);
    process.stderr.write(`ferry: ${err.code}: ${err.message}\n`);
    if (!isFerryError(e)) process.stderr.write(`${e instanceof Error ? (e.stack ?? "") : ""}\n`);
    return EXIT.failed;
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
