// The guest's serial console as written by QEMU to the instance's serial.log.
// The test guest prints `ferry-ready <name>` and `ferry-heartbeat <n>` every 100 ms.
import { readFile } from "node:fs/promises";
import { systemClock } from "../core/clock.ts";
import type { Clock } from "../core/clock.ts";
import { abortError, deadline } from "../core/deadline.ts";

const HEARTBEAT_RE = /ferry-heartbeat (\d+)/g;

export async function readConsole(path: string): Promise<string> {
  return readFile(path, "latin1").catch(() => "");
}

/** All heartbeat counters in the text, in order. */
export function heartbeats(text: string): number[] {
  return [...text.matchAll(HEARTBEAT_RE)].map((m) => Number(m[1]));
}

export function lastHeartbeat(text: string): number | undefined {
  return heartbeats(text).at(-1);
}

/** Wait until one of the console logs matches `re`; returns the match. */
export async function waitForConsole(paths: string | string[], re: RegExp, o: { timeoutMs: number; signal?: AbortSignal; clock?: Clock }): Promise<RegExpMatchArray> {
  const clock = o.clock ?? systemClock;
  const signal = deadline(o.timeoutMs, o.signal, clock);
  for (;;) {
    for (const p of Array.isArray(paths) ? paths : [paths]) {
      const m = (await readConsole(p)).match(re);
      if (m) return m;
    }
    if (signal.aborted) throw abortError(signal, `guest console never showed ${re}`);
    await clock.sleep(50).catch(() => undefined);
  }
}

/** Wait until the heartbeat counter in `path` exceeds `after`; returns the new value. */
export async function waitForHeartbeat(path: string, after: number, o: { timeoutMs: number; signal?: AbortSignal; clock?: Clock }): Promise<number> {
  const clock = o.clock ?? systemClock;
  const signal = deadline(o.timeoutMs, o.signal, clock);
  for (;;) {
    const n = lastHeartbeat(await readConsole(path));
    if (n !== undefined && n > after) return n;
    if (signal.aborted) throw abortError(signal, `guest heartbeat did not pass ${after}`);
    await clock.sleep(50).catch(() => undefined);
  }
}
