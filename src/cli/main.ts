// The `ferry` command: dispatch from a table of subcommands. Each command
// module exports `run(argv): Promise<number>` (an exit code from
// exit-codes.ts) and is loaded only when invoked. Start-up loads nothing
// else: this file imports only small modules (the API client and its
// schemas come with the command that needs them), and the run enables
// Node's module compile cache first (compileCacheDir) so that the
// command's modules are not compiled anew on every run.
import { enableCompileCache } from "node:module";
import { homedir } from "node:os";
import { isAbsolute, join } from "node:path";
import { isFerryError, toFerryError } from "../core/errors.ts";
import { UsageError } from "./args.ts";
import { EXIT, EXIT_HELP, exitForError } from "./exit-codes.ts";

interface CommandModule {
  run(argv: readonly string[]): Promise<number>;
}

interface CommandEntry {
  summary: string;
  load: () => Promise<CommandModule>;
}

export const COMMANDS: Record<string, CommandEntry> = {
  agent: { summary: "run the host agent, or show its inventory (ferry agent inventory)", load: () => import("./commands/agent.ts") },
  controller: { summary: "run the controller (API, scheduler, coordinator): ferry controller --config controller.yaml", load: () => import("./commands/controller.ts") },
  controllers: { summary: "list the controllers, which one leads and its term", load: () => import("./commands/controllers.ts") },
  hosts: { summary: "list the hosts the controller knows (state, last heartbeat)", load: () => import("./commands/hosts.ts") },
  host: { summary: "drain or undrain a host (a drained host is never a migration destination), or check this host (ferry host check)", load: () => import("./commands/host.ts") },
  evacuate: { summary: "drain a host and live-migrate all its VMs elsewhere (--plan: only the plan)", load: () => import("./commands/evacuate.ts") },
  devices: { summary: "list the VFs of the live hosts with their networks and leases", load: () => import("./commands/devices.ts") },
  vms: { summary: "list the VMs, where they run and their NICs", load: () => import("./commands/vms.ts") },
  vm: { summary: "create, show, start, stop or delete a VM", load: () => import("./commands/vm.ts") },
  migrate: { summary: "live-migrate a VM (or --plan: where it could go, and why not elsewhere)", load: () => import("./commands/migrate.ts") },
  migrations: { summary: "list the migrations", load: () => import("./commands/migrations.ts") },
  migration: { summary: "show or cancel a migration", load: () => import("./commands/migration.ts") },
  events: { summary: "print the controller's events (--follow to keep reading)", load: () => import("./commands/events.ts") },
  lab: { summary: "several simulated hosts on this machine: ferry lab up|down|status|kill|start|fault", load: () => import("./commands/lab.ts") },
  ca: { summary: "a certificate authority for the APIs' mutual TLS: ferry ca init|issue", load: () => import("./commands/ca.ts") },
  demo: { summary: "boot the test guest and live-migrate it between two QEMU instances, showing what happened", load: () => import("./commands/demo.ts") },
};

export function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: ferry <command> [options]\n\ncommands:\n${lines.join("\n")}\n\nRun 'ferry <command> --help' for a command's options.\n${EXIT_HELP}\n`;
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
    // loaded here, not at start-up: `ferry --help` needs none of the API client (the module the command used, if any, is the same instance)
    const { explainFailure } = await import("./commands/connect.ts");
    const hint = explainFailure(err);
    process.stderr.write(`ferry: ${err.code}: ${err.message}\n${hint === undefined ? "" : `ferry: ${hint}\n`}`);
    if (!isFerryError(e)) process.stderr.write(`${e instanceof Error ? (e.stack ?? "") : ""}\n`);
    return exitForError(err);
  }
}

/**
 * A reader that stops early (`ferry events --json | head`) closes the pipe:
 * the next write to stdout fails with EPIPE. That is how such a pipeline
 * ends, not an error: exit 0, quietly. (stderr gone too: nothing to say.)
 */
export function quietOnBrokenPipe(): void {
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(EXIT.ok);
    throw e;
  });
  process.stderr.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
  });
}

/**
 * Where Node keeps the compiled modules between runs: per user, in
 * $XDG_CACHE_HOME (else ~/.cache)/ferry/node-compile-cache. NODE_COMPILE_CACHE
 * overrides it (Node reads it itself); NODE_DISABLE_COMPILE_CACHE=1 turns
 * the cache off. Node checks each entry against the source, so an edited
 * file is compiled anew; a directory that cannot be written only costs the
 * speed-up (enableCompileCache reports it and does not throw).
 */
export function compileCacheDir(env: NodeJS.ProcessEnv = process.env, home: () => string = homedir): string | undefined {
  if (env["NODE_COMPILE_CACHE"] || env["NODE_DISABLE_COMPILE_CACHE"]) return undefined;
  const xdg = env["XDG_CACHE_HOME"];
  const base = xdg !== undefined && isAbsolute(xdg) ? xdg : home() ? join(home(), ".cache") : undefined;
  return base === undefined ? undefined : join(base, "ferry", "node-compile-cache");
}

/** How long a stopped server (controller, agent) may take to exit on its own once its shutdown is done. */
export const EXIT_GRACE_MS = 2_000;

/**
 * A controller or agent whose shutdown is done (it logged "stopped") exits
 * within EXIT_GRACE_MS even if something it used still holds the event loop
 * (a socket, a timer): CI once saw a controller exit 18.8 s after SIGTERM
 * although it had given its lease back after 56 ms. What was still open goes
 * to stderr (the server's log), to find the holder.
 */
function exitAfterGrace(argv: readonly string[]): void {
  if (argv[0] !== "controller" && argv[0] !== "agent") return;
  setTimeout(() => {
    process.stderr.write(`ferry ${argv[0]}: stopped, but still held open ${EXIT_GRACE_MS} ms later by: ${process.getActiveResourcesInfo().filter((r) => r !== "Timeout").join(", ") || "timers"}; exiting\n`);
    process.exit();
  }, EXIT_GRACE_MS).unref();
}

if (import.meta.main) {
  const cacheDir = compileCacheDir();
  if (cacheDir !== undefined) enableCompileCache(cacheDir);
  quietOnBrokenPipe();
  const argv = process.argv.slice(2);
  process.exitCode = await main(argv);
  exitAfterGrace(argv);
}
