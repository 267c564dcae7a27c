// The fast path of place(): the ranked destinations without a pass over every
// host. Once per index, the up hosts are split by shape (memory and vCPU
// totals, so a VM's share of a host is the same for every host of a shape;
// and the set of VF keys (network, vendor, device) with a free VF, so a VM
// that must have such a VF skips the groups without one) and sorted, per
// group, by an upper bound of their rank key that does not depend on the
// request: one order for VMs without VF NICs, one per network and NUMA case
// (that network's best PF headroom, NUMA-local or not). A placement merges the orders of its
// networks, best bound first, runs the filter and the exact pick on hosts as
// they come, and stops once no bound left can beat the limit-th result, so a
// placement at 50,000 hosts looks at a few dozen. The per-host rejection
// codes, their counts and the eligible count come from the same filter pass as
// before, run only when someone reads them.
//
// Taken only when the answer is certainly what engine.run() gives: any host,
// no host can pass the filter and fail the exact pick (each network's
// required NICs share one vendor/device constraint, or every host has one VF
// model per network, as fleets usually do), known networks, few groups. Otherwise (and if a pick fails after all) place() runs the engine.
import { HOST_UP } from "./cluster-index.ts";
import type { PlacementIndex } from "./cluster-index.ts";
import { filterAll, rankBound } from "./engine.ts";
import type { RunResult } from "./engine.ts";
import { explainRejection } from "./explain.ts";
import type { PlanState } from "./plan-state.ts";
import { CODE_LIST } from "./rejections.ts";
import { freeArray } from "./request.ts";
import type { CompiledRequest } from "./request.ts";
import { evaluate, W_NUMA, W_PF } from "./score.ts";
import type { Evaluated } from "./score.ts";

/** More groups than this and the merge costs more than it saves: the engine runs. */
export const MAX_SHAPES = 256;
/** A placement that has looked at this many hosts (and H/VISIT_SHARE) is not finding its top: the engine's one pass is cheaper. */
const VISIT_BUDGET = 2_000;
const VISIT_SHARE = 16;
/** Float slack between a sorted bound and the exact key (both ≈ 0–100). */
const EPS = 1e-7;

interface Order {
  readonly hosts: Int32Array;
  /** 100 × the bound, descending. */
  readonly keys: Float64Array;
}

interface Shape {
  /** VF keys with a free VF on every host of the group (and on no host of it, the others). */
  readonly keys: ReadonlySet<number>;
  readonly memInv: number;
  readonly cpuInv: number;
  /** No VF NIC: 100 × 0.5 × (memory + vCPU free fractions). */
  readonly plain: Order;
  /**
   * [network][numa]: 100 × (0.25 × (fractions) + 0.5 × u), u as the engine's
   * bound for one NIC on that network: numa 0 for a VM on no known node
   * (0.5 × best PF headroom + 0.5), 1 + s for a VM on NUMA slot s.
   */
  readonly byNet: readonly (readonly Order[])[];
}

export interface ShapeIndex {
  readonly shapes: readonly Shape[];
  /**
   * Every up host's free VFs on a network are of one model (vendor, device):
   * a NIC's constraint then matches all of them or none, so the filter's
   * counts decide the exact pick whatever the constraints.
   */
  readonly oneModelPerNetwork: boolean;
  /** Per host, the placement that last looked at it (skip a host met again in another network's order). */
  readonly stamp: Uint32Array;
  epoch: number;
}

function sortedOrder(hosts: readonly number[], key: (h: number) => number): Order {
  const keyed = hosts.map((h) => ({ h, k: key(h) }));
  keyed.sort((a, b) => b.k - a.k || a.h - b.h);
  return { hosts: Int32Array.from(keyed, (x) => x.h), keys: Float64Array.from(keyed, (x) => x.k) };
}

const shapeCache = new WeakMap<PlacementIndex, ShapeIndex | null>();
/**
 * The orders cost a few µs per host to build, the engine's pass ~20 ns per
 * host: an index gets them once it has served this many placements, so a
 * snapshot placed on once (and indexed for it) pays nothing more than before.
 */
export const BUILD_AFTER = 32;
const uses = new WeakMap<PlacementIndex, number>();

/** The per-group orders of an index (built on first call, then reused), or null when it has too many groups. Place() calls it once the index has served BUILD_AFTER placements; call it sooner to have the fast path from the first. */
export function shapeIndex(index: PlacementIndex): ShapeIndex | null {
  let si = shapeCache.get(index);
  if (si === undefined) {
    si = buildShapes(index);
    shapeCache.set(index, si);
  }
  return si;
}

function buildShapes(index: PlacementIndex): ShapeIndex | null {
  const H = index.hosts.length;
  const N = index.networks.length;
  const S = index.numaSlots;
  const { memFree, cpuFree, memInv, cpuInv, bestFrac, bestFracNuma, keyFree } = index;
  const groups = new Map<string, { keys: Set<number>; hosts: number[] }>();
  for (let h = 0; h < H; h++) {
    if (index.state[h] !== HOST_UP) continue;
    const keys: number[] = [];
    for (let k = 0; k < keyFree.length; k++) if (keyFree[k]![h]! > 0) keys.push(k);
    const sig = `${memInv[h]!}/${cpuInv[h]!}/${keys.join(",")}`;
    const g = groups.get(sig);
    if (g) g.hosts.push(h);
    else {
      if (groups.size >= MAX_SHAPES) return null;
      groups.set(sig, { keys: new Set(keys), hosts: [h] });
    }
  }
  const u = (h: number, n: number, mode: number): number => {
    const hn = h * N + n;
    const bf = bestFrac[hn]!;
    if (mode === 0) return W_PF * bf + W_NUMA;
    const bfn = bestFracNuma[hn * S + mode - 1]!;
    return bfn >= 0 ? Math.max(W_PF * bf, W_PF * bfn + W_NUMA) : W_PF * bf;
  };
  const frac = (h: number): number => memFree[h]! * memInv[h]! + cpuFree[h]! * cpuInv[h]!;
  const shapes: Shape[] = [];
  for (const { keys, hosts } of groups.values()) {
    const h0 = hosts[0]!;
    shapes.push({
      keys,
      memInv: memInv[h0]!,
      cpuInv: cpuInv[h0]!,
      plain: sortedOrder(hosts, (h) => 100 * 0.5 * frac(h)),
      byNet: Array.from({ length: N }, (_, n) =>
        Array.from({ length: S + 1 }, (_, mode) => sortedOrder(hosts, (h) => 100 * (0.25 * frac(h) + 0.5 * u(h, n, mode)))),
      ),
    });
  }
  return { shapes, oneModelPerNetwork: oneModelPerNetwork(index), stamp: new Uint32Array(H), epoch: 0 };
}

function oneModelPerNetwork(index: PlacementIndex): boolean {
  for (let h = 0; h < index.hosts.length; h++) {
    if (index.state[h] !== HOST_UP) continue;
    const model = new Map<number, string>();
    for (const pf of index.hostPfs[h]!) {
      for (const i of pf.freeVfs) {
        const vf = index.vfs[i]!;
        const m = `${vf.vendor}\u0000${vf.device}`;
        const seen = model.get(pf.net);
        if (seen === undefined) model.set(pf.net, m);
        else if (seen !== m) return false;
      }
    }
  }
  return true;
}

/** Can the fast path answer this request exactly? */
export function fastPathApplies(req: CompiledRequest, oneModel: boolean): boolean {
  if (req.to !== -1) return false;
  if (!(req.vm.memoryMiB >= 0 && req.vm.vcpus >= 0)) return false;
  if (req.vfNics.length > 64) return false;
  const constraintByNet = new Map<number, string>();
  for (const v of req.vfNics) {
    if (v.net < 0) return false;
    if (!v.required || oneModel) continue;
    const c = `${v.nic.vendor ?? ""}\u0000${v.nic.device ?? ""}`;
    const seen = constraintByNet.get(v.net);
    if (seen !== undefined && seen !== c) return false;
    constraintByNet.set(v.net, c);
  }
  return true;
}

/**
 * One group's walk: a cursor per network of the request (or one, without VF
 * NICs) in that group's orders. Every list holds every host of the group, so
 * a host not met yet has, in each list, a key no higher than that list's head:
 * its bound is at most the NIC-weighted average of the heads (the engine's
 * bound averages over the NICs), or, if an optional NIC is left without a VF,
 * the highest head less the 1000 that rankKey takes per missing NIC.
 */
interface Walk {
  readonly orders: readonly Order[];
  readonly weights: readonly number[];
  readonly pos: number[];
  /** The VM's share of a host of this group, in key units. */
  readonly less: number;
  /** Best bound a host not met yet in this group can have. */
  threshold: number;
}

function threshold(w: Walk): number {
  let avg = 0;
  let max = -Infinity;
  let total = 0;
  for (let i = 0; i < w.orders.length; i++) {
    const k = w.orders[i]!.keys[w.pos[i]!]!;
    avg += w.weights[i]! * k;
    total += w.weights[i]!;
    if (k > max) max = k;
  }
  return Math.max(avg / total, max - 1000) - w.less;
}

/**
 * The fast path, or undefined when it does not apply (or an exact pick failed,
 * which the conditions rule out): the caller then runs the engine.
 */
export function fastRun(index: PlacementIndex, state: PlanState, req: CompiledRequest): RunResult | undefined {
  if (!shapeCache.has(index)) {
    const n = (uses.get(index) ?? 0) + 1;
    uses.set(index, n);
    if (n < BUILD_AFTER) return undefined;
  }
  const si = shapeIndex(index);
  if (si === null || !fastPathApplies(req, si.oneModelPerNetwork)) return undefined;
  const H = index.hosts.length;
  const vm = req.vm;
  const memNeed = vm.memoryMiB;
  const cpuNeed = vm.vcpus;
  const V = req.vfNics.length;
  let zeroArr: Int32Array | undefined;
  const zeros = (): Int32Array => (zeroArr ??= new Int32Array(H));
  const dArr = req.demands.map((d) => freeArray(state, d.key, zeros));
  const dNeed = req.demands.map((d) => d.need);
  const nArr = req.vfNics.map((v) => freeArray(state, v.key, zeros));

  // One walk per group that can have every required VF; NICs weighted per network.
  const perNet = new Map<number, number>();
  for (const v of req.vfNics) perNet.set(v.net, (perNet.get(v.net) ?? 0) + 1);
  const mode = req.numaSlot >= 0 ? 1 + req.numaSlot : 0;
  const heap: Walk[] = [];
  groups: for (const sh of si.shapes) {
    if (sh.plain.hosts.length === 0) continue;
    for (const d of req.demands) if (!sh.keys.has(d.key)) continue groups;
    const need = memNeed * sh.memInv + cpuNeed * sh.cpuInv;
    const w: Walk =
      V === 0
        ? { orders: [sh.plain], weights: [1], pos: [0], less: 100 * 0.5 * need, threshold: 0 }
        : {
            orders: [...perNet.keys()].map((n) => sh.byNet[n]![mode]!),
            weights: [...perNet.values()],
            pos: [...perNet.keys()].map(() => 0),
            less: 100 * 0.25 * need,
            threshold: 0,
          };
    w.threshold = threshold(w);
    heap.push(w);
  }
  for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(heap, i);
  const budget = Math.max(VISIT_BUDGET, Math.ceil(H / VISIT_SHARE));
  let visits = 0;

  si.epoch = (si.epoch + 1) >>> 0;
  if (si.epoch === 0) {
    si.stamp.fill(0);
    si.epoch = 1;
  }
  const epoch = si.epoch;
  const stamp = si.stamp;
  const limit = req.limit;
  const top: Evaluated[] = [];
  const memFreeA = state.memFree;
  const cpuFreeA = state.cpuFree;
  const excluded = req.excluded;

  for (;;) {
    if (heap.length === 0) break;
    const w = heap[0]!;
    if (top.length >= limit && w.threshold + EPS < top[limit - 1]!.key) break;
    // Advance the list with the highest head: that lowers the threshold most.
    let li = 0;
    for (let i = 1; i < w.orders.length; i++) if (w.orders[i]!.keys[w.pos[i]!]! > w.orders[li]!.keys[w.pos[li]!]!) li = i;
    const h = w.orders[li]!.hosts[w.pos[li]!]!;
    w.pos[li]!++;
    if (w.pos[li]! >= w.orders[li]!.hosts.length) {
      // That list is done, so is every host of the group.
      const last = heap.pop()!;
      if (heap.length > 0 && last !== w) heap[0] = last;
    } else w.threshold = threshold(w);
    if (heap.length > 0) siftDown(heap, 0);
    if (stamp[h] === epoch) continue;
    stamp[h] = epoch;
    if (++visits > budget) return undefined;
    // The filter, as engine's (state is up by construction of the orders).
    if (excluded !== undefined && excluded[h] === 1) continue;
    if (h === req.source) continue;
    const memFree = memFreeA[h]!;
    if (memFree < memNeed) continue;
    const cpuFree = cpuFreeA[h]!;
    if (cpuFree < cpuNeed) continue;
    let ok = true;
    for (let d = 0; d < dArr.length; d++) {
      if (dArr[d]![h]! < dNeed[d]!) {
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    // The engine's bound: skip the exact pick when it cannot enter the top.
    const ub = rankBound(index, req, nArr, h, memFree, cpuFree);
    if (top.length >= limit) {
      const t = top[limit - 1]!;
      if (!(ub > t.key || (ub === t.key && h < t.host))) continue;
    }
    const ev = evaluate(index, state, req, h);
    if (typeof ev === "string") return undefined;
    let i = top.length;
    while (i > 0 && (ev.key > top[i - 1]!.key || (ev.key === top[i - 1]!.key && ev.host < top[i - 1]!.host))) i--;
    top.splice(i, 0, ev);
    if (top.length > limit) top.pop();
  }

  // Codes, counts and the eligible count: the engine's filter pass, on first read.
  let full: { codes: Uint8Array; counts: number[]; eligible: number } | undefined;
  const all = (): NonNullable<typeof full> => {
    if (full === undefined) {
      const counts = new Array<number>(CODE_LIST.length + 1).fill(0);
      const { codes, feasible } = filterAll(index, state, req, dArr, nArr, counts);
      full = { codes, counts, eligible: feasible };
    }
    return full;
  };
  const pickFailures = new Map<number, string>();
  return {
    get codes() {
      return all().codes;
    },
    get counts() {
      return all().counts;
    },
    get eligible() {
      return all().eligible;
    },
    ranked: top,
    pickFailures,
    explain: (h: number, code: number): string => explainRejection(index, state, req, dArr, h, code, pickFailures),
  };
}

function siftDown(heap: Walk[], i: number): void {
  const n = heap.length;
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let w = i;
    if (l < n && heap[l]!.threshold > heap[w]!.threshold) w = l;
    if (r < n && heap[r]!.threshold > heap[w]!.threshold) w = r;
    if (w === i) return;
    const t = heap[i]!;
    heap[i] = heap[w]!;
    heap[w] = t;
    i = w;
  }
}
