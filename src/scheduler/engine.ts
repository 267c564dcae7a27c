// The placement pass, in three steps:
//  1. filter: every host, cheapest checks first (requested/excluded, source,
//     state, memory, vCPUs, free VF counts per key); a rejected host gets a code
//     byte, a feasible one an upper bound of its rank (optional NICs certainly
//     without a VF, best score it could reach);
//  2. rank: candidates in bound order, the exact VF pick and score only for as
//     many as it takes to be sure of the top `limit` (branch and bound);
//  3. explain: destinations get their explanation now, rejected hosts theirs
//     on demand (Rejections.list()).
// Pure: reads the index and a PlanState, allocates its own scratch arrays.
// The exact pick and score live in score.ts, the explanations in explain.ts.
import { HOST_DOWN, HOST_UP } from "./cluster-index.ts";
import type { PlacementIndex } from "./cluster-index.ts";
import { explainRejection } from "./explain.ts";
import type { PlanState } from "./plan-state.ts";
import { C_EXCLUDED, C_HOST_DOWN, C_HOST_DRAINING, C_NO_MEMORY, C_NO_VCPUS, C_NO_VF, C_NOT_REQUESTED, C_SAME_HOST, CODE_LIST } from "./rejections.ts";
import { freeArray } from "./request.ts";
import type { CompiledRequest } from "./request.ts";
import { evaluate, INV, rankKey, W_NUMA, W_PF } from "./score.ts";
import type { Evaluated } from "./score.ts";

export { explainDestination, round2 } from "./explain.ts";
export { evaluate, rankKey } from "./score.ts";
export type { Evaluated } from "./score.ts";

export interface RunResult {
  readonly codes: Uint8Array;
  /** Rejected hosts per code number (index = code). */
  readonly counts: readonly number[];
  /** Feasible hosts (after the exact pick of the evaluated ones). */
  readonly eligible: number;
  /** Best first, at most req.limit. */
  readonly ranked: readonly Evaluated[];
  /** Hosts that passed the filter but failed the exact pick: why. */
  readonly pickFailures: ReadonlyMap<number, string>;
  readonly explain: (host: number, code: number) => string;
}

// Scratch space for the filter pass, reused across calls: allocating ~150 KB
// of typed arrays per placement at 10,000 hosts makes V8 run full GCs (external
// memory pressure) that cost more than the placement. Safe because run() is
// synchronous and keeps no reference to them once it returns.
let scratch: { feas: Int32Array; ub: Float64Array; seen: Uint8Array } | undefined;

function scratchFor(H: number): NonNullable<typeof scratch> {
  if (scratch === undefined || scratch.feas.length < H) {
    scratch = { feas: new Int32Array(H), ub: new Float64Array(H), seen: new Uint8Array(H) };
  }
  return scratch;
}

// The per-host rejection codes outlive the call (Rejections reads them on
// demand): carve them out of shared slabs rather than one buffer each.
const SLAB_BYTES = 1 << 20;
let slab = new ArrayBuffer(0);
let slabUsed = 0;

function codesFor(H: number): Uint8Array {
  if (slabUsed + H > slab.byteLength) {
    slab = new ArrayBuffer(Math.max(SLAB_BYTES, H));
    slabUsed = 0;
  }
  const codes = new Uint8Array(slab, slabUsed, H);
  slabUsed += H;
  return codes;
}

/** Is candidate a (rank key, host) better than b? */
function better(keyA: number, hA: number, keyB: number, hB: number): boolean {
  return keyA > keyB || (keyA === keyB && hA < hB);
}

/**
 * Step 1: one pass over the hosts; feasible ones go to feas[0..F) with an
 * upper bound of their rank key in ub[]; returns F. Nothing after the loop but
 * the return: V8 compiles the loop on-stack and would otherwise deoptimize on
 * every call at the first statement it never saw run.
 */
function filter(
  index: PlacementIndex,
  state: PlanState,
  req: CompiledRequest,
  dArr: readonly Int32Array[],
  nArr: readonly Int32Array[],
  codes: Uint8Array,
  feas: Int32Array,
  ub: Float64Array,
  counts: number[],
): number {
  const H = index.hosts.length;
  const D = dArr.length;
  const dNeed = Int32Array.from(req.demands, (d) => d.need);
  const { state: hostState } = index;
  const memFreeA = state.memFree;
  const cpuFreeA = state.cpuFree;
  const memNeed = req.vm.memoryMiB;
  const cpuNeed = req.vm.vcpus;
  const excluded = req.excluded;
  const source = req.source;
  let F = 0;
  let lo = 0;
  let hi = H;
  if (req.to !== -1) {
    codes.fill(C_NOT_REQUESTED);
    counts[C_NOT_REQUESTED] = H;
    if (req.to >= 0) {
      codes[req.to] = 0;
      counts[C_NOT_REQUESTED] = H - 1;
      lo = req.to;
      hi = req.to + 1;
    } else hi = 0;
  }
  hosts: for (let h = lo; h < hi; h++) {
    let code = 0;
    if (excluded !== undefined && excluded[h] === 1) code = C_EXCLUDED;
    else if (h === source) code = C_SAME_HOST;
    else {
      const st = hostState[h]!;
      if (st !== HOST_UP) code = st === HOST_DOWN ? C_HOST_DOWN : C_HOST_DRAINING;
    }
    if (code !== 0) {
      codes[h] = code;
      counts[code]!++;
      continue;
    }
    const memFree = memFreeA[h]!;
    if (memFree < memNeed) {
      codes[h] = C_NO_MEMORY;
      counts[C_NO_MEMORY]!++;
      continue;
    }
    const cpuFree = cpuFreeA[h]!;
    if (cpuFree < cpuNeed) {
      codes[h] = C_NO_VCPUS;
      counts[C_NO_VCPUS]!++;
      continue;
    }
    for (let d = 0; d < D; d++) {
      if (dArr[d]![h]! < dNeed[d]!) {
        codes[h] = C_NO_VF;
        counts[C_NO_VF]!++;
        continue hosts;
      }
    }
    feas[F] = h;
    ub[F] = rankBound(index, req, nArr, h, memFree, cpuFree);
    F++;
  }
  return F;
}

/**
 * An upper bound of host h's rank key (same arithmetic as evaluate(), each
 * term >= the exact one), for a host that passed the filter.
 */
export function rankBound(index: PlacementIndex, req: CompiledRequest, nArr: readonly Int32Array[], h: number, memFree: number, cpuFree: number): number {
  const N = index.networks.length;
  const S = index.numaSlots;
  const memNeed = req.vm.memoryMiB;
  const cpuNeed = req.vm.vcpus;
  const vfNics = req.vfNics;
  const V = vfNics.length;
  const numaSlot = req.numaSlot;
  const numaKnown = numaSlot >= 0;
  const { memInv, cpuInv, bestFrac, bestFracNuma } = index;
  const res = 0.5 * ((memFree - memNeed) * memInv[h]! + (cpuFree - cpuNeed) * cpuInv[h]!);
  let bound = 100 * res;
  let miss = 0;
  if (V > 0) {
    let sum = 0;
    let cnt = 0;
    for (let i = 0; i < V; i++) {
      if (!vfNics[i]!.required && nArr[i]![h]! <= 0) {
        miss++;
        continue;
      }
      const hn = h * N + vfNics[i]!.net;
      const bf = bestFrac[hn]!;
      let u = numaKnown ? W_PF * bf + W_NUMA * 0 : W_PF * bf + W_NUMA * 1;
      if (numaKnown) {
        const bfn = bestFracNuma[hn * S + numaSlot]!;
        if (bfn >= 0) {
          const local = W_PF * bfn + W_NUMA * 1;
          if (local > u) u = local;
        }
      }
      sum += u;
      cnt++;
    }
    bound = 100 * (0.5 * res + 0.5 * sum * INV[cnt]!);
  }
  return rankKey(miss, bound);
}

/**
 * Step 1 alone, for a caller that ranked by other means (fast-path.ts): the
 * per-host codes and counts, and how many hosts passed the filter.
 */
export function filterAll(
  index: PlacementIndex,
  state: PlanState,
  req: CompiledRequest,
  dArr: readonly Int32Array[],
  nArr: readonly Int32Array[],
  counts: number[],
): { codes: Uint8Array; feasible: number } {
  const H = index.hosts.length;
  const codes = codesFor(H);
  const { feas, ub } = scratchFor(H);
  return { codes, feasible: filter(index, state, req, dArr, nArr, codes, feas, ub, counts) };
}

export function run(index: PlacementIndex, state: PlanState, req: CompiledRequest): RunResult {
  const H = index.hosts.length;
  const codes = codesFor(H);
  let zeroArr: Int32Array | undefined;
  const zeros = (): Int32Array => (zeroArr ??= new Int32Array(H));
  const dArr = req.demands.map((d) => freeArray(state, d.key, zeros));
  const nArr = req.vfNics.map((v) => freeArray(state, v.key, zeros));
  const { feas, ub, seen } = scratchFor(H);
  const counts = new Array<number>(CODE_LIST.length + 1).fill(0);
  const F = filter(index, state, req, dArr, nArr, codes, feas, ub, counts);
  const pickFailures = new Map<number, string>();
  const { top, failed } = rank(index, state, req, feas, ub, seen, F, codes, pickFailures);
  counts[C_NO_VF]! += failed;
  const explain = (h: number, code: number): string => explainRejection(index, state, req, dArr, h, code, pickFailures);
  return { codes, counts, eligible: F - failed, ranked: top, pickFailures, explain };
}

/**
 * Step 2: exact picks in bound order until no remaining bound can beat the
 * limit-th exact result. Candidates come from a bounded heap (worst at the
 * root) of the m best bounds; if that was not enough, m grows.
 */
function rank(
  index: PlacementIndex,
  state: PlanState,
  req: CompiledRequest,
  feas: Int32Array,
  ub: Float64Array,
  seen: Uint8Array,
  F: number,
  codes: Uint8Array,
  pickFailures: Map<number, string>,
): { top: Evaluated[]; failed: number } {
  const limit = req.limit;
  const top: Evaluated[] = [];
  let failed = 0;
  seen.fill(0, 0, F);
  let m = Math.min(F, Math.max(4 * limit, 32));
  const worse = (p: number, q: number): boolean => better(ub[q]!, feas[q]!, ub[p]!, feas[p]!);
  const beatsTop = (p: number): boolean => {
    if (top.length < limit) return true;
    const t = top[limit - 1]!;
    return better(ub[p]!, feas[p]!, t.key, t.host);
  };
  for (;;) {
    const heap: number[] = [];
    let leftOut = -1;
    let rootKey = Infinity;
    for (let p = 0; p < F; p++) {
      if (seen[p] === 1) continue;
      if (heap.length < m) {
        heap.push(p);
        siftUp(heap, heap.length - 1, worse);
        rootKey = ub[heap[0]!]!;
        continue;
      }
      // Hosts come in index order: an equal key loses to what is already in the heap.
      const k = ub[p]!;
      if (k > rootKey) {
        const out = heap[0]!;
        heap[0] = p;
        siftDown(heap, 0, worse);
        rootKey = ub[heap[0]]!;
        if (leftOut < 0 || worse(leftOut, out)) leftOut = out;
      } else if (leftOut < 0 || k > ub[leftOut]!) leftOut = p;
    }
    heap.sort((a, b) => (worse(b, a) ? -1 : worse(a, b) ? 1 : 0));
    let stopped = false;
    for (const p of heap) {
      if (!beatsTop(p)) {
        stopped = true;
        break;
      }
      seen[p] = 1;
      const h = feas[p]!;
      const ev = evaluate(index, state, req, h);
      if (typeof ev === "string") {
        codes[h] = C_NO_VF;
        pickFailures.set(h, ev);
        failed++;
        continue;
      }
      let i = top.length;
      while (i > 0 && better(ev.key, ev.host, top[i - 1]!.key, top[i - 1]!.host)) i--;
      top.splice(i, 0, ev);
      if (top.length > limit) top.pop();
    }
    if (stopped || leftOut < 0 || !beatsTop(leftOut)) break;
    m *= 4;
  }
  return { top, failed };
}

function siftUp(heap: number[], i: number, worse: (p: number, q: number) => boolean): void {
  // The root is the worst: a node moves up while it is worse than its parent.
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!worse(heap[i]!, heap[parent]!)) return;
    [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
    i = parent;
  }
}

function siftDown(heap: number[], i: number, worse: (p: number, q: number) => boolean): void {
  const n = heap.length;
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let w = i;
    if (l < n && worse(heap[l]!, heap[w]!)) w = l;
    if (r < n && worse(heap[r]!, heap[w]!)) w = r;
    if (w === i) return;
    [heap[i], heap[w]] = [heap[w]!, heap[i]!];
    i = w;
  }
}

