// The exact VF pick and score for one host (evaluate), and the scoring both
// it and the filter's upper bound use (weights, rank key). Pure.
import type { PlacementIndex } from "./cluster-index.ts";
import type { PlanState } from "./plan-state.ts";
import type { CompiledRequest } from "./request.ts";
import type { NicAssignment, VfChoice } from "./types.ts";
import { vfKey } from "../model/cluster.ts";

/** Weights of a VF NIC's score: headroom of the chosen PF, and NUMA locality (a local VF on a full PF still beats a remote one on an empty PF, as in the pick). */
export const W_PF = 0.5;
export const W_NUMA = 0.5;
/** 1/n (0 for n = 0), so the bound and the exact score average the same way. */
export const INV = Float64Array.from({ length: 65 }, (_, n) => (n === 0 ? 0 : 1 / n));

export interface Evaluated {
  readonly host: number;
  /** Optional NICs left without a VF. */
  readonly missing: number;
  readonly score: number;
  /** rankKey(missing, score): higher ranks first. */
  readonly key: number;
  readonly nics: readonly NicAssignment[];
  /** Global indexes of the VFs picked. */
  readonly picked: readonly number[];
  readonly memFreeAfter: number;
  readonly cpuFreeAfter: number;
}

/**
 * What ranks a host: its score, but any optional NIC left without a VF costs
 * more than the whole score range, so complete hosts always come first. Ties
 * go to the host that sorts first by name (lower index).
 */
export function rankKey(missing: number, score: number): number {
  return score - 1000 * missing;
}

/** The exact VF pick and score for one host, or why the pick failed. */
export function evaluate(index: PlacementIndex, state: PlanState, req: CompiledRequest, h: number): Evaluated | string {
  const vm = req.vm;
  const numaKnown = vm.numaNode !== undefined && vm.numaNode >= 0;
  const hostName = index.names[h]!;
  const out: (NicAssignment | undefined)[] = new Array<NicAssignment | undefined>(vm.nics.length);
  const picked: number[] = [];
  const native = index.hosts[h]?.vfioMigration;
  const nativeNote = native === undefined ? "" : native.available ? `; native VFIO state migration possible: ${native.reason}` : `; native VFIO state migration unavailable: ${native.reason}`;
  const pickedPf: number[] = [];
  let missing = 0;
  let sum = 0;
  let cnt = 0;
  for (const v of req.vfNics) {
    const nic = v.nic;
    let bestVf = -1;
    let bestPf = -1;
    let bestLocal = false;
    let bestUsed = 0;
    let bestBw = 0;
    for (const pf of index.hostPfs[h]!) {
      if (pf.net !== v.net) continue;
      let vfI = -1;
      for (const i of pf.freeVfs) {
        if (state.reserved.has(i) || picked.includes(i)) continue;
        const vf = index.vfs[i]!;
        if (nic.vendor !== undefined && vf.vendor !== nic.vendor) continue;
        if (nic.device !== undefined && vf.device !== nic.device) continue;
        vfI = i;
        break;
      }
      if (vfI < 0) continue;
      let used = pf.used + (state.pfReserved.get(pf.index) ?? 0);
      for (const q of pickedPf) if (q === pf.index) used++;
      const local = numaKnown && index.vfs[vfI]!.numaNode === vm.numaNode;
      const bw = pf.pf.bandwidthMbps / (used + 1);
      // NUMA-local first, then fewest VFs in use, then most bandwidth per used VF; PFs are in BDF order.
      if (bestVf < 0 || (local && !bestLocal) || (local === bestLocal && (used < bestUsed || (used === bestUsed && bw > bestBw)))) {
        bestVf = vfI;
        bestPf = pf.index;
        bestLocal = local;
        bestUsed = used;
        bestBw = bw;
      }
    }
    if (bestVf >= 0) {
      picked.push(bestVf);
      pickedPf.push(bestPf);
      const pf = index.pfs[bestPf]!;
      const vf = index.vfs[bestVf]!;
      const frac = (pf.total - (bestUsed + 1)) / pf.total;
      sum += W_PF * frac + W_NUMA * (numaKnown ? (bestLocal ? 1 : 0) : 1);
      cnt++;
      const choice: VfChoice = {
        key: vfKey(hostName, vf.bdf),
        bdf: vf.bdf,
        pf: pf.pf.bdf,
        vendor: vf.vendor,
        device: vf.device,
        numaNode: vf.numaNode,
        pfUsed: bestUsed + 1,
        pfTotal: pf.total,
      };
      const numa = numaKnown ? (bestLocal ? `NUMA ${vf.numaNode}, same as the VM` : `NUMA ${vf.numaNode}, VM on ${vm.numaNode}`) : `NUMA ${vf.numaNode}`;
      const note = `${vf.bdf} on PF ${pf.pf.bdf} (${choice.pfUsed}/${pf.total} VFs in use after; ${numa})${nativeNote}`;
      out[v.pos] = { nic: nic.name, network: nic.network, mode: nic.mode, policy: nic.policy, vf: choice, note };
    } else if (v.required) {
      const after = picked.length > 0 ? " after the VFs picked for the VM's other NICs" : "";
      return `${nic.name} (${nic.policy}): no free VF on ${nic.network}${constraint(nic.vendor, nic.device)}${after}`;
    } else {
      missing++;
      const why = `no free VF on ${nic.network}${constraint(nic.vendor, nic.device)}`;
      const note = nic.mode === "failover" ? `runs on its standby: ${why}` : `absent: ${why}`;
      out[v.pos] = { nic: nic.name, network: nic.network, mode: nic.mode, policy: nic.policy, vf: null, note };
    }
  }
  const nics = vm.nics.map(
    (nic, i) => out[i] ?? { nic: nic.name, network: nic.network, mode: nic.mode, policy: nic.policy, vf: null, note: "emulated: no VF needed" },
  );
  const memFreeAfter = state.memFree[h]! - vm.memoryMiB;
  const cpuFreeAfter = state.cpuFree[h]! - vm.vcpus;
  const res = 0.5 * (memFreeAfter * index.memInv[h]! + cpuFreeAfter * index.cpuInv[h]!);
  const score = req.vfNics.length > 0 ? 100 * (0.5 * res + 0.5 * sum * INV[cnt]!) : 100 * res;
  return { host: h, missing, score, key: rankKey(missing, score), nics, picked, memFreeAfter, cpuFreeAfter };
}

export function constraint(vendor: string | undefined, device: string | undefined): string {
  if (vendor === undefined && device === undefined) return "";
  const parts = [vendor === undefined ? "" : `vendor ${vendor}`, device === undefined ? "" : `device ${device}`].filter((p) => p !== "");
  return ` (${parts.join(", ")})`;
}
