// The switch-over's moments as the two agents saw them, and what the
// connectivity gap of a failover NIC breaks down into. Moments are epoch
// milliseconds with microsecond precision (3 decimals): QEMU's own QMP event
// timestamps (wall clock, µs) for what QEMU did, the agent's wall clock for
// Ferry's own actions. The source's and the destination's moments come from
// two hosts' clocks: a figure across them (pausedMs) is only as good as the
// hosts' clock sync (the lab's hosts share one clock).
import { Type } from "typebox";
import type { Static } from "typebox";

const At = (description: string) => Type.Optional(Type.Number({ description }));

/** A failover NIC on the source: the guest released its primary, and Ferry's forwarding moved to the standby (P10). */
export const UnplugMoments = Type.Object({
  nic: Type.String(),
  unpluggedAtMs: Type.Number({ description: "QEMU's UNPLUG_PRIMARY: the guest released the primary (QEMU's timestamp)" }),
  steeredAtMs: At("the source's steer of the guest MAC to the standby finished (agent clock); absent: nothing steered (unmanaged forwarding, no lab bridge) or it failed"),
});
export type UnplugMoments = Static<typeof UnplugMoments>;

/** The source's moments, in its switchover answer. */
export const SourceMoments = Type.Object({
  migrateSentAtMs: At("QMP migrate sent (agent clock)"),
  unplugs: Type.Optional(Type.Array(UnplugMoments, { description: "per failover NIC whose primary the guest released" })),
  stoppedAtMs: At("QEMU's STOP of the source guest (QEMU's timestamp)"),
  continueSentAtMs: At("QMP migrate-continue sent at pre-switchover, once the controller decided (agent clock)"),
});
export type SourceMoments = Static<typeof SourceMoments>;

/** A failover NIC on the destination after the switch-over: its primary back, Ferry's forwarding moved to it (P10). */
export const PrimaryMoments = Type.Object({
  nic: Type.String(),
  backAtMs: Type.Number({ description: "finish saw QEMU's re-plugged primary (agent clock; QEMU is asked every 50 ms)" }),
  steeredAtMs: At("the steer of the guest MAC to the primary finished (agent clock); absent: nothing steered"),
});
export type PrimaryMoments = Static<typeof PrimaryMoments>;

/** The destination's moments, in its finish answer. */
export const DestinationMoments = Type.Object({
  resumedAtMs: At("QEMU's RESUME of the incoming guest (QEMU's timestamp)"),
  steeredAtMs: At("the steer of every NIC to its standby, started at RESUME, finished (agent clock): the forwarding update; absent: nothing steered"),
  primaries: Type.Optional(Type.Array(PrimaryMoments, { description: "per failover NIC whose primary came back" })),
});
export type DestinationMoments = Static<typeof DestinationMoments>;

/** Derived from the moments, where all those needed exist (ms, 3 decimals). */
export const GapBreakdown = Type.Object({
  pausedMs: At("destination RESUME − source STOP: the guest's real pause (QEMU's downtime figure can be shorter); across two hosts' clocks"),
  unplugMs: Type.Optional(Type.Record(Type.String(), Type.Number(), { description: "per failover NIC: UNPLUG_PRIMARY − migrate sent" })),
  unplugSteerMs: Type.Optional(Type.Record(Type.String(), Type.Number(), { description: "per failover NIC: the steer to the standby finished − UNPLUG_PRIMARY" })),
  steerAfterResumeMs: At("the destination's steer finished − RESUME: the forwarding update"),
  primarySteerAfterResumeMs: Type.Optional(Type.Record(Type.String(), Type.Number(), { description: "per failover NIC: the destination's steer to its primary finished − RESUME" })),
  decisionMs: At("migrate-continue sent − STOP: the part of the pause spent deciding at pre-switchover (the source's answer, the destination's check, the controller's switch-over call). The destination QEMU answers its check only once it has loaded the RAM still in flight at the stop: long here with a long precheck phase is a destination behind the source"),
  deviceStateMs: At("destination RESUME − migrate-continue sent: the rest of the pause (QEMU sends the device state, the destination loads it and runs); across two hosts' clocks"),
});
export type GapBreakdown = Static<typeof GapBreakdown>;

/** A migration's switch-over timeline (the record's `switchoverTimeline`). */
export const SwitchoverTimeline = Type.Object({
  source: Type.Optional(SourceMoments),
  destination: Type.Optional(DestinationMoments),
  breakdown: Type.Optional(GapBreakdown),
});
export type SwitchoverTimeline = Static<typeof SwitchoverTimeline>;

/** Epoch ms from a QMP event's timestamp (µs). */
export const msOfUs = (us: number): number => us / 1000;

const ms3 = (x: number): number => Math.round(x * 1000) / 1000;

/** What the moments tell, as far as those needed for each figure exist. */
export function breakdownOf(t: Pick<SwitchoverTimeline, "source" | "destination">): GapBreakdown {
  const s = t.source;
  const d = t.destination;
  const out: GapBreakdown = {};
  if (s?.stoppedAtMs !== undefined && d?.resumedAtMs !== undefined) out.pausedMs = ms3(d.resumedAtMs - s.stoppedAtMs);
  const sent = s?.migrateSentAtMs;
  for (const u of s?.unplugs ?? []) {
    if (sent !== undefined) (out.unplugMs ??= {})[u.nic] = ms3(u.unpluggedAtMs - sent);
    if (u.steeredAtMs !== undefined) (out.unplugSteerMs ??= {})[u.nic] = ms3(u.steeredAtMs - u.unpluggedAtMs);
  }
  if (d?.resumedAtMs !== undefined && d.steeredAtMs !== undefined) out.steerAfterResumeMs = ms3(d.steeredAtMs - d.resumedAtMs);
  for (const p of d?.primaries ?? []) if (d?.resumedAtMs !== undefined && p.steeredAtMs !== undefined) (out.primarySteerAfterResumeMs ??= {})[p.nic] = ms3(p.steeredAtMs - d.resumedAtMs);
  if (s?.continueSentAtMs !== undefined && s.stoppedAtMs !== undefined) out.decisionMs = ms3(s.continueSentAtMs - s.stoppedAtMs);
  if (s?.continueSentAtMs !== undefined && d?.resumedAtMs !== undefined) out.deviceStateMs = ms3(d.resumedAtMs - s.continueSentAtMs);
  return out;
}

/** The timeline with one side's moments (as that side answered them), its breakdown derived again. */
export function withMoments(prev: SwitchoverTimeline | undefined, side: Pick<SwitchoverTimeline, "source" | "destination">): SwitchoverTimeline {
  const next: SwitchoverTimeline = { ...(prev?.source ? { source: prev.source } : {}), ...(prev?.destination ? { destination: prev.destination } : {}), ...side };
  const breakdown = breakdownOf(next);
  return Object.keys(breakdown).length > 0 ? { ...next, breakdown } : next;
}

const fmt = (ms: number): string => `${ms.toFixed(1)} ms`;

/** One line for an operator: the breakdown's figures, or null when there are none. */
export function breakdownText(b: GapBreakdown | undefined): string | null {
  if (!b) return null;
  const parts: string[] = [];
  if (b.pausedMs !== undefined) {
    const split = b.decisionMs !== undefined && b.deviceStateMs !== undefined ? `: ${fmt(b.decisionMs)} deciding at pre-switchover, ${fmt(b.deviceStateMs)} device state and resume` : "";
    parts.push(`guest paused ${fmt(b.pausedMs)} (source STOP → destination RESUME${split})`);
  }
  for (const nic of new Set([...Object.keys(b.unplugMs ?? {}), ...Object.keys(b.unplugSteerMs ?? {})])) {
    const unplug = b.unplugMs?.[nic];
    const steer = b.unplugSteerMs?.[nic];
    const what = [unplug === undefined ? "" : `unplugged ${fmt(unplug)} after migrate`, steer === undefined ? "" : `steered to its standby ${fmt(steer)} after the unplug`];
    parts.push(`${nic} ${what.filter((x) => x !== "").join(", ")}`);
  }
  if (b.steerAfterResumeMs !== undefined) parts.push(`forwarding updated ${fmt(b.steerAfterResumeMs)} after RESUME`);
  for (const [nic, ms] of Object.entries(b.primarySteerAfterResumeMs ?? {})) parts.push(`${nic} back on its primary ${fmt(ms)} after RESUME`);
  return parts.length > 0 ? parts.join("; ") : null;
}
