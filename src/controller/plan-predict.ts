// A migration plan's prediction per destination (pure): which bandwidth to
// model with — the median throughput of the last completed migrations between
// the two hosts, else the configured default, and never above the source
// instance's bandwidth cap — and the precopy model's answer
// (migration/predict.ts), with what it rests on.
import type { MigrationRecord } from "../migration/types.ts";
import { measuredThroughput, NOT_CONVERGING_ADVICE, predictPrecopy, QEMU_DEFAULT_DOWNTIME_LIMIT_MS } from "../migration/predict.ts";
import type { PlanDirtyRate, PlanPrediction } from "../wire/controller-api.ts";

const MiB = 2 ** 20;
const mibps = (b: number): string => `${(b / MiB).toFixed(0)} MiB/s`;

/**
 * Completed migrations between `a` and `b` (either way): newest first, each
 * with QEMU's total time and the bytes the model would count for it — the
 * guest's RAM, or the data moved when more (extra passes). Zero pages count
 * as moved, as the model counts them: the rate is the pace at which RAM went
 * over, not the wire's.
 */
export function throughputSamples(records: readonly MigrationRecord[], a: string, b: string): { bytes: number; ms: number; id: string }[] {
  return records
    .filter((r) => (r.plan.kind ?? "migration") === "migration" && r.switchover !== null && r.dataMovedBytes !== undefined)
    .filter((r) => (r.plan.source.host === a && r.plan.destination.host === b) || (r.plan.source.host === b && r.plan.destination.host === a))
    .sort((x, y) => y.createdAt - x.createdAt)
    .map((r) => ({ bytes: Math.max(r.dataMovedBytes!, r.plan.vm.memoryMiB * MiB), ms: r.switchover!.totalMs, id: r.id }));
}

export interface PredictionInput {
  source: string;
  host: string;
  ramBytes: number;
  dirty: PlanDirtyRate;
  /** Completed migrations between the two hosts, newest first (throughputSamples). */
  samples: readonly { bytes: number; ms: number }[];
  defaultBandwidthMiBps: number;
  /** The source instance's max-bandwidth now (bytes/s), or the migration's own cap; undefined: unknown. */
  capBytesPerSec?: number;
  downtimeLimitMs?: number;
}

export function predictFor(i: PredictionInput): { prediction: PlanPrediction; warning?: string } {
  const used = i.samples.slice(0, 5);
  const measured = measuredThroughput(used, 5);
  let bandwidth: PlanPrediction["bandwidth"] = measured !== null
    ? { bytesPerSec: measured, source: "measured", detail: `${mibps(measured)}: median pace of the last ${used.length} completed migration(s) between ${i.source} and ${i.host} (guest RAM, or data moved when more, over QEMU's total time)` }
    : { bytesPerSec: i.defaultBandwidthMiBps * MiB, source: "default", detail: `${i.defaultBandwidthMiBps} MiB/s: no completed migration between ${i.source} and ${i.host} to measure it by, the configured default (controller config plan.bandwidthMiBps)` };
  if (i.capBytesPerSec !== undefined && i.capBytesPerSec > 0 && i.capBytesPerSec < bandwidth.bytesPerSec) {
    bandwidth = { bytesPerSec: i.capBytesPerSec, source: "cap", detail: `${mibps(i.capBytesPerSec)}: the migration's bandwidth cap (QEMU max-bandwidth on the source instance), below the link's ${bandwidth.detail}` };
  }
  const downtimeLimitMs = i.downtimeLimitMs ?? QEMU_DEFAULT_DOWNTIME_LIMIT_MS;
  const p = predictPrecopy({ ramBytes: i.ramBytes, bandwidthBytesPerSec: bandwidth.bytesPerSec, dirtyBytesPerSec: i.dirty.MiBps * MiB, downtimeLimitMs });
  const note = `precopy model: all ${(i.ramBytes / MiB).toFixed(0)} MiB of RAM once, then what the guest dirties; zero pages (sent as headers) make a mostly empty guest faster, device state adds to the downtime${i.dirty.measured ? "" : `; dirty rate not measured (${i.dirty.detail}): taken as 0, so a lower bound`}`;
  const base = { host: i.host, bandwidth, downtimeLimitMs, ramBytes: i.ramBytes, note };
  if (p.converges) return { prediction: { ...base, converges: true, durationMs: Math.round(p.durationMs), downtimeMs: Math.round(p.downtimeMs), passes: p.passes } };
  return {
    prediction: { ...base, converges: false, passes: p.passes, reason: p.reason, forcedDowntimeMs: Math.round(p.forcedDowntimeMs) },
    warning: `a migration to ${i.host} will not converge at ${mibps(bandwidth.bytesPerSec)} (${bandwidth.source}): ${p.reason}; forced to complete it would pause the guest ~${Math.round(p.forcedDowntimeMs)} ms; ${NOT_CONVERGING_ADVICE}`,
  };
}
