// Convergence policy of one migration: whether QEMU throttles the guest's
// vCPUs (auto-converge) so that a guest dirtying memory faster than the link
// can send it still reaches the switch-over. Chosen from the source's
// measured dirty rate against the link's bandwidth unless the migration asks
// for one. Pure: the agent measures (calc-dirty-rate) and applies.
import { MiB, mibps } from "../core/units.ts";
import { QEMU_DEFAULT_DOWNTIME_LIMIT_MS } from "./predict.ts";

/** What a migration asks for: "auto" (Ferry's choice from the dirty rate), "off" (QEMU's defaults), "auto-converge" (always throttle). */
export const CONVERGENCE_REQUESTS = ["auto", "off", "auto-converge"] as const;
export type ConvergenceRequest = (typeof CONVERGENCE_REQUESTS)[number];

/**
 * The bandwidth assumed for a migration nobody capped: a 10 Gb/s link. The
 * source cannot know the link before it sends; a cap (maxBandwidthBytes) is
 * the better number when there is one.
 */
export const ASSUMED_LINK_BYTES_PER_S = 1_250_000_000;

/** Dirty rate ÷ bandwidth from which Ferry turns auto-converge on, and from which it throttles harder from the start. */
export const THROTTLE_AT = 0.25;
export const THROTTLE_HARD_AT = 0.75;

export interface ConvergenceChoice {
  requested: ConvergenceRequest;
  /** What the migration runs with. */
  autoConverge: boolean;
  /** QEMU's cpu-throttle-initial / cpu-throttle-increment (percent), when autoConverge. */
  throttleInitial?: number;
  throttleIncrement?: number;
  /** The source's dirty rate before the migration (bytes/s), when measured. */
  dirtyBytesPerS?: number;
  bandwidthBytesPerS: number;
  /** Where bandwidthBytesPerS comes from. */
  bandwidthFrom: "cap" | "assumed";
  /** One sentence for the record: what was chosen and why. */
  reason: string;
  /** The downtime limit QEMU held when RAM converged (ms): Ferry's steps (downtimeLimitAt), the migration's own, or an operator's. */
  downtimeLimitMs?: number;
}


/**
 * Ferry's policy. With "auto": dirty rate ≥ 25 % of the bandwidth turns
 * auto-converge on from 30 %, +20 % a step, ≥ 75 % starts harder (50 %, +25 %):
 * a guest that dirties as fast as the link sends never converges unthrottled,
 * and QEMU raises the throttle one step only every second pass over RAM that
 * still dirtied too much: with its own steps (20 %, +10 %) a 200 MiB/s guest
 * on a 100 MiB/s link was throttled 70 % after 30 s and had not converged
 * (bench/convergence.ts). Below, QEMU runs as it would (auto-converge
 * only ever slows the guest); unmeasured, auto-converge from 30 %, +20 %.
 */
export function chooseConvergence(o: { requested?: ConvergenceRequest; dirtyBytesPerS?: number; maxBandwidthBytes?: number }): ConvergenceChoice {
  const requested = o.requested ?? "auto";
  const bandwidthFrom = o.maxBandwidthBytes === undefined ? "assumed" : "cap";
  const bandwidthBytesPerS = o.maxBandwidthBytes ?? ASSUMED_LINK_BYTES_PER_S;
  const base = { requested, bandwidthBytesPerS, bandwidthFrom, ...(o.dirtyBytesPerS === undefined ? {} : { dirtyBytesPerS: o.dirtyBytesPerS }) } as const;
  const link = `${mibps(bandwidthBytesPerS)} (${bandwidthFrom === "cap" ? "the migration's cap" : "assumed: no cap given"})`;
  if (requested === "off") return { ...base, autoConverge: false, reason: "convergence policy off (asked): QEMU's defaults, no auto-converge" };
  if (requested === "auto-converge") return { ...base, autoConverge: true, throttleInitial: 20, throttleIncrement: 10, reason: "auto-converge (asked): QEMU throttles the vCPUs from 20 %, +10 % a pass, while the guest dirties more than it sends" };
  // unmeasured (QEMU samples for 1 s, and the migration does not wait for it): auto-converge costs a
  // converging guest nothing — QEMU throttles only after two passes in which the guest dirtied more
  // than half of what was sent — and saves one that would not converge
  if (o.dirtyBytesPerS === undefined) return { ...base, autoConverge: true, throttleInitial: 30, throttleIncrement: 20, reason: "auto-converge from 30 %, +20 % a step: the source's dirty rate was not measured in time (QEMU samples for 1 s; the migration does not wait), and QEMU throttles only a guest that dirties more than half of what it sends" };
  const ratio = o.dirtyBytesPerS / bandwidthBytesPerS;
  const rates = `the guest dirties ${mibps(o.dirtyBytesPerS)}, ${(ratio * 100).toFixed(0)} % of the link's ${link}`;
  if (ratio >= THROTTLE_HARD_AT) return { ...base, autoConverge: true, throttleInitial: 50, throttleIncrement: 25, reason: `auto-converge from 50 %, +25 % a step: ${rates} (≥ ${THROTTLE_HARD_AT * 100} %)` };
  if (ratio >= THROTTLE_AT) return { ...base, autoConverge: true, throttleInitial: 30, throttleIncrement: 20, reason: `auto-converge from 30 %, +20 % a step: ${rates} (≥ ${THROTTLE_AT * 100} %)` };
  return { ...base, autoConverge: false, reason: `no auto-converge: ${rates} (< ${THROTTLE_AT * 100} %)` };
}

/**
 * Ferry's downtime limit (QEMU's downtime-limit: the pause QEMU plans for the
 * switch-over) while RAM streams, unless the migration gives one or asks for
 * QEMU's defaults (convergence "off"): it starts at DOWNTIME_START_MS and
 * doubles every DOWNTIME_STEP_MS after the first pass over RAM until
 * DOWNTIME_MAX_MS (QEMU's own default, which every migration had before).
 * QEMU stops the guest as soon as what is left to send fits the limit at the
 * rate it measured — the rate it writes into the socket, higher than what the
 * destination takes in — so with 300 ms from the start half the hops of an
 * idle 256 MiB guest between the lab's hosts (TLS) paused it 230-450 ms, most
 * of it the destination still loading RAM at the switch-over; starting at
 * 50 ms none of 30 did (≤ 108 ms). A guest that converges only at a higher
 * limit gets it after at most three steps, like OpenStack Nova's downtime
 * steps (live_migration_downtime_steps), and auto-converge still throttles.
 */
export const DOWNTIME_START_MS = 50;
/** The last step: QEMU's own default downtime-limit (QEMU_DEFAULT_DOWNTIME_LIMIT_MS). */
export const DOWNTIME_MAX_MS = QEMU_DEFAULT_DOWNTIME_LIMIT_MS;
export const DOWNTIME_STEP_MS = 1_000;

/** The limit `msSinceFirstPass` after the first pass over RAM ended (null: it has not): start, doubled each step, at most max. */
export function downtimeLimitAt(msSinceFirstPass: number | null, o: { startMs?: number; maxMs?: number; stepMs?: number } = {}): number {
  const start = o.startMs ?? DOWNTIME_START_MS;
  const max = Math.max(start, o.maxMs ?? DOWNTIME_MAX_MS);
  if (msSinceFirstPass === null || msSinceFirstPass < 0) return start;
  const steps = Math.floor(msSinceFirstPass / (o.stepMs ?? DOWNTIME_STEP_MS));
  return steps >= 30 ? max : Math.min(max, start * 2 ** steps);
}

/**
 * The outcome of a migration that reached its converge deadline: it did not
 * converge, with the numbers that say why (QEMU's last dirty rate and
 * throughput, and how much was left).
 */
export function notConvergedMessage(o: { convergeMs: number; choice?: ConvergenceChoice; dirtyBytesPerS?: number; sentBytesPerS?: number; remainingBytes?: number; passes?: number; throttlePercent?: number }): string {
  const parts: string[] = [];
  if (o.dirtyBytesPerS !== undefined && o.sentBytesPerS !== undefined) parts.push(`the guest dirtied ${mibps(o.dirtyBytesPerS)} while the migration sent ${mibps(o.sentBytesPerS)}`);
  if (o.remainingBytes !== undefined) parts.push(`${(o.remainingBytes / MiB).toFixed(0)} MiB still to send`);
  if (o.passes !== undefined) parts.push(`${o.passes} passes over RAM`);
  if (o.throttlePercent !== undefined && o.throttlePercent > 0) parts.push(`vCPUs throttled ${o.throttlePercent} %`);
  const measured = o.choice?.dirtyBytesPerS === undefined ? "" : `, chosen at a measured ${mibps(o.choice.dirtyBytesPerS)}`;
  const policy = o.choice === undefined ? "" : ` (policy: ${o.choice.autoConverge ? "auto-converge" : "no auto-converge"}${measured})`;
  const next = o.choice?.autoConverge === true ? "give it a longer converge deadline, more bandwidth, or a quieter moment" : "retry with convergence \"auto-converge\", more bandwidth or a longer converge deadline";
  return `did not converge within ${o.convergeMs} ms${policy}${parts.length > 0 ? `: ${parts.join(", ")}` : ""}; migration cancelled, the guest keeps running on the source; ${next}`;
}
