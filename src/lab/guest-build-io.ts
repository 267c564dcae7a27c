// Small I/O helpers the guest-image builder's steps share: the build options,
// atomic writes, and temp dirs that a builder which died leaves behind.
import { randomBytes } from "node:crypto";
import { readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FerryError } from "../core/errors.ts";
import type { RunOptions } from "../core/run.ts";

export interface GuestImageOptions {
  cacheDir?: string;
  signal?: AbortSignal;
  log?: (msg: string) => void;
}

export function runOpts(opts: GuestImageOptions, extra: RunOptions = {}): RunOptions {
  return opts.signal ? { ...extra, signal: opts.signal } : extra;
}

/** A temp name in a cache dir, `.<kind>-<pid>-<random>`: pruneStaleTemps knows whose it is. */
export function tempName(dir: string, kind: "tmp" | "partial"): string {
  return join(dir, `.${kind}-${process.pid}-${randomBytes(4).toString("hex")}`);
}

export async function writeAtomic(path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

export function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new FerryError("FERRY_ERR_ABORTED", "guest image build aborted", { cause: signal.reason });
}

/** Remove temp dirs (`.tmp-<pid>-*`, `.partial-<pid>-*`) left by builders that died. */
export async function pruneStaleTemps(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [])) {
    const m = /^\.(?:tmp|partial)-(\d+)-/.exec(name);
    if (!m) continue;
    let alive = true;
    try {
      process.kill(Number(m[1]), 0);
    } catch (e) {
      alive = (e as NodeJS.ErrnoException).code === "EPERM";
    }
    if (!alive) await rm(join(dir, name), { recursive: true, force: true });
  }
}
