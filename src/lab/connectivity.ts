// The lab's connectivity measurement: from the start of a migration the
// fabric's peer probes each NIC's guest address every ≈ 16 ms, and it goes on
// past the migration's end until each NIC has answered steadily for the
// settle window (no outage, i.e. no time of more than `outageMs` without a
// reply, for `settleMs`, and at least `settleMs` past the end), or the
// deadline passes. The result goes into the migration record per NIC:
// probes, lost, the longest gap and the time until stable.
//
// The watch must not stop at the end: an outage can begin only then (the
// lab's bridge once changed its MAC when a migration deleted a guest's tap,
// and guests were unreachable for 25–48 s after the migration had reported
// success with a 150 ms gap).
import { systemClock } from "../core/clock.ts";
import type { ConnectivityWatch, SettleOptions } from "../controller/controller.ts";
import type { Connectivity } from "../migration/types.ts";
import { openFabric, pinPeerNeighbor } from "./fabric.ts";
import { outageAfter, startProbe, steadiness } from "./probe.ts";
import type { Probe } from "./probe.ts";

export interface SettlePolicy {
  /** How long each NIC must answer steadily, at least this long past the migration's end (≥ 5000). */
  settleMs: number;
  /** Past the end, give up waiting for steadiness after this; the NIC's time until stable is then null. */
  deadlineMs: number;
  /** A time of more than this without a reply is an outage. */
  outageMs: number;
}

export const DEFAULT_SETTLE: SettlePolicy = { settleMs: 5_000, deadlineMs: 60_000, outageMs: 100 };

const POLL_MS = 50;

/**
 * The watch runs in the controller, whose event loop is busiest exactly during
 * a migration: busybox's replies, stamped when the controller reads them, came
 * out up to ≈ 200 ms late under load (a 326 ms "gap" where an independent
 * `ping -D` saw 145 ms; a 132 ms outage shrunk to 72 ms by late stamps of the
 * replies before it). iputils' -D stamps each reply in ping itself, as it
 * prints it, and ping runs under SCHED_FIFO (probe.ts), so the stamp is the
 * time the reply came. Asked for 10 ms, iputils 20221126 sends every ≈ 16 ms
 * (its timer ticks at 4 ms); below 10 ms it keeps the interval by spinning at
 * 100 % of a core, which on 2 cores made every switch-over 2–3 times longer.
 */
export const WATCH_PROBE = { pinger: "iputils", intervalMs: 10 } as const;

/** When a NIC's watch may end: steady for settleMs, and settleMs past the end (pure). */
export function settled(replyTimes: readonly number[], o: { from: number; endedAt: number; now: number; policy: SettlePolicy }): { stableSince: number } | undefined {
  if (o.now < o.endedAt + o.policy.settleMs) return undefined;
  const s = steadiness(replyTimes, { from: o.from, now: o.now, outageMs: o.policy.outageMs });
  return s.steadyForMs >= o.policy.settleMs ? { stableSince: s.stableSince } : undefined;
}

export function labConnectivity(fabricName: string, policy: SettlePolicy = DEFAULT_SETTLE): ConnectivityWatch {
  return {
    async start(vm) {
      const fabric = await openFabric(fabricName);
      if (!fabric) throw new Error(`lab fabric ${fabricName} is gone`);
      const probes = new Map<string, Probe>();
      try {
        for (const nic of vm.nics) {
          if (!fabric.networks.some((n) => n.name === nic.network)) continue;
          const ip = nic.address.split("/")[0]!;
          // a VF keeps the guest MAC: pin it on the peer so an ARP retry timer does not decide the gap
          await pinPeerNeighbor(fabric, nic.network, ip, nic.mac);
          probes.set(nic.name, await startProbe({ netns: fabric.netns, target: ip, ...WATCH_PROBE }));
        }
        // the migration starts once each probe runs: its first reply (ping's own start-up takes up to
        // ≈ 100 ms on a busy machine, which would count as an outage at the start). A NIC that does
        // not answer now does not hold the migration back.
        await Promise.all([...probes.values()].map((p) => p.waitReply(0, { timeoutMs: 2_000 }).catch(() => undefined)));
      } catch (e) {
        for (const p of probes.values()) await p.stop().catch(() => undefined);
        throw e;
      }
      return {
        async settle(o: SettleOptions) {
          const out: Record<string, Connectivity> = {};
          const finish = async (nic: string, p: Probe, stableSince: number | null): Promise<void> => {
            const outAfterEndMs = outageAfter(p.replyTimes(), { from: o.from, after: o.endedAt, now: systemClock.now(), outageMs: policy.outageMs });
            const r = await p.stop({ from: o.from });
            out[nic] = {
              probes: r.probes,
              lost: r.lost,
              longestGapMs: Math.round(r.longestGapMs),
              untilStableMs: stableSince === null ? null : Math.max(0, Math.round(stableSince - o.from)),
              endMs: Math.max(0, Math.round(o.endedAt - o.from)),
              watchedMs: Math.round(r.durationMs),
              settleMs: policy.settleMs,
              outageMs: policy.outageMs,
              outAfterEndMs: Math.round(outAfterEndMs),
            };
            probes.delete(nic);
          };
          const until = o.endedAt + policy.deadlineMs;
          while (probes.size > 0) {
            const now = systemClock.now();
            for (const [nic, p] of [...probes]) {
              const s = settled(p.replyTimes(), { from: o.from, endedAt: o.endedAt, now, policy });
              if (s) await finish(nic, p, s.stableSince);
              else if (now >= until || o.signal?.aborted === true) await finish(nic, p, null);
            }
            // aborted: the next round finishes every NIC still watched
            if (probes.size > 0) await systemClock.sleep(POLL_MS, o.signal).catch(() => undefined);
          }
          return out;
        },
      };
    },
  };
}
