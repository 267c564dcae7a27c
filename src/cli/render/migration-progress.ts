// A migration's live stream as text: the figures of a progress sample
// (percent, rate, ETA), a plain line per event (non-TTY), and the table of
// every phase with its start and duration (the end of `ferry migrate` and
// `ferry migration watch|show`).
import { MiB, mibps } from "../../core/units.ts";
import type { MigrationRecord } from "../../migration/types.ts";
import { phaseTimes } from "../../wire/migration-stream.ts";
import type { MigrationStreamEvent, ProgressStreamEvent } from "../../wire/migration-stream.ts";
import { eventLine } from "./cluster.ts";
import { renderTable } from "./table.ts";


export interface ProgressFigures {
  /** Of guest RAM no longer left to send, 0–100. */
  percent: number;
  /** QEMU's current transfer rate (its mbps, megabits/s), in bytes/s. */
  bytesPerSecond: number;
  /**
   * Seconds until no RAM is left: at the pace `remaining` fell since the
   * previous sample (zero pages cost QEMU almost nothing on the wire, so its
   * rate alone overstates the time), else at QEMU's rate; null while nothing moves.
   */
  etaS: number | null;
}

type Sample = Pick<ProgressStreamEvent, "totalBytes" | "remainingBytes" | "mbps" | "at">;

export function progressFigures(p: Sample, prev?: Sample): ProgressFigures {
  const percent = p.totalBytes > 0 ? Math.min(100, Math.max(0, (1 - p.remainingBytes / p.totalBytes) * 100)) : 0;
  const bytesPerSecond = (p.mbps * 1e6) / 8;
  const fell = prev && p.at > prev.at ? ((prev.remainingBytes - p.remainingBytes) * 1000) / (p.at - prev.at) : 0;
  const pace = fell > 0 ? fell : bytesPerSecond;
  return { percent: Math.round(percent * 10) / 10, bytesPerSecond, etaS: pace > 0 ? Math.ceil(p.remainingBytes / pace) : null };
}

/** The progress samples of the last few seconds: the ETA's pace is taken over them, not between two noisy samples. */
export class PaceWindow {
  readonly #samples: ProgressStreamEvent[] = [];
  readonly #ms: number;

  constructor(ms = 3_000) {
    this.#ms = ms;
  }

  /** Add a sample; answers the oldest one still in the window (undefined for the first). */
  push(e: ProgressStreamEvent): ProgressStreamEvent | undefined {
    while (this.#samples.length > 1 && e.at - this.#samples[0]!.at > this.#ms) this.#samples.shift();
    const oldest = this.#samples[0];
    this.#samples.push(e);
    return oldest;
  }
}

export const mib = (bytes: number): string => (bytes / MiB).toFixed(1);
export const rateText = mibps;
export const etaText = (s: number | null): string => (s === null ? "?" : s < 90 ? `${s} s` : `${Math.round(s / 60)} min`);
const since = (at: number, t0: number): string => `+${((at - t0) / 1000).toFixed(3)} s`;

/** QEMU's own figures after the bar: what is left, the dirty rate, its expected downtime, the pass over RAM. */
export function progressDetail(p: ProgressStreamEvent): string {
  return [
    `${mib(p.transferredBytes)} MiB sent, ${mib(p.remainingBytes)} of ${mib(p.totalBytes)} MiB left`,
    `dirty ${p.dirtyPagesRate} pages/s`,
    ...(p.expectedDowntimeMs === undefined ? [] : [`expected downtime ${p.expectedDowntimeMs} ms`]),
    ...(p.iterations === undefined ? [] : [`iteration ${p.iterations}`]),
  ].join(", ");
}

/**
 * One line for a non-TTY; null for events left out there (a step's start:
 * its phase line says it). `t0`: the migration's start (epoch ms).
 */
export function plainEventLine(e: MigrationStreamEvent, t0: number, prev?: ProgressStreamEvent): string | null {
  switch (e.type) {
    case "phase":
      return `${since(e.at, t0)}  phase ${e.to}${e.replayed === true ? "" : e.event === undefined ? "" : ` (${e.event})`}`;
    case "progress": {
      const f = progressFigures(e, prev);
      return `${since(e.at, t0)}  ${e.phase} ${e.status}: ${f.percent}%, ${rateText(f.bytesPerSecond)}, ETA ${etaText(f.etaS)}; ${progressDetail(e)}`;
    }
    case "end":
      return `${since(e.at, t0)}  ended: ${e.migration.outcome ?? "?"}`;
    case "step":
      return null;
    default:
      return `${since(e.at, t0)}  ${eventLine({ ...e, seq: 0 }).replace(/^\S+ \S+ /, "")}`;
  }
}

/** Every phase the migration went through, in order, with its start (from the migration's start) and how long it took. */
export function renderPhases(r: Pick<MigrationRecord, "timings" | "createdAt">): string {
  return renderTable(["PHASE", "STARTED", "TOOK"], phaseTimes(r).map((p) => [p.phase, since(p.startedAt, r.createdAt), p.ms === undefined ? "-" : `${p.ms} ms`]));
}
