// The lab's component processes: `ferry` started detached by the lab, found
// again by pid (only while its command line names the lab dir), stopped with
// escalation, and waited for until its HTTP API answers.
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { systemClock } from "../core/clock.ts";
import { FerryError } from "../core/errors.ts";
import { pollUntil } from "../core/poll.ts";

const FERRY_BIN = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "bin", "ferry");

/**
 * Start `ferry ARGS` in the background, detached, its output appended to
 * `log`; its pid. `via`: a command that execs ferry (e.g. nsenter … --).
 */
export function spawnDetached(args: string[], log: string, via: readonly string[] = []): number {
  const fd = openSync(log, "a", 0o600);
  try {
    const [file, ...pre] = [...via, FERRY_BIN];
    const child = spawn(file, [...pre, ...args], { detached: true, stdio: ["ignore", fd, fd], env: { ...process.env, FERRY_LOG_LEVEL: process.env["FERRY_LOG_LEVEL"] ?? "info" } });
    child.unref();
    if (child.pid === undefined) throw new FerryError("FERRY_ERR_INTERNAL", `could not start ferry ${args.join(" ")}`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** True when `pid` runs and its command line mentions `marker` (the lab dir): never signal a reused pid. */
export async function ownedAlive(pid: number, marker: string): Promise<boolean> {
  try {
    const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8");
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    return cmd.includes(marker) && !/\) [ZX] /.test(stat);
  } catch {
    return false;
  }
}

/** Signal an owned process, wait up to 5 s for it to go, then SIGKILL it. */
export async function stopPid(pid: number, marker: string, signal: NodeJS.Signals): Promise<void> {
  if (!(await ownedAlive(pid, marker))) return;
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  await pollUntil(systemClock, { timeoutMs: 5_000, everyMs: 50 }, async () => ((await ownedAlive(pid, marker)) ? undefined : true));
  if (await ownedAlive(pid, marker)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

/** Wait until `GET url+path` answers 2xx with a body `ok` accepts (every 200 ms, for up to timeoutMs). */
export async function waitHttp(f: typeof fetch, url: string, token: string, path: string, ok: (body: unknown) => boolean, timeoutMs: number, what: string): Promise<void> {
  let last = "";
  const up = await pollUntil(systemClock, { timeoutMs, everyMs: 200 }, async () => {
    try {
      const r = await f(`${url}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: systemClock.timeout(2_000) });
      if (r.ok && ok(await r.json())) return true;
      last = `HTTP ${r.status}`;
    } catch (e) {
      last = e instanceof Error ? e.message : String(e);
    }
    return undefined;
  });
  if (!up) throw new FerryError("FERRY_ERR_TIMEOUT", `${what} did not come up within ${timeoutMs} ms (${last}); see the logs in the lab dir`);
}
