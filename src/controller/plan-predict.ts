// A migration plan's prediction per destination (pure): which bandwidth to
// model with — the median throughput of the last completed migrations between
// the two hosts, else the configured default, and never above the source
// instance's bandwidth cap — and the precopy model's answer
// (migration/predict.ts), with what it rests on.
import { MiB, mibps } from "../core/units.ts";
import type { MigrationRecord } from "../migration/types.ts";
import { measuredThroughput, NOT_CONVERGING_ADVICE, predictPrecopy, QEMU_DEFAULT_DOWNTIME_LIMIT_MS } from "../migration/predict.ts";
import type { PlanDirtyRate, PlanPrediction } from "../wire/controller-api.ts";


/**
 * Completed migrations between `a` and `b` (either way): newest first, each
 * with QEMU's total time and the bytes the model would count for it — the
 * guest's RAM, or the data moved when more (extra passes). Zero pages count
 * as moved, as the model counts them: the rate is the pace at which RAM went
 * over, not the wire's.
 */
export function throughputSamples(records: readonly MigrationRecord[], a: string, b: string): { bytes: number; ms: number; downtimeMs: number; id: string }[] {
  return betweenHosts(records, a, b)
    .filter((r) => (r.plan.kind ?? "migration") === "migration" && r.dataMovedBytes !== undefined)
    .map((r) => ({ bytes: Math.max(r.dataMovedBytes!, r.plan.vm.memoryMiB * MiB), ms: r.switchover!.totalMs, downtimeMs: r.switchover!.downtimeMs, id: r.id }));
}

/** Migrations between `a` and `b` (either way) that reached their switch-over, newest first. */
export function betweenHosts(records: readonly MigrationRecord[], a: string, b: string): MigrationRecord[] {
  return records
    .filter((r) => r.switchover !== null && ((r.plan.source.host === a && r.plan.destination.host === b) || (r.plan.source.host === b && r.plan.destination.host === a)))
    .sort((x, y) => y.createdAt - x.createdAt);
}

export interface PredictionInput {
  source: string;
  host: string;
  ramBytes: number;
  dirty: PlanDirtyRate;
  /** Completed migrations between the two hosts, newest first (throughputSamples). */
  samples: readonly { bytes: number; ms: number; downtimeMs?: number }[];
  defaultBandwidthMiBps: number;
  /** The source instance's max-bandwidth now (bytes/s), or the migration's own cap; undefined: unknown. */
  capBytesPerSec?: number;
  /** The cap is the migration's own (--max-bandwidth of an evacuation), not the instance's standing one: it applies over a measured pace too. */
  capIsExplicit?: boolean;
  downtimeLimitMs?: number;
}

export function predictFor(i: PredictionInput): { prediction: PlanPrediction; warning?: string } {
  const used = i.samples.slice(0, 5);
  const measured = measuredThroughput(used, 5);
  let bandwidth: PlanPrediction["bandwidth"] = measured !== null
    ? { bytesPerSec: measured, source: "measured", detail: `${mibps(measured)}: median pace of the last ${used.length} completed migration(s) between ${i.source} and ${i.host} (guest RAM, or data moved when more, over QEMU's total time)` }
    : { bytesPerSec: i.defaultBandwidthMiBps * MiB, source: "default", detail: `${i.defaultBandwidthMiBps} MiB/s: no completed migration between ${i.source} and ${i.host} to measure it by, the configured default (controller config plan.bandwidthMiBps)` };
  // a measured pace already ran under the cap (zero pages do not count against it, so it may exceed it); a default does not
  if (i.capBytesPerSec !== undefined && i.capBytesPerSec > 0 && i.capBytesPerSec < bandwidth.bytesPerSec && (measured === null || i.capIsExplicit === true)) {
    bandwidth = { bytesPerSec: i.capBytesPerSec, source: "cap", detail: `${mibps(i.capBytesPerSec)}: the migration's bandwidth cap (QEMU max-bandwidth${i.capIsExplicit === true ? " the migration sets" : " on the source instance"}), below ${bandwidth.detail}` };
  }
  // the switch-over's own cost (device state, stop and start) between these hosts: the median downtime measured, a floor under the model's last pass; for an even count the lower of the two middle values (a floor)
  const downs = used.flatMap((x) => (x.downtimeMs === undefined ? [] : [x.downtimeMs])).sort((a, b) => a - b);
  const floorMs = downs.length === 0 ? undefined : downs[Math.floor((downs.length - 1) / 2)]!;
  const downtimeLimitMs = i.downtimeLimitMs ?? QEMU_DEFAULT_DOWNTIME_LIMIT_MS;
  const p = predictPrecopy({ ramBytes: i.ramBytes, bandwidthBytesPerSec: bandwidth.bytesPerSec, dirtyBytesPerSec: i.dirty.MiBps * MiB, downtimeLimitMs });
  const note = `precopy model: all ${(i.ramBytes / MiB).toFixed(0)} MiB of RAM once, then what the guest dirties; zero pages (sent as headers) make a mostly empty guest faster, device state adds to the downtime (${floorMs === undefined ? "not counted: no migration between these hosts measured it yet" : `the median downtime of the last migrations between these hosts, ${floorMs} ms, is its floor`})${i.dirty.measured ? "" : `; dirty rate not measured (${i.dirty.detail}): taken as 0, so a lower bound`}`;
  const base = { host: i.host, bandwidth, downtimeLimitMs, ramBytes: i.ramBytes, note, ...(floorMs === undefined ? {} : { downtimeFloorMs: floorMs }) };
  if (p.converges) return { prediction: { ...base, converges: true, durationMs: Math.round(p.durationMs), downtimeMs: Math.round(Math.max(p.downtimeMs, floorMs ?? 0)), passes: p.passes } };
  return {
    prediction: { ...base, converges: false, passes: p.passes, reason: p.reason, forcedDowntimeMs: Math.round(p.forcedDowntimeMs) },
    warning: `a migration to ${i.host} will not converge at ${mibps(bandwidth.bytesPerSec)} (${bandwidth.source}): ${p.reason}; forced to complete it would pause the guest ~${Math.round(p.forcedDowntimeMs)} ms; ${NOT_CONVERGING_ADVICE}`,
  };
}
