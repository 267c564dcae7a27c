// The YAML config reader shared by the host and controller configs: parse a
// document, then validate it field by field through a Ctx whose every error is
// FERRY_ERR_CONFIG naming the file, the line and the field. Unknown keys are
// errors (a typo must not silently drop a setting). Pure except readConfigFile.
// (In model/, not core/: it builds on model/validate.ts.)
import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { isNode, LineCounter, parseDocument } from "yaml";
import type { Document } from "yaml";
import { FerryError, invalid, isFerryError } from "../core/errors.ts";
import type { TlsFiles } from "../core/tls.ts";
import * as v from "./validate.ts";

export type Path = (string | number)[];

export function fieldName(path: Path): string {
  return path.reduce<string>((s, p) => (typeof p === "number" ? `${s}[${p}]` : s ? `${s}.${p}` : p), "") || "(document)";
}

export class Ctx {
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

  /** The line of the node at path, or of its nearest ancestor that exists. */
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
    return new FerryError("FERRY_ERR_CONFIG", `${this.source}${line === null ? "" : `:${line}`}: ${field}: ${message}`, {
      cause,
      details: { file: this.source, line, field },
    });
  }

  /** Run a validator from model/validate.ts, turning its error into one that names the line. */
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

  /** An absolute path (relative ones are resolved against the config's directory); no '..', no NUL. */
  path(path: Path, x: unknown): string {
    return this.check(path, (f) => {
      const s = v.str(f, x);
      if (/[\u0001-\u001f\u007f]/.test(s)) throw invalid(f, s, "contains a control character");
      if (s.split("/").includes("..")) return v.absPath(f, s); // reports the '..'
      return v.absPath(f, isAbsolute(s) ? s : resolve(this.baseDir, s));
    });
  }

  int(path: Path, x: unknown, dflt: number, min: number, max: number): number {
    return x === undefined ? dflt : this.check(path, (f) => v.int(f, x, min, max));
  }

  bool(path: Path, x: unknown, dflt: boolean): boolean {
    if (x === undefined) return dflt;
    return this.check(path, (f) => {
      if (typeof x !== "boolean") throw invalid(f, x, "must be true or false");
      return x;
    });
  }
}

/** `tls: { cert, key, ca }`: the server's (and client's) certificate and key, and the CA that signs the peers' certificates. */
export function parseTls(c: Ctx, path: Path, x: unknown): TlsFiles {
  const o = c.obj(path, x, ["cert", "key", "ca"]);
  for (const k of ["cert", "key", "ca"] as const) if (o[k] === undefined) throw c.error([...path, k], "required (tls needs cert, key and ca: see 'ferry ca --help')");
  return { cert: c.path([...path, "cert"], o["cert"]), key: c.path([...path, "key"], o["key"]), ca: c.path([...path, "ca"], o["ca"]) };
}

/**
 * Parse YAML text into its plain value and a Ctx for validating it. `source`
 * names the file in errors; relative paths resolve against `baseDir`
 * (default: the source's directory, else the working directory).
 */
export function parseYamlConfig(text: string, source: string, baseDir?: string): { raw: unknown; c: Ctx } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  const c = new Ctx(doc, lines, source, baseDir ?? (isAbsolute(source) ? dirname(source) : process.cwd()));
  const yamlError = doc.errors[0];
  if (yamlError) {
    const line = yamlError.linePos?.[0].line ?? null;
    throw new FerryError("FERRY_ERR_CONFIG", `${source}${line === null ? "" : `:${line}`}: YAML: ${yamlError.message.split("\n")[0] ?? ""}`, {
      cause: yamlError,
      details: { file: source, line },
    });
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    throw new FerryError("FERRY_ERR_CONFIG", `${source}: YAML: ${e instanceof Error ? e.message : String(e)}`, { cause: e, details: { file: source } });
  }
  return { raw, c };
}

/** Read a config file (text), FERRY_ERR_CONFIG naming it when unreadable; returns the text and its absolute path. */
export async function readConfigFile(file: string, signal?: AbortSignal): Promise<{ text: string; source: string }> {
  try {
    return { text: await readFile(file, { encoding: "utf8", signal }), source: resolve(file) };
  } catch (e) {
    throw new FerryError("FERRY_ERR_CONFIG", `${file}: cannot read: ${e instanceof Error ? e.message : String(e)}`, { cause: e, details: { file } });
  }
}
