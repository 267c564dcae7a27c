// Deadlines compose with AbortSignal.any: nothing waits forever.
import type { Clock } from "./clock.ts";
import { systemClock } from "./clock.ts";
import { FerryError } from "./errors.ts";
import type { ErrorCode } from "./errors.ts";

/** A signal that aborts at the first of: the parent aborting, ms elapsing. */
export function deadline(ms: number, parent?: AbortSignal, clock: Clock = systemClock): AbortSignal {
  const t = clock.timeout(ms);
  return parent ? AbortSignal.any([t, parent]) : t;
}

/**
 * Turn the reason of an aborted signal into a FerryError: a timeout becomes
 * `code` (default FERRY_ERR_TIMEOUT) with `what` in the message; an explicit
 * abort stays FERRY_ERR_ABORTED (or the FerryError it was aborted with).
 */
export function abortError(signal: AbortSignal, what: string, code: ErrorCode = "FERRY_ERR_TIMEOUT"): FerryError {
  const reason: unknown = signal.reason;
  if (reason instanceof FerryError) return reason;
  if (reason instanceof DOMException && reason.name === "TimeoutError") {
    return new FerryError(code, `${what}: deadline exceeded`, { cause: reason });
  }
  return new FerryError("FERRY_ERR_ABORTED", `${what}: aborted`, { cause: reason });
}

/** Race a promise against a signal; the signal's abort becomes a FerryError. */
export async function withSignal<T>(p: Promise<T>, signal: AbortSignal | undefined, what: string, code?: ErrorCode): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) throw abortError(signal, what, code);
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortError(signal, what, code));
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([p, aborted]);
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
  }
}
