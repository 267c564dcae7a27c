// place(): where can this VM go, with which VFs, and why not elsewhere.
import type { ClusterSnapshot, PlacementRequest } from "../model/cluster.ts";
import { buildIndex, PlacementIndex } from "./cluster-index.ts";
import { explainDestination, round2, run } from "./engine.ts";
import type { RunResult } from "./engine.ts";
import { PlanState } from "./plan-state.ts";
import { Rejections } from "./rejections.ts";
import { fastRun } from "./fast-path.ts";
import { compileRequest } from "./request.ts";
import type { CompiledRequest } from "./request.ts";
import type { Destination, Placement } from "./types.ts";

export function indexOf(snapshotOrIndex: ClusterSnapshot | PlacementIndex): PlacementIndex {
  return snapshotOrIndex instanceof PlacementIndex ? snapshotOrIndex : buildIndex(snapshotOrIndex);
}

/**
 * Rank destinations for one VM. Pure: the same snapshot and request give the
 * same answer. Pass an index (buildIndex) when placing many VMs on one
 * snapshot; a snapshot is indexed once and the index reused for that object.
 */
export function place(snapshotOrIndex: ClusterSnapshot | PlacementIndex, request: PlacementRequest): Placement {
  const index = indexOf(snapshotOrIndex);
  const opts = request.options ?? {};
  const state = new PlanState(index, opts.reservedVfs);
  const req = compileRequest(index, request.vm, opts);
  return toPlacement(index, req, fastRun(index, state, req) ?? run(index, state, req));
}

export function destinations(index: PlacementIndex, result: RunResult): Destination[] {
  return result.ranked.map((ev, i) => ({
    host: index.names[ev.host]!,
    rank: i + 1,
    score: round2(ev.score),
    complete: ev.missing === 0,
    nics: ev.nics,
    explanation: explainDestination(index, ev, i + 1),
  }));
}

/** Why the VM fits nowhere, in one line. */
export function unplaceableMessage(index: PlacementIndex, req: CompiledRequest, rejected: Rejections): string {
  const vm = req.vm;
  if (req.to === -2) return `host ${req.toName ?? "?"} is not in the cluster`;
  if (req.to >= 0) {
    const r = rejected.get(index.names[req.to]!);
    return `${index.names[req.to]!} cannot take ${vm.name}: ${r ? `${r.code}: ${r.message}` : "no reason recorded"}`;
  }
  if (index.hosts.length === 0) return `no host can take ${vm.name}: the cluster has no hosts`;
  return `no host can take ${vm.name} (${index.hosts.length} hosts): ${rejected.summary()}`;
}

export function toPlacement(index: PlacementIndex, req: CompiledRequest, result: RunResult): Placement {
  const vm = req.vm.uuid;
  const rejected = Rejections.lazy(index.names, index.hostIndex, result, result.explain);
  if (result.ranked.length === 0) {
    return {
      kind: "unplaceable",
      vm,
      revision: index.revision,
      code: req.to === -2 ? "UNKNOWN_HOST" : "NO_HOST",
      message: unplaceableMessage(index, req, rejected),
      eligible: 0,
      rejected,
    };
  }
  return {
    kind: "placed",
    vm,
    revision: index.revision,
    destinations: destinations(index, result),
    // Counted by the filter pass, which the fast path runs only when this is read.
    get eligible() {
      return result.eligible;
    },
    rejected,
  };
}

