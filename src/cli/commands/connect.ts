// How a CLI command finds the controller: flags (--controller URL
// --token-file F), else the environment (FERRY_CONTROLLER, FERRY_TOKEN_FILE),
// else a context file ($FERRY_CONTEXT, default ~/.config/ferry/context.json,
// written by `ferry lab`): { "controller": "http://127.0.0.1:7600", "tokenFile": "/path/token" }.
// Each setting is taken from the first source that has it.
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { isAbsolute, join, dirname, resolve } from "node:path";
import { ControllerClient } from "../../api/client.ts";
import { FerryError } from "../../core/errors.ts";
import { UsageError } from "../args.ts";

export const CONNECT_OPTIONS = {
  controller: { type: "string" },
  "token-file": { type: "string" },
} as const;

export const CONNECT_HELP = `connection (first found wins): --controller URL --token-file FILE; FERRY_CONTROLLER, FERRY_TOKEN_FILE;
  the context file $FERRY_CONTEXT or ~/.config/ferry/context.json ({"controller": URL, "tokenFile": FILE})`;

export interface Connection {
  controller: string;
  tokenFile: string;
}

interface ContextFile {
  controller?: string;
  tokenFile?: string;
}

async function readContext(env: NodeJS.ProcessEnv): Promise<{ file: string; ctx: ContextFile } | undefined> {
  const explicit = env["FERRY_CONTEXT"];
  const file = explicit !== undefined && explicit !== "" ? resolve(explicit) : join(homedir(), ".config", "ferry", "context.json");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if (explicit) throw new FerryError("FERRY_ERR_CONFIG", `${file} (FERRY_CONTEXT): cannot read: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    return undefined;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new FerryError("FERRY_ERR_CONFIG", `${file}: not JSON: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new FerryError("FERRY_ERR_CONFIG", `${file}: must be a JSON object`);
  const o = raw as Record<string, unknown>;
  const ctx: ContextFile = {};
  for (const k of ["controller", "tokenFile"] as const) {
    const x = o[k];
    if (x === undefined) continue;
    if (typeof x !== "string" || x === "") throw new FerryError("FERRY_ERR_CONFIG", `${file}: ${k} must be a non-empty string (got ${JSON.stringify(x)})`);
    ctx[k] = k === "tokenFile" && !isAbsolute(x) ? resolve(dirname(file), x) : x;
  }
  return { file, ctx };
}

export async function resolveConnection(command: string, flags: { controller?: string | undefined; "token-file"?: string | undefined }, env: NodeJS.ProcessEnv = process.env): Promise<Connection> {
  let controller = flags.controller ?? (env["FERRY_CONTROLLER"] || undefined);
  let tokenFile = flags["token-file"] ?? (env["FERRY_TOKEN_FILE"] || undefined);
  if (controller === undefined || tokenFile === undefined) {
    const c = await readContext(env);
    controller ??= c?.ctx.controller;
    tokenFile ??= c?.ctx.tokenFile;
  }
  if (controller === undefined) throw new UsageError(command, "no controller address: give --controller URL, set FERRY_CONTROLLER, or write a context file");
  if (!/^https?:\/\//.test(controller)) throw new UsageError(command, `--controller: not an http(s) URL: ${JSON.stringify(controller)}`);
  if (tokenFile === undefined) throw new UsageError(command, "no token file: give --token-file FILE, set FERRY_TOKEN_FILE, or write a context file");
  return { controller, tokenFile };
}

export async function connect(command: string, flags: { controller?: string | undefined; "token-file"?: string | undefined }): Promise<ControllerClient> {
  const c = await resolveConnection(command, flags);
  let token: string;
  try {
    token = (await readFile(c.tokenFile, "utf8")).trim();
  } catch (e) {
    throw new FerryError("FERRY_ERR_CONFIG", `${c.tokenFile}: cannot read the controller token: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  return new ControllerClient({ baseUrl: c.controller, token });
}

/** Pull every `--name VALUE` / `--name=VALUE` out of argv (repeatable flags), leaving the rest for parse(). */
export function takeRepeated(argv: readonly string[], name: string): { values: string[]; rest: string[] } {
  const values: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === name) {
      const v = argv[i + 1];
      if (v === undefined) throw new UsageError("vm", `${name} needs a value`);
      values.push(v);
      i++;
    } else if (a.startsWith(`${name}=`)) values.push(a.slice(name.length + 1));
    else rest.push(a);
  }
  return { values, rest };
}

export function printJson(x: unknown): void {
  process.stdout.write(`${JSON.stringify(x, null, 2)}\n`);
}
