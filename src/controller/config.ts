// Controller configuration: one YAML file. Parsing is pure (loadControllerConfig
// only reads the file); every error names the line and the field; unknown keys
// are errors.
//
//   listen: { address: 127.0.0.1, port: 7600 }   # defaults
//   stateDir: /var/lib/ferry-controller           # controller.db (SQLite, WAL, 0600) lives here
//   tokenFile: /etc/ferry/controller-token        # the controller API's bearer token (default <stateDir>/token; created 0600 if absent)
//   agentTokenFile: /etc/ferry/agent-token        # the cluster's agent token (required): the controller calls every agent with it
//   heartbeatTimeoutMs: 6000                      # a host that misses heartbeats this long is down
//   hostCapacity: { memoryMiB: 16384, vcpus: 16 } # per host, until agents report theirs
//   lab: { fabric: NAME }                         # lab only: probe guests from that fabric's peer during migrations
//   deadlines: { unplugMs: 15000, convergeMs: 300000, precheckMs: 2000, primaryBackMs: 30000, stepMs: 120000 }
//
// Relative paths are resolved against the config file's directory.
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { isNode, LineCounter, parseDocument } from "yaml";
import type { Document } from "yaml";
import { FerryError, invalid, isFerryError } from "../core/errors.ts";
import type { Deadlines } from "../migration/types.ts";
import * as v from "../model/validate.ts";

export interface ControllerConfig {
  listen: { address: string; port: number };
  stateDir: string;
  tokenFile: string;
  agentTokenFile: string;
  heartbeatTimeoutMs: number;
  hostCapacity: { memoryMiB: number; vcpus: number };
  deadlines: Deadlines;
  /** Lab only: the fabric whose peer probes guests during migrations. */
  lab: { fabric: string } | null;
}

export const DEFAULT_CONTROLLER_PORT = 7600;
export const DB_FILE_NAME = "controller.db";
export const DEFAULT_DEADLINES: Deadlines = { unplugMs: 15_000, convergeMs: 300_000, precheckMs: 2_000, primaryBackMs: 30_000, stepMs: 120_000 };
/** How often agents are asked to heartbeat. */
export const HEARTBEAT_INTERVAL_MS = 2_000;

type Path = (string | number)[];

function fieldName(path: Path): string {
  return path.reduce<string>((s, p) => (typeof p === "number" ? `${s}[${p}]` : s ? `${s}.${p}` : p), "") || "(document)";
}

class Ctx {
  readonly doc: Document;
  readonly lines: LineCounter;
  readonly source: string;
  readonly baseDir: string;
  constructor(doc: Document, lines: LineCounter, source: string, baseDir: string) {
    this.doc = doc;
    this.lines = lines;
    this.source = source;
    this.baseDir = baseDir;
  }

  line(path: Path): number | null {
    for (let n = path.length; n >= 0; n--) {
      const node: unknown = n === 0 ? this.doc.contents : this.doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) return this.lines.linePos(node.range[0]).line;
    }
    return null;
  }

  error(path: Path, message: string, cause?: unknown): FerryError {
    const line = this.line(path);
    const field = fieldName(path);
    return new FerryError("FERRY_ERR_CONFIG", `${this.source}${line === null ? "" : `:${line}`}: ${field}: ${message}`, { cause, details: { file: this.source, line, field } });
  }

  check<T>(path: Path, fn: (field: string) => T): T {
    try {
      return fn(fieldName(path));
    } catch (e) {
      if (isFerryError(e, "FERRY_ERR_INVALID")) throw this.error(path, e.message.replace(`${fieldName(path)}: `, ""), e);
      throw e;
    }
  }

  obj(path: Path, x: unknown, allowed: readonly string[]): Record<string, unknown> {
    const o = this.check(path, (f) => v.obj(f, x));
    for (const k of Object.keys(o)) if (!allowed.includes(k)) throw this.error([...path, k], `unknown field (allowed: ${allowed.join(", ")})`);
    return o;
  }

  path(path: Path, x: unknown): string {
    return this.check(path, (f) => {
      const s = v.str(f, x);
      if (s.split("/").includes("..")) return v.absPath(f, s);
      return v.absPath(f, isAbsolute(s) ? s : resolve(this.baseDir, s));
    });
  }

  int(path: Path, x: unknown, dflt: number, min: number, max: number): number {
    return x === undefined ? dflt : this.check(path, (f) => v.int(f, x, min, max));
  }
}

export function parseControllerConfig(text: string, options: { source?: string; baseDir?: string } = {}): ControllerConfig {
  const source = options.source ?? "controller config";
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  const c = new Ctx(doc, lines, source, options.baseDir ?? (isAbsolute(source) ? dirname(source) : process.cwd()));
  const yamlError = doc.errors[0];
  if (yamlError) {
    const line = yamlError.linePos?.[0].line ?? null;
    throw new FerryError("FERRY_ERR_CONFIG", `${source}${line === null ? "" : `:${line}`}: YAML: ${yamlError.message.split("\n")[0] ?? ""}`, { cause: yamlError, details: { file: source, line } });
  }
  const raw: unknown = doc.toJS();
  const o = c.obj([], raw ?? {}, ["listen", "stateDir", "tokenFile", "agentTokenFile", "heartbeatTimeoutMs", "hostCapacity", "deadlines", "lab"]);

  const listenRaw = o["listen"] === undefined ? {} : c.obj(["listen"], o["listen"], ["address", "port"]);
  const address = c.check(["listen", "address"], (f) => {
    const s = v.str(f, listenRaw["address"] ?? "127.0.0.1");
    if (isIP(s) === 0) throw invalid(f, s, "not an IP address");
    return s;
  });
  const port = c.int(["listen", "port"], listenRaw["port"], DEFAULT_CONTROLLER_PORT, 0, 65535);
  if (o["stateDir"] === undefined) throw c.error(["stateDir"], "required");
  const stateDir = c.path(["stateDir"], o["stateDir"]);
  if (o["agentTokenFile"] === undefined) throw c.error(["agentTokenFile"], "required (the cluster's agent token: the controller calls every agent with it)");
  const agentTokenFile = c.path(["agentTokenFile"], o["agentTokenFile"]);
  const tokenFile = o["tokenFile"] === undefined ? join(stateDir, "token") : c.path(["tokenFile"], o["tokenFile"]);
  const heartbeatTimeoutMs = c.int(["heartbeatTimeoutMs"], o["heartbeatTimeoutMs"], 6_000, 500, 3_600_000);

  const capRaw = o["hostCapacity"] === undefined ? {} : c.obj(["hostCapacity"], o["hostCapacity"], ["memoryMiB", "vcpus"]);
  const hostCapacity = {
    memoryMiB: c.int(["hostCapacity", "memoryMiB"], capRaw["memoryMiB"], 16_384, 64, 1 << 30),
    vcpus: c.int(["hostCapacity", "vcpus"], capRaw["vcpus"], 16, 1, 4096),
  };

  const keys = Object.keys(DEFAULT_DEADLINES) as (keyof Deadlines)[];
  const dRaw = o["deadlines"] === undefined ? {} : c.obj(["deadlines"], o["deadlines"], keys);
  const deadlines = { ...DEFAULT_DEADLINES };
  for (const k of keys) deadlines[k] = c.int(["deadlines", k], dRaw[k], DEFAULT_DEADLINES[k], 1, 24 * 3_600_000);

  const labRaw = o["lab"] === undefined ? undefined : c.obj(["lab"], o["lab"], ["fabric"]);
  const lab = labRaw === undefined ? null : { fabric: c.check(["lab", "fabric"], (f) => v.name(f, labRaw["fabric"])) };
  return { listen: { address, port }, stateDir, tokenFile, agentTokenFile, heartbeatTimeoutMs, hostCapacity, deadlines, lab };
}

export async function loadControllerConfig(file: string, signal?: AbortSignal): Promise<ControllerConfig> {
  let text: string;
  try {
    text = await readFile(file, { encoding: "utf8", signal });
  } catch (e) {
    throw new FerryError("FERRY_ERR_CONFIG", `${file}: cannot read: ${e instanceof Error ? e.message : String(e)}`, { cause: e, details: { file } });
  }
  return parseControllerConfig(text, { source: resolve(file) });
}

export function dbFile(config: ControllerConfig): string {
  return join(config.stateDir, DB_FILE_NAME);
}
