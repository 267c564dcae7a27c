// A server's bearer token (the agent's, the controller's): one random secret in a file only its owner can
// read. Created (32 random bytes, hex, mode 0600) when absent. Compared in
// constant time. Never logged.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { FerryError } from "../errors.ts";
import type { Logger } from "../log.ts";

export interface TokenFile {
  token: string;
  created: boolean;
  /** Set when the file is readable by group or others (the caller warns). */
  looseMode: number | null;
}

function errno(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

/** Read the token file, creating it with a fresh token if absent. */
export async function loadOrCreateToken(file: string): Promise<TokenFile> {
  try {
    const token = (await readFile(file, "utf8")).trim();
    if (token.length < 16 || /\s/.test(token)) {
      throw new FerryError("FERRY_ERR_CONFIG", `${file}: the auth token must be one line of at least 16 characters`, { details: { file } });
    }
    const mode = (await stat(file)).mode & 0o777;
    return { token, created: false, looseMode: (mode & 0o077) !== 0 ? mode : null };
  } catch (e) {
    if (errno(e) !== "ENOENT") {
      if (e instanceof FerryError) throw e;
      throw new FerryError("FERRY_ERR_CONFIG", `${file}: cannot read the auth token: ${e instanceof Error ? e.message : String(e)}`, { cause: e, details: { file } });
    }
  }
  const token = randomBytes(32).toString("hex");
  try {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    await writeFile(file, `${token}\n`, { mode: 0o600, flag: "wx" });
    await chmod(file, 0o600);
  } catch (e) {
    // Another process created it between our read and write: use theirs.
    if (errno(e) === "EEXIST") return loadOrCreateToken(file);
    throw new FerryError("FERRY_ERR_CONFIG", `${file}: cannot create the auth token: ${e instanceof Error ? e.message : String(e)}`, { cause: e, details: { file } });
  }
  return { token, created: true, looseMode: null };
}

const digest = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest();

/** Constant-time comparison (on equal-length digests, so length leaks nothing either). */
export function tokenMatches(expected: string, given: string): boolean {
  return timingSafeEqual(digest(expected), digest(given));
}

/** A server's token: loaded or created (0600), saying so in the log, and warning when others can read the file. */
export async function loadServerToken(file: string, log: Logger): Promise<string> {
  const tok = await loadOrCreateToken(file);
  if (tok.created) log.info({ file }, "created the token file (mode 0600)");
  if (tok.looseMode !== null) log.warn({ file, mode: tok.looseMode.toString(8) }, "the token file is readable by others: chmod 600 it");
  return tok.token;
}

/** Resolves with the first SIGTERM or SIGINT (a server's run ends there). */
export function untilStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals): void => {
      process.off("SIGTERM", on);
      process.off("SIGINT", on);
      resolve(s);
    };
    process.on("SIGTERM", on);
    process.on("SIGINT", on);
  });
}

/** Listen on the configured address; an address in use or not ours is a FERRY_ERR_CONFIG that says what to change. */
export async function listenAt(app: { listen(o: { host: string; port: number }): Promise<string> }, listen: { address: string; port: number }, config: string): Promise<string> {
  try {
    return await app.listen({ host: listen.address, port: listen.port });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EADDRINUSE") throw new FerryError("FERRY_ERR_CONFIG", `${listen.address}:${listen.port} is in use (another agent or controller?): stop what listens there, or set another listen.port in ${config}`, { cause: e });
    if (code === "EADDRNOTAVAIL" || code === "EACCES") throw new FerryError("FERRY_ERR_CONFIG", `cannot listen on ${listen.address}:${listen.port} (${code}): set listen.address to an address of this machine${code === "EACCES" ? " and listen.port to 1024 or above (or run as root)" : ""} in ${config}`, { cause: e });
    throw e;
  }
}
