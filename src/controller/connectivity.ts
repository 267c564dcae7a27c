// A migration's connectivity as the controller hears of it: the watch a lab
// provides (a peer probing the guest's NICs, src/lab/connectivity.ts), and
// what an operator should be told about the figures it returns.
import type { Connectivity } from "../migration/types.ts";
import type { VmRecord } from "../store/cluster.ts";

/** Watches a VM's NICs from the start of a migration until each answers steadily past its end. */
export interface ConnectivityWatch {
  start(vm: VmRecord): Promise<ConnectivityHandle>;
}

export interface SettleOptions {
  /** Epoch ms the migration started (figures count from then). */
  from: number;
  /** Epoch ms its outcome was decided. */
  endedAt: number;
  /** Aborted: stop now, with the figures so far (a NIC not yet steady: time until stable null). */
  signal?: AbortSignal;
}

export interface ConnectivityHandle {
  /** Watch on until every NIC has answered steadily for the settle window past `endedAt` (or the watch's deadline); each NIC's figures. */
  settle(o: SettleOptions): Promise<Record<string, Connectivity>>;
}

/**
 * A NIC out for longer than this after the migration's end was out *after*
 * the migration (a failover NIC's switchover outage runs ≈ 100–150 ms past
 * the end: Finish deems a primary back once QEMU lists it, the guest passes
 * traffic on it a moment later; a lone ≈ 100 ms stall of a TCG guest on a
 * busy host, seconds later, is not an outage of its network either).
 */
export const LATE_OUTAGE_MS = 1000;

/** What an operator should hear about a NIC's connectivity (pure): not steady in time, or out well after the migration had ended. */
export function connectivityWarnings(c: Readonly<Record<string, Connectivity>>): string[] {
  const out: string[] = [];
  for (const [nic, x] of Object.entries(c)) {
    if (x.untilStableMs === null) {
      out.push(`NIC ${nic} did not answer steadily for ${x.settleMs ?? "?"} ms within the ${x.watchedMs ?? "?"} ms it was watched (longest gap ${x.longestGapMs} ms): check the guest's network ('ferry migration show')`);
    } else if (x.outAfterEndMs !== undefined) {
      if (x.outAfterEndMs > LATE_OUTAGE_MS) {
        const steady = x.untilStableMs !== undefined && x.endMs !== undefined ? `; it answered steadily from ${Math.max(0, x.untilStableMs - x.endMs)} ms after the end` : "";
        out.push(`NIC ${nic} was unreachable for ${x.outAfterEndMs} ms after the migration had ended (longest gap ${x.longestGapMs} ms${steady}): check the guest's network and the switch's ARP/MAC tables`);
      }
    } else if (x.untilStableMs !== undefined && x.endMs !== undefined && x.untilStableMs > x.endMs + LATE_OUTAGE_MS) {
      // a record from before outAfterEndMs: only the time until stable tells
      out.push(`NIC ${nic} was unreachable after the migration had ended: it answered steadily only ${x.untilStableMs - x.endMs} ms after the end (longest gap ${x.longestGapMs} ms)`);
    }
  }
  return out;
}
