// A thin layer over node:util parseArgs: strict (unknown flags are usage
// errors), positionals allowed, and errors that name the command.
import { parseArgs } from "node:util";
import type { ParseArgsOptionsConfig } from "node:util";

/** A command-line mistake: printed with a hint, exit code 2. */
export class UsageError extends Error {
  readonly command: string;
  constructor(command: string, message: string) {
    super(message);
    this.name = "UsageError";
    this.command = command;
  }
}

export interface Parsed<O extends ParseArgsOptionsConfig> {
  values: { [K in keyof O]?: O[K]["type"] extends "boolean" ? boolean : string };
  positionals: string[];
}

export function parse<O extends ParseArgsOptionsConfig>(command: string, argv: readonly string[], options: O): Parsed<O> {
  try {
    const r = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
    return { values: r.values, positionals: r.positionals };
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] ?? e.message : String(e);
    throw new UsageError(command, msg.replace(/\. To specify a positional argument.*$/, ""));
  }
}

/** A required string option. */
export function required(command: string, value: string | undefined, flag: string): string {
  if (value === undefined || value === "") throw new UsageError(command, `missing ${flag}`);
  return value;
}

/** Arguments past those the command takes: a usage error naming the first. */
export function rejectExtra(command: string, extra: readonly string[]): void {
  if (extra.length > 0) throw new UsageError(command, `unexpected argument ${JSON.stringify(extra[0])}`);
}

/** A whole-number option from 1 to `max` (undefined when absent): a usage error names the flag, the value and the range. */
export function wholeNumber(command: string, flag: string, raw: string | undefined, max: number, unit: string): number | undefined {
  if (raw === undefined) return undefined;
  if (!/^[0-9]{1,9}$/.test(raw) || Number(raw) < 1 || Number(raw) > max) throw new UsageError(command, `${flag} ${JSON.stringify(raw)}: expected a whole number of ${unit} from 1 to ${max}`);
  return Number(raw);
}

/** An option that is one of `allowed` (undefined when absent): a usage error names the flag, the value and the choices. */
export function oneOf<T extends string>(command: string, flag: string, raw: string | undefined, allowed: readonly T[]): T | undefined {
  if (raw === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(raw)) throw new UsageError(command, `${flag} ${JSON.stringify(raw)}: expected ${allowed.join(", ")}`);
  return raw as T;
}
