// A placement in words: each destination's paragraph (score, what is left,
// each NIC's device) and, on demand, why a host was rejected.
import type { PlacementIndex } from "./cluster-index.ts";
import type { PlanState } from "./plan-state.ts";
import {
  C_EXCLUDED, C_HOST_DOWN, C_HOST_DRAINING, C_NO_MEMORY, C_NO_VCPUS, C_NO_VF, C_NOT_REQUESTED, C_SAME_HOST, REJECT_CODES, CODE_LIST,
} from "./rejections.ts";
import type { CompiledRequest } from "./request.ts";
import type { Evaluated } from "./score.ts";
import { constraint } from "./score.ts";

function pct(x: number, total: number): string {
  return total > 0 ? `${Math.round((100 * x) / total)}%` : "n/a";
}

/** One paragraph for a destination: score, what is left on the host, each NIC's device. */
export function explainDestination(index: PlacementIndex, ev: Evaluated, rank: number): string {
  const h = ev.host;
  const head =
    `rank ${rank}, score ${round2(ev.score)}` +
    (ev.missing > 0 ? ` (${ev.missing} optional NIC${ev.missing > 1 ? "s" : ""} without a VF: ranked below complete hosts)` : "") +
    `; free after placement: ${ev.memFreeAfter} MiB memory (${pct(ev.memFreeAfter, index.memTotal[h]!)}),` +
    ` ${ev.cpuFreeAfter} vCPUs (${pct(ev.cpuFreeAfter, index.cpuTotal[h]!)})`;
  return [head, ...ev.nics.map((n) => `${n.nic} → ${n.note}`)].join("; ");
}

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

export function explainRejection(
  index: PlacementIndex,
  state: PlanState,
  req: CompiledRequest,
  dArr: readonly Int32Array[],
  h: number,
  code: number,
  pickFailures: ReadonlyMap<number, string>,
): string {
  const vm = req.vm;
  switch (code) {
    case C_NOT_REQUESTED:
      return `not the requested host (to: ${req.to >= 0 ? index.names[req.to]! : "unknown host"})`;
    case C_EXCLUDED:
      return REJECT_CODES.EXCLUDED;
    case C_SAME_HOST:
      return `${vm.name} runs here now; a migration needs another host`;
    case C_HOST_DOWN:
      return REJECT_CODES.HOST_DOWN;
    case C_HOST_DRAINING:
      return REJECT_CODES.HOST_DRAINING;
    case C_NO_MEMORY: {
      const free = state.memFree[h]!;
      const promised = index.memFree[h]! - free;
      return `need ${vm.memoryMiB} MiB, free ${free} MiB` + (promised > 0 ? ` (${promised} MiB promised to earlier placements of this plan)` : "");
    }
    case C_NO_VCPUS: {
      const free = state.cpuFree[h]!;
      const promised = index.cpuFree[h]! - free;
      return `need ${vm.vcpus} vCPUs, free ${free}` + (promised > 0 ? ` (${promised} promised to earlier placements of this plan)` : "");
    }
    case C_NO_VF: {
      const failure = pickFailures.get(h);
      if (failure !== undefined) return failure;
      for (let d = 0; d < req.demands.length; d++) {
        const dem = req.demands[d]!;
        const free = dArr[d]![h]!;
        if (free >= dem.need) continue;
        const base = dem.key >= 0 ? index.keyFree[dem.key]![h]! : 0;
        const s = dem.need > 1 ? "s" : "";
        const c = constraint(dem.vendor, dem.device);
        let msg = `${dem.nics.join(", ")} need${dem.nics.length > 1 ? "" : "s"} ${dem.need} VF${s} on ${dem.network}${c}: ${free} free`;
        if (base > free) msg += ` (${base - free} more promised to other plans)`;
        if (dem.key < 0) msg += c === "" ? `; no VF in the cluster is on ${dem.network}` : `; no VF in the cluster matches ${dem.network}${c}`;
        else if (c !== "") {
          const netKey = index.keyFor(dem.network);
          const netFree = netKey >= 0 ? state.keyFree(netKey)[h]! : 0;
          if (netFree > free) msg += `; ${netFree - free} free on ${dem.network} of other models`;
        }
        return msg;
      }
      return REJECT_CODES.NO_VF;
    }
    default:
      return CODE_LIST[code - 1] ?? "unknown";
  }
}
