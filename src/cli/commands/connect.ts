// How a CLI command finds the controller: flags (--controller URL
// --token-file F), else the environment (FERRY_CONTROLLER, FERRY_TOKEN_FILE),
// else a context file ($FERRY_CONTEXT, default ~/.config/ferry/context.json,
// written by `ferry lab`): { "controller": "http://127.0.0.1:7600", "tokenFile": "/path/token" }.
// Each setting is taken from the first source that has it. Mutual TLS (an
// https:// controller that demands a client certificate): --tls-cert F
// --tls-key F --tls-ca F, FERRY_TLS_CERT/FERRY_TLS_KEY/FERRY_TLS_CA, or
// "tls": { "cert", "key", "ca" } in the context file — all three or none.
// Several controllers (etcd): the context file's "controllers" lists every
// controller's URL; a request goes to the next when one cannot be connected
// to (core/http/failover.ts), so the CLI works on after a controller dies.
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { isAbsolute, join, dirname, resolve } from "node:path";
import { ControllerClient } from "../../api/client.ts";
import { FerryError } from "../../core/errors.ts";
import { loadTls } from "../../core/tls.ts";
import type { TlsFiles } from "../../core/tls.ts";
import { UsageError } from "../args.ts";

export const CONNECT_OPTIONS = {
  controller: { type: "string" },
  "token-file": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-ca": { type: "string" },
} as const;

type ConnectFlags = { controller?: string | undefined; "token-file"?: string | undefined; "tls-cert"?: string | undefined; "tls-key"?: string | undefined; "tls-ca"?: string | undefined };

export const CONNECT_HELP = `connection (first found wins): --controller URL[,URL…] --token-file FILE; FERRY_CONTROLLER, FERRY_TOKEN_FILE
  (several controllers on etcd: the first is asked first, the next when one cannot be connected to);
  the context file $FERRY_CONTEXT or ~/.config/ferry/context.json ({"controller": URL, "tokenFile": FILE})
  mutual TLS: --tls-cert FILE --tls-key FILE --tls-ca FILE; FERRY_TLS_CERT, FERRY_TLS_KEY, FERRY_TLS_CA; "tls": {cert, key, ca}
  in the context file (used with the context's controller only)`;

export interface Connection {
  controller: string;
  tokenFile: string;
  tls: TlsFiles | null;
  /** Where each setting came from ("--controller", "FERRY_CONTROLLER", "the context file X"), for messages. */
  from: { controller: string; tokenFile: string };
  /** The lab the context file was written for, if the connection came from it. */
  lab?: string;
  /** The other controllers of the cluster (the context file's "controllers"), tried in order when one cannot be connected to. */
  alternates?: string[];
}

interface ContextFile {
  controller?: string;
  tokenFile?: string;
  tls?: Partial<TlsFiles>;
  lab?: string;
  controllers?: string[];
}

async function readContext(env: NodeJS.ProcessEnv): Promise<{ file: string; ctx: ContextFile } | undefined> {
  const explicit = env["FERRY_CONTEXT"];
  const file = explicit !== undefined && explicit !== "" ? resolve(explicit) : join(homedir(), ".config", "ferry", "context.json");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if (explicit) throw new FerryError("FERRY_ERR_CONFIG", `${file} (FERRY_CONTEXT): cannot read: ${e instanceof Error ? e.message : String(e)}; point FERRY_CONTEXT at a context file ('ferry lab up' writes one) or unset it`, { cause: e });
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
  if (typeof o["lab"] === "string") ctx.lab = o["lab"];
  for (const k of ["controller", "tokenFile"] as const) {
    const x = o[k];
    if (x === undefined) continue;
    if (typeof x !== "string" || x === "") throw new FerryError("FERRY_ERR_CONFIG", `${file}: ${k} must be a non-empty string (got ${JSON.stringify(x)})`);
    ctx[k] = k === "tokenFile" && !isAbsolute(x) ? resolve(dirname(file), x) : x;
  }
  const cs = o["controllers"];
  if (cs !== undefined) {
    if (!Array.isArray(cs) || cs.length === 0 || !cs.every((x): x is string => typeof x === "string" && isHttpUrl(x))) {
      throw new FerryError("FERRY_ERR_CONFIG", `${file}: controllers must be a non-empty list of http(s) URLs (got ${JSON.stringify(cs)}); 'ferry lab up' writes it for a lab with several controllers`);
    }
    ctx.controllers = cs;
  }
  const t = o["tls"];
  if (t !== undefined) {
    if (typeof t !== "object" || t === null || Array.isArray(t)) throw new FerryError("FERRY_ERR_CONFIG", `${file}: tls must be an object { cert, key, ca }`);
    const tls: Partial<TlsFiles> = {};
    for (const [k, x] of Object.entries(t as Record<string, unknown>)) {
      if (k !== "cert" && k !== "key" && k !== "ca") throw new FerryError("FERRY_ERR_CONFIG", `${file}: tls.${k}: unknown field (allowed: cert, key, ca)`);
      if (typeof x !== "string" || x === "" || x.includes("\0")) throw new FerryError("FERRY_ERR_CONFIG", `${file}: tls.${k} must be a file name (got ${JSON.stringify(x)})`);
      tls[k] = isAbsolute(x) ? x : resolve(dirname(file), x);
    }
    ctx.tls = tls;
  }
  return { file, ctx };
}

/** A controller's base URL: http:// or https://, no spaces, no commas (a comma separates several controllers). */
function isHttpUrl(u: string): boolean {
  return /^https?:\/\/[^\s,]+$/.test(u);
}

export async function resolveConnection(command: string, flags: ConnectFlags, env: NodeJS.ProcessEnv = process.env): Promise<Connection> {
  let controller = flags.controller ?? (env["FERRY_CONTROLLER"] || undefined);
  let tokenFile = flags["token-file"] ?? (env["FERRY_TOKEN_FILE"] || undefined);
  const from = {
    controller: flags.controller !== undefined ? "--controller" : controller !== undefined ? "FERRY_CONTROLLER" : "",
    tokenFile: flags["token-file"] !== undefined ? "--token-file" : tokenFile !== undefined ? "FERRY_TOKEN_FILE" : "",
  };
  let lab: string | undefined;
  let alternates: string[] | undefined;
  const tls: Partial<TlsFiles> = {};
  for (const k of ["cert", "key", "ca"] as const) {
    const x = flags[`tls-${k}`] ?? (env[`FERRY_TLS_${k.toUpperCase()}`] || undefined);
    if (x !== undefined) tls[k] = resolve(x);
  }
  if (controller === undefined || tokenFile === undefined) {
    const c = await readContext(env);
    // the context's TLS files belong to the context's controller: used only with it
    if (controller === undefined && c?.ctx.controller !== undefined) for (const k of ["cert", "key", "ca"] as const) tls[k] ??= c.ctx.tls?.[k];
    if (controller === undefined && c?.ctx.controller !== undefined) {
      from.controller = `the context file ${c.file}`;
      lab = c.ctx.lab;
      const main = c.ctx.controller;
      alternates = c.ctx.controllers?.filter((u) => u !== main);
    }
    if (tokenFile === undefined && c?.ctx.tokenFile !== undefined) from.tokenFile = `the context file ${c.file}`;
    controller ??= c?.ctx.controller;
    tokenFile ??= c?.ctx.tokenFile;
  }
  if (controller === undefined) throw new UsageError(command, "no controller address: give --controller URL, set FERRY_CONTROLLER, or write a context file (~/.config/ferry/context.json; 'ferry lab up' writes one for its lab)");
  // several controllers (etcd): URL,URL,… — the first is asked first, the others when it cannot be connected to
  if (from.controller === "--controller" || from.controller === "FERRY_CONTROLLER") {
    const urls = controller.split(",").map((u) => u.trim());
    for (const u of urls) if (!isHttpUrl(u)) throw new UsageError(command, `${from.controller}: not an http(s) URL: ${JSON.stringify(u)}${urls.length > 1 ? ` (in ${JSON.stringify(controller)}; several controllers: URL,URL,…)` : ""}`);
    controller = urls[0]!;
    const others = [...new Set(urls.slice(1))].filter((u) => u !== controller);
    if (others.length > 0) alternates = others;
  }
  if (!isHttpUrl(controller)) throw new UsageError(command, `${from.controller}: not an http(s) URL: ${JSON.stringify(controller)}`);
  if (tokenFile === undefined) throw new UsageError(command, "no token file: give --token-file FILE (the controller's tokenFile), set FERRY_TOKEN_FILE, or write a context file");
  for (const f of [tokenFile, ...Object.values(tls)]) if (f?.includes("\0")) throw new UsageError(command, `a file name contains a NUL byte: ${JSON.stringify(f)}`);
  const given = (["cert", "key", "ca"] as const).filter((k) => tls[k] !== undefined);
  if (given.length > 0 && given.length < 3) throw new UsageError(command, `mutual TLS needs --tls-cert, --tls-key and --tls-ca together (missing: ${(["cert", "key", "ca"] as const).filter((k) => tls[k] === undefined).map((k) => `--tls-${k}`).join(", ")})`);
  const files = tls.cert !== undefined && tls.key !== undefined && tls.ca !== undefined ? { cert: tls.cert, key: tls.key, ca: tls.ca } : null;
  const plain = [controller, ...(alternates ?? [])].find((u) => !u.startsWith("https://"));
  if (files && plain !== undefined) throw new UsageError(command, `--controller: mutual TLS is configured, so the controller must be an https:// URL (got ${JSON.stringify(plain)})`);
  return { controller, tokenFile, tls: files, from, ...(lab === undefined ? {} : { lab }), ...(alternates && alternates.length > 0 ? { alternates } : {}) };
}

/** The connection of this process's last connect(): what explainFailure talks about. */
let current: Connection | undefined;

export async function connect(command: string, flags: ConnectFlags): Promise<ControllerClient> {
  const c = await resolveConnection(command, flags);
  current = c;
  let token: string;
  try {
    token = (await readFile(c.tokenFile, "utf8")).trim();
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as NodeJS.ErrnoException).code === "EACCES" ? "permission denied" : e instanceof Error ? e.message : String(e);
    throw new FerryError("FERRY_ERR_CONFIG", `cannot read the controller token from ${c.tokenFile} (${c.from.tokenFile}): ${why}; give the controller's tokenFile with --token-file FILE or FERRY_TOKEN_FILE${c.lab === undefined ? "" : `, or bring lab ${c.lab} up again ('ferry lab up')`}`, { cause: e, details: { file: c.tokenFile } });
  }
  if (token === "") throw new FerryError("FERRY_ERR_CONFIG", `${c.tokenFile} (${c.from.tokenFile}) is empty: it must hold the controller's token (the controller's tokenFile)`, { details: { file: c.tokenFile } });
  return new ControllerClient({ baseUrl: c.controller, token, tls: c.tls ? await loadTls(c.tls) : null, ...(c.alternates ? { alternates: c.alternates } : {}) });
}

/**
 * What to do about an error from the controller, given how this process
 * reached it (flags, environment or context file): a sentence to print after
 * the error, or undefined.
 */
export function explainFailure(e: FerryError, c: Connection | undefined = current): string | undefined {
  if (c === undefined) return undefined;
  if (e.code === "FERRY_ERR_UNAUTHORIZED") {
    return `the CLI sent the token in ${c.tokenFile} (${c.from.tokenFile}), which ${c.controller} does not accept: give the controller's tokenFile with --token-file FILE or FERRY_TOKEN_FILE`;
  }
  if (e.code !== "FERRY_ERR_CONTROLLER" || typeof e.details["url"] !== "string") return undefined;
  const m = e.message;
  if (c.tls === null && c.controller.startsWith("https://") && /certificate|self.signed|handshake|alert|SSL|TLS/i.test(m)) {
    return `${c.controller} is https:// with mutual TLS: give --tls-cert FILE --tls-key FILE --tls-ca FILE (a certificate from the controller's CA: 'ferry ca issue'), or set FERRY_TLS_CERT, FERRY_TLS_KEY and FERRY_TLS_CA`;
  }
  if (c.tls !== null && /certificate|handshake|alert|SSL|TLS|socket hang up|ECONNRESET/i.test(m)) {
    return `the TLS handshake with ${c.controller} failed: the certificate in ${c.tls.cert} must come from the controller's CA, and ${c.tls.ca} must be that CA`;
  }
  if (/ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|no answer within|fetch failed/i.test(m)) {
    const lab = c.lab === undefined ? "" : `; the context is lab ${c.lab}'s: is it up? ('ferry lab status --name ${c.lab}', 'ferry lab up --name ${c.lab}')`;
    if (c.alternates) return `no controller of ${[c.controller, ...c.alternates].join(", ")} (${c.from.controller}) could be reached: is one running?${c.lab === undefined ? "" : ` ('ferry lab status --name ${c.lab}', 'ferry lab start controller --name ${c.lab}')`}`;
    return `is a controller running at ${c.controller} (${c.from.controller})? start it ('ferry controller --config controller.yaml'), or give its URL with --controller URL or FERRY_CONTROLLER${lab}`;
  }
  return undefined;
}

/** Pull every `--name VALUE` / `--name=VALUE` out of argv (repeatable flags), leaving the rest for parse(). */
export function takeRepeated(argv: readonly string[], name: string, command = "vm"): { values: string[]; rest: string[] } {
  const values: string[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === name) {
      const v = argv[i + 1];
      if (v === undefined) throw new UsageError(command, `${name} needs a value`);
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
