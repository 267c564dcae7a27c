// Polling with a deadline: ask `probe` until it has an answer, waiting
// `everyMs` between asks, through an injected Clock (FakeClock in tests).
import type { Clock } from "./clock.ts";

export interface PollOptions {
  /** Give up once this long has passed since the first ask (the probe is asked at least once, and once more at the deadline). */
  timeoutMs: number;
  /** Wait between asks (0: ask again at once; a probe that blocks paces itself). */
  everyMs: number;
  /** Aborting stops the wait: pollUntil rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
}

/**
 * Ask `probe` until it returns something other than undefined, and return
 * that; undefined when `timeoutMs` passed first (the caller says what that
 * means). A probe that throws ends the poll with its error.
 */
export async function pollUntil<T>(clock: Clock, o: PollOptions, probe: () => Promise<T | undefined> | T | undefined): Promise<T | undefined> {
  const until = clock.monotonic() + o.timeoutMs;
  for (;;) {
    o.signal?.throwIfAborted();
    const answer = await probe();
    if (answer !== undefined) return answer;
    const left = until - clock.monotonic();
    if (left <= 0) return undefined;
    await clock.sleep(Math.min(o.everyMs, left), o.signal);
  }
}
