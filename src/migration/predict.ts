// A precopy migration's duration and downtime, predicted from the guest's RAM,
// its measured dirty rate and the migration link's bandwidth (pure: no I/O, no
// clock). The model is QEMU's own loop, simplified: the first pass sends all
// of RAM; each next pass sends the pages dirtied during the previous one; as
// soon as what is left fits in the downtime limit at the link's bandwidth, the
// guest is paused and the rest sent (that last pass is the downtime). When the
// guest dirties memory as fast as the link sends it, the loop never ends.
//
// What it leaves out (say so with the prediction): zero pages (QEMU sends a
// header, not the page: a mostly empty guest moves faster than predicted),
// device state and the switch-over itself (a few ms to tens of ms more
// downtime), and a dirty rate that changes during the migration.

import { median } from "../core/stats.ts";
import { mibps } from "../core/units.ts";

/** QEMU's `downtime-limit` when nobody sets one (ms). */
export const QEMU_DEFAULT_DOWNTIME_LIMIT_MS = 300;
/** Passes modelled before calling it "does not converge in practice". */
export const MAX_PASSES = 1000;

export interface PrecopyInput {
  /** Guest RAM (bytes): what the first pass sends. */
  ramBytes: number;
  /** Bytes per second the migration stream moves (the link, capped by max-bandwidth). */
  bandwidthBytesPerSec: number;
  /** Bytes per second the guest dirties; 0 when idle. */
  dirtyBytesPerSec: number;
  /** QEMU's downtime-limit (ms). */
  downtimeLimitMs?: number;
}

export type PrecopyPrediction =
  | {
    converges: true;
    /** RAM streaming from start to the guest running on the destination (ms). */
    durationMs: number;
    /** The last pass, with the guest paused (ms). */
    downtimeMs: number;
    /** Passes, the last (paused) one included. */
    passes: number;
    /** Bytes sent over all passes. */
    sentBytes: number;
  }
  | {
    converges: false;
    /** Why not, in a sentence. */
    reason: string;
    /** Passes modelled before giving up. */
    passes: number;
    /** What is still left to send after those passes (bytes): with the guest paused, the downtime would be this at the bandwidth. */
    remainingBytes: number;
    /** The downtime if the migration were forced to complete now (remaining / bandwidth, ms). */
    forcedDowntimeMs: number;
  };

function check(name: string, x: number, min: number): void {
  if (!Number.isFinite(x) || x < min) throw new RangeError(`${name} must be a finite number ≥ ${min} (got ${x})`);
}

/** Simulate QEMU's precopy passes; a RangeError for inputs no migration has. */
export function predictPrecopy(i: PrecopyInput): PrecopyPrediction {
  const limitMs = i.downtimeLimitMs ?? QEMU_DEFAULT_DOWNTIME_LIMIT_MS;
  check("ramBytes", i.ramBytes, 0);
  check("bandwidthBytesPerSec", i.bandwidthBytesPerSec, Number.MIN_VALUE);
  check("dirtyBytesPerSec", i.dirtyBytesPerSec, 0);
  check("downtimeLimitMs", limitMs, 0);
  const bw = i.bandwidthBytesPerSec;
  const ms = (bytes: number): number => (bytes / bw) * 1000;
  let remaining = i.ramBytes;
  let elapsed = 0;
  let sent = 0;
  // the first pass always streams (QEMU only stops the guest after a pass, once what is left fits the limit)
  for (let pass = 1; pass <= MAX_PASSES; pass++) {
    const t = ms(remaining);
    if (pass > 1 && t <= limitMs) {
      return { converges: true, durationMs: elapsed + t, downtimeMs: t, passes: pass, sentBytes: sent + remaining };
    }
    elapsed += t;
    sent += remaining;
    // pages dirtied while this pass ran: never more than the whole of RAM
    const next = Math.min(i.ramBytes, i.dirtyBytesPerSec * (t / 1000));
    if (pass > 1 && next >= remaining) {
      return { converges: false, reason: notConverging(i.dirtyBytesPerSec, bw), passes: pass, remainingBytes: next, forcedDowntimeMs: ms(next) };
    }
    remaining = next;
  }
  return { converges: false, reason: `still ${(remaining / 2 ** 20).toFixed(1)} MiB left after ${MAX_PASSES} passes: ${notConverging(i.dirtyBytesPerSec, bw)}`, passes: MAX_PASSES, remainingBytes: remaining, forcedDowntimeMs: ms(remaining) };
}

function notConverging(dirty: number, bw: number): string {
  return dirty >= bw
    ? `the guest dirties memory (${mibps(dirty)}) at least as fast as the link sends it (${mibps(bw)}): each pass leaves as much as it sent`
    : `the guest dirties ${mibps(dirty)} against ${mibps(bw)} sent: what is left never fits the downtime limit`;
}

/** What an operator can do about a migration that will not converge. */
export const NOT_CONVERGING_ADVICE =
  "raise the bandwidth cap ('ferry migration set ID --max-bandwidth MiB/s'), let QEMU throttle the guest (auto-converge), or accept a longer pause ('ferry migration force-complete ID')";

/** Migrations' measured throughput: bytes moved over QEMU's total time, newest first; the median of the last `n`. */
export function measuredThroughput(samples: readonly { bytes: number; ms: number }[], n = 5): number | null {
  const rates = samples.filter((s) => s.bytes > 0 && s.ms > 0).slice(0, n).map((s) => (s.bytes / s.ms) * 1000);
  return rates.length === 0 ? null : median(rates);
}
