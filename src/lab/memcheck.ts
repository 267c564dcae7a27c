// The test guest's memory check (issue 14): at boot the guest fills a region
// of its RAM with random bytes and prints `ferry-memsum boot <md5>`; asked
// `memsum <token>` on its serial console, it prints `ferry-memsum <token>
// <md5>` of the region as it is now. A migration that damaged guest memory
// changes the answer. The console is the instance's serial socket (QEMU
// listens, one client at a time); everything the guest prints also goes to
// serial.log. See src/lab/guest/init.sh for the guest side.
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { dirname, join } from "node:path";
import { systemClock } from "../core/clock.ts";
import type { Clock } from "../core/clock.ts";
import { abortError, deadline } from "../core/deadline.ts";
import { FerryError } from "../core/errors.ts";
import { readConsole } from "../qemu/console.ts";
import { pathsIn } from "../qemu/instance.ts";

/** Where to reach a guest's console: an instance dir, or its serial socket (or its serial.log, the socket being beside it). */
export type ConsoleTarget = string | { serialSocket: string; serialLog?: string } | { serialLog: string };

export interface MemcheckOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  clock?: Clock;
}

/** The md5 the guest reports, or "off" when it booted with ferry.memcheck=0. */
const SUM_RE = /^(?:[0-9a-f]{32}|off)$/;
const TOKEN_RE = /^[A-Za-z0-9_-]{1,32}$/;
/** Bytes of console output kept between reads: enough for a reply split across chunks. */
const KEEP = 512;

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** The signal's abort as a FerryError; a timeout's message ends with `hint` (what to check). */
function aborted(signal: AbortSignal, what: string, hint: string): FerryError {
  const e = abortError(signal, what);
  if (e.code !== "FERRY_ERR_TIMEOUT" || signal.reason instanceof FerryError) return e;
  return new FerryError("FERRY_ERR_TIMEOUT", `${e.message}: ${hint}`, { cause: e.cause });
}

function checkToken(token: string): void {
  if (!TOKEN_RE.test(token)) throw new FerryError("FERRY_ERR_INTERNAL", `memcheck token ${JSON.stringify(token)} is not 1-32 letters, digits, '_' or '-' (the guest ignores it)`);
}

/**
 * The guest's `ferry-memsum <token> <sum>` line in console text: the sum
 * ("off" or an md5), undefined while no complete line is there. A line
 * with anything else after the token throws FERRY_ERR_STATE.
 */
export function parseMemsum(text: string, token: string): string | undefined {
  checkToken(token);
  const m = new RegExp(`ferry-memsum ${escape(token)} ([^\\r\\n]*)[\\r\\n]`).exec(text);
  if (!m) return undefined;
  const sum = m[1]!.trim();
  if (!SUM_RE.test(sum)) throw new FerryError("FERRY_ERR_STATE", `the guest answered memsum ${token} with ${JSON.stringify(sum)}, not an md5: its /init is not the one in src/lab/guest/init.sh; rebuild the guest image ('npm run setup')`);
  return sum;
}

/** The random token of one request. */
export function memcheckToken(): string {
  return randomBytes(6).toString("hex");
}

function socketOf(target: ConsoleTarget): { socket: string; log: string | undefined } {
  if (typeof target === "string") {
    const p = pathsIn(target);
    return { socket: p.serialSocket, log: p.serialLog };
  }
  if ("serialSocket" in target) return { socket: target.serialSocket, log: target.serialLog };
  return { socket: join(dirname(target.serialLog), "serial.sock"), log: target.serialLog };
}

/**
 * Write `line` to the guest's console and return the first match of `answer`
 * in what the guest prints after. Reads all the while: a client that stops
 * reading would stall the guest's console once the socket buffer is full.
 */
async function ask(target: ConsoleTarget, line: string, answer: (text: string) => string | undefined, o: MemcheckOptions): Promise<string> {
  const { socket, log } = socketOf(target);
  const where = log ? ` (its console is in ${log})` : "";
  const signal = deadline(o.timeoutMs, o.signal, o.clock ?? systemClock);
  if (signal.aborted) throw aborted(signal, `guest console request '${line}' on ${socket}`, "allow more time");
  return new Promise<string>((resolve, reject) => {
    const conn = connect({ path: socket });
    let text = "";
    let done = false;
    const finish = (e: FerryError | undefined, value?: string): void => {
      if (done) return;
      done = true;
      signal.removeEventListener("abort", onAbort);
      conn.destroy();
      if (e) reject(e);
      else resolve(value!);
    };
    const onAbort = (): void => {
      const hint = `is the guest running (not paused, e.g. a migration's destination before the switch-over), booted from a guest image with the memory check (src/lab/guest/init.sh; 'npm run setup' rebuilds it), and is no other client holding the console (QEMU serves one at a time)?${where}`;
      finish(aborted(signal, `the guest did not answer '${line}' on ${socket}`, hint));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    conn.setEncoding("latin1");
    conn.on("connect", () => conn.write(`${line}\n`));
    conn.on("data", (chunk: string) => {
      text += chunk;
      try {
        const value = answer(text);
        if (value !== undefined) finish(undefined, value);
        else text = text.slice(-KEEP);
      } catch (e) {
        finish(e as FerryError);
      }
    });
    conn.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") {
        finish(new FerryError("FERRY_ERR_NOT_FOUND", `no serial console socket at ${socket}: the instance has exited, or was started before Ferry gave QEMU one (restart it)${where}`, { cause: e, details: { socket } }));
      } else if (e.code === "ECONNREFUSED") {
        finish(new FerryError("FERRY_ERR_GUEST_LOST", `nothing listens on the serial console socket ${socket}: the QEMU process has exited${where}`, { cause: e, details: { socket } }));
      } else {
        finish(new FerryError("FERRY_ERR_COMMAND", `serial console socket ${socket}: ${e.message}`, { cause: e, details: { socket } }));
      }
    });
    conn.on("close", () => finish(new FerryError("FERRY_ERR_GUEST_LOST", `QEMU closed the serial console socket ${socket} before the guest answered '${line}': the instance has exited${where}`, { details: { socket } })));
  });
}

function sumOrThrow(sum: string, what: string): string {
  if (sum === "off") throw new FerryError("FERRY_ERR_STATE", `${what}: the guest booted with ferry.memcheck=0 and has no region to check; boot it without that parameter`);
  return sum;
}

/**
 * Ask the guest for the md5 of its memcheck region now: sends `memsum
 * <random token>` on the instance's serial socket and waits for the answer.
 * Equal to bootMemsum() of the instance the guest booted in unless guest
 * memory was damaged. Takes 0.1-0.4 s under TCG for the default 8 MiB.
 */
export async function guestMemsum(target: ConsoleTarget, o: MemcheckOptions): Promise<string> {
  const token = memcheckToken();
  const sum = await ask(target, `memsum ${token}`, (text) => parseMemsum(text, token), o);
  return sumOrThrow(sum, "memsum");
}

/**
 * Test hook: the guest overwrites 16 bytes in the middle of its memcheck
 * region, so that the next guestMemsum() differs from the boot one (a test
 * that the check can fail). Resolves once the guest has done it.
 */
export function guestMemtouch(target: ConsoleTarget, o: MemcheckOptions): Promise<void> {
  return hook(target, "memtouch", (token) => `ferry-memtouch ${token} done`, o);
}

/** Send test hook `verb <token>` and wait for the guest's line `reply(token)`. */
async function hook(target: ConsoleTarget, verb: string, reply: (token: string) => string, o: MemcheckOptions): Promise<void> {
  const token = memcheckToken();
  const re = new RegExp(`${reply(token)}[\\r\\n]`);
  await ask(target, `${verb} ${token}`, (text) => (re.test(text) ? "done" : undefined), o);
}

/**
 * Test hook: the guest's kernel panics (`panic <token>`: sysrq c) right after
 * it printed `ferry-panic <token>`. Resolves once it said so; the panic itself
 * follows within milliseconds (QEMU's GUEST_PANICKED through pvpanic).
 */
export function guestPanic(target: ConsoleTarget, o: MemcheckOptions): Promise<void> {
  return hook(target, "panic", (token) => `ferry-panic ${token}`, o);
}

/**
 * The md5 the guest printed at boot (`ferry-memsum boot <md5>`, before
 * `ferry-ready`) in the serial log of the instance it booted in (a migrated
 * guest's destination log has none: keep the source's). Waits up to
 * timeoutMs (default: none) for the line.
 */
export async function bootMemsum(serialLog: string, o: Partial<MemcheckOptions> = {}): Promise<string> {
  const clock = o.clock ?? systemClock;
  const signal = deadline(o.timeoutMs ?? 0, o.signal, clock);
  for (;;) {
    const text = await readConsole(serialLog);
    const sum = parseMemsum(text, "boot");
    if (sum !== undefined) return sumOrThrow(sum, `boot memsum in ${serialLog}`);
    if (/ferry-ready /.test(text)) {
      throw new FerryError("FERRY_ERR_GUEST_IMAGE", `the guest in ${serialLog} printed ferry-ready but no 'ferry-memsum boot' line: its image predates the memory check; rebuild it ('npm run setup')`, { details: { serialLog } });
    }
    if (signal.aborted) {
      throw aborted(signal, `no 'ferry-memsum boot' line in ${serialLog}`, "the guest has not finished booting (wait for ferry-ready), or this is a migration destination's log (read the source's)");
    }
    await clock.sleep(50, signal).catch(() => undefined);
  }
}
