// A placement request compiled against an index: NICs resolved to key ids and
// network ids, VF demands grouped for the filter pass, the pick order fixed.
import type { PlacementNic, PlacementVm } from "../model/cluster.ts";
import type { PlacementIndex } from "./cluster-index.ts";
import type { PlanState } from "./plan-state.ts";

/** Required VFs of one (network, vendor, device) key, checked per host in the filter pass. */
export interface Demand {
  readonly key: number;
  readonly need: number;
  /** "net0 (mandatory)", for messages. */
  readonly nics: readonly string[];
  readonly network: string;
  readonly vendor: string | undefined;
  readonly device: string | undefined;
}

/** A NIC that wants a VF, as the pick and the bound see it. */
export interface VfNic {
  /** Position in vm.nics. */
  readonly pos: number;
  readonly nic: PlacementNic;
  readonly required: boolean;
  /** -1: the network is unknown to the fleet. */
  readonly net: number;
  /** -1: no VF in the fleet matches network + vendor + device. */
  readonly key: number;
}

export interface CompiledRequest {
  readonly vm: PlacementVm;
  /** Host index of the VM's current host, or -1. */
  readonly source: number;
  /** Host index of options.to; -1: any host; -2: options.to names no known host. */
  readonly to: number;
  readonly toName: string | undefined;
  readonly excluded: Uint8Array | undefined;
  readonly demands: readonly Demand[];
  /** In pick order: required before optional; most constrained first; then NIC order. */
  readonly vfNics: readonly VfNic[];
  /** Slot in bestFracNuma for the VM's NUMA node; -1: VM's node unknown; -2: known but beyond the tracked slots. */
  readonly numaSlot: number;
  readonly limit: number;
}

export function isRequired(nic: PlacementNic): boolean {
  return nic.policy !== "optional";
}

export function needsVf(nic: PlacementNic): boolean {
  return nic.mode !== "emulated";
}

function specificity(nic: PlacementNic): number {
  return (nic.vendor === undefined ? 1 : 0) + (nic.device === undefined ? 1 : 0);
}

export function compileRequest(
  index: PlacementIndex,
  vm: PlacementVm,
  opts: { to?: string; exclude?: readonly string[]; limit?: number },
): CompiledRequest {
  let excluded: Uint8Array | undefined;
  for (const name of opts.exclude ?? []) {
    const h = index.hostIndex.get(name);
    if (h === undefined) continue;
    excluded ??= new Uint8Array(index.hosts.length);
    excluded[h] = 1;
  }
  const to = opts.to === undefined ? -1 : (index.hostIndex.get(opts.to) ?? -2);

  const vfNics: VfNic[] = [];
  vm.nics.forEach((nic, pos) => {
    if (!needsVf(nic)) return;
    vfNics.push({
      pos,
      nic,
      required: isRequired(nic),
      net: index.networkIndex.get(nic.network) ?? -1,
      key: index.keyFor(nic.network, nic.vendor, nic.device),
    });
  });
  vfNics.sort((a, b) => Number(b.required) - Number(a.required) || specificity(a.nic) - specificity(b.nic) || a.pos - b.pos);

  // Required VFs grouped by key; plus the whole network when several keys share it.
  const byKey = new Map<string, { key: number; nics: string[]; nic: PlacementNic }>();
  for (const v of vfNics) {
    if (!v.required) continue;
    const k = `${v.nic.network}\u0000${v.nic.vendor ?? ""}\u0000${v.nic.device ?? ""}`;
    const g = byKey.get(k);
    const label = `${v.nic.name} (${v.nic.policy})`;
    if (g) g.nics.push(label);
    else byKey.set(k, { key: v.key, nics: [label], nic: v.nic });
  }
  const demands: Demand[] = [];
  const perNetwork = new Map<string, string[]>();
  for (const g of byKey.values()) {
    demands.push({ key: g.key, need: g.nics.length, nics: g.nics, network: g.nic.network, vendor: g.nic.vendor, device: g.nic.device });
    const list = perNetwork.get(g.nic.network) ?? [];
    list.push(...g.nics);
    perNetwork.set(g.nic.network, list);
  }
  for (const [network, nics] of perNetwork) {
    const groups = demands.filter((d) => d.network === network);
    if (groups.length < 2) continue;
    demands.push({ key: index.keyFor(network), need: nics.length, nics, network, vendor: undefined, device: undefined });
  }

  const numa = vm.numaNode;
  const numaSlot = numa === undefined || numa < 0 ? -1 : numa < index.numaSlots ? numa : -2;
  const limit = Math.max(1, Math.floor(opts.limit ?? 5));
  return { vm, source: index.hostIndex.get(vm.host) ?? -1, to, toName: opts.to, excluded, demands, vfNics, numaSlot, limit };
}

/** Free VFs per host for a key under a plan state; all zero for key -1. */
export function freeArray(state: PlanState, key: number, zeros: () => Int32Array): Int32Array {
  return key < 0 ? zeros() : state.keyFree(key);
}
