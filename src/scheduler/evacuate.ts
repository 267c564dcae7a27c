// planEvacuation(): place all VMs of a draining host as one plan. VMs are
// placed one after the other, biggest first (hardest to fit while the most
// room is left); each placement promises its VFs, memory and vCPUs to the plan
// so no later VM is given the same VF or the same room. A VM that fits nowhere
// is reported with every host's reason, as it stood at its turn.
import type { ClusterSnapshot, PlacementVm } from "../model/cluster.ts";
import { vfKey } from "../model/cluster.ts";
import type { PlacementIndex } from "./cluster-index.ts";
import { run } from "./engine.ts";
import { indexOf, destinations, unplaceableMessage } from "./place.ts";
import { PlanState } from "./plan-state.ts";
import { Rejections } from "./rejections.ts";
import { compileRequest, needsVf } from "./request.ts";
import type { EvacuatedVm, EvacuationPlan, UnplacedVm } from "./types.ts";

export interface EvacuationOptions {
  /** Never these hosts. */
  readonly exclude?: readonly string[];
  /** VFs already promised to other plans (vfKey). */
  readonly reservedVfs?: ReadonlySet<string>;
}

export const EVACUATION_ORDER = "biggest first: memory, then vCPUs, then NICs that need a VF, then name";

function biggestFirst(a: PlacementVm, b: PlacementVm): number {
  return (
    b.memoryMiB - a.memoryMiB ||
    b.vcpus - a.vcpus ||
    b.nics.filter(needsVf).length - a.nics.filter(needsVf).length ||
    (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) ||
    (a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0)
  );
}

export function planEvacuation(
  snapshotOrIndex: ClusterSnapshot | PlacementIndex,
  vms: readonly PlacementVm[],
  options: EvacuationOptions = {},
): EvacuationPlan {
  const index = indexOf(snapshotOrIndex);
  const state = new PlanState(index, options.reservedVfs);
  const ordered = [...vms].sort(biggestFirst);
  const placed: EvacuatedVm[] = [];
  const unplaced: UnplacedVm[] = [];
  const promised: string[] = [];
  ordered.forEach((vm, i) => {
    const req = compileRequest(index, vm, { exclude: options.exclude, limit: 1 });
    const result = run(index, state, req);
    const rejected = Rejections.lazy(index.names, index.hostIndex, result, result.explain);
    const best = result.ranked[0];
    if (best === undefined) {
      // List the reasons now: the plan state changes with the next VM.
      unplaced.push({
        vm: vm.uuid,
        name: vm.name,
        order: i + 1,
        code: "NO_HOST",
        message: unplaceableMessage(index, req, rejected),
        rejectedByCode: rejected.byCode,
        rejections: rejected.list(),
      });
      return;
    }
    const destination = destinations(index, result)[0]!;
    for (const vf of best.picked) {
      state.reserve(vf);
      promised.push(vfKey(index.names[best.host]!, index.vfs[vf]!.bdf));
    }
    state.consume(best.host, vm.memoryMiB, vm.vcpus);
    placed.push({
      vm: vm.uuid,
      name: vm.name,
      order: i + 1,
      destination,
      alternatives: result.eligible - 1,
      rejectedByCode: rejected.byCode,
    });
  });
  return {
    kind: unplaced.length === 0 ? "complete" : "partial",
    revision: index.revision,
    order: EVACUATION_ORDER,
    placed,
    unplaced,
    reservedVfs: promised,
  };
}
