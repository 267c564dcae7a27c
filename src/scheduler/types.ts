// What the scheduler answers: plain data (plus the lazily listed rejections),
// never exceptions, for the expected outcomes of placing a VM.
import type { NicMode, NicPolicy } from "../model/vm.ts";
import type { Rejection, RejectionCounts, Rejections } from "./rejections.ts";

export interface VfChoice {
  /** Cluster-wide key (vfKey(host, bdf)), for reservedVfs and leases. */
  readonly key: string;
  readonly bdf: string;
  /** BDF of the parent PF; the failover standby's uplink derives from it. */
  readonly pf: string;
  readonly vendor: string;
  readonly device: string;
  readonly numaNode: number;
  /** VFs of the PF in use once this one is taken (snapshot leases + reservations + this plan), of total. */
  readonly pfUsed: number;
  readonly pfTotal: number;
}

export interface NicAssignment {
  readonly nic: string;
  readonly network: string;
  readonly mode: NicMode;
  readonly policy: NicPolicy;
  /** null: emulated NIC (needs none), or an optional NIC with no VF available. */
  readonly vf: VfChoice | null;
  /** "0000:3b:02.5 on PF 0000:3b:00.0 (…)", "runs on its standby: …", "absent: …", "emulated: no VF needed". */
  readonly note: string;
}

export interface Destination {
  readonly host: string;
  /** 1 = best. */
  readonly rank: number;
  /** 0–100, higher is better; ranks below any host with fewer NICs left without their VF. */
  readonly score: number;
  /** Every NIC that wants a VF has one. */
  readonly complete: boolean;
  /** In the VM's NIC order. */
  readonly nics: readonly NicAssignment[];
  readonly explanation: string;
}

export interface Placed {
  readonly kind: "placed";
  /** VM uuid. */
  readonly vm: string;
  /** Snapshot revision the placement was computed on (for a compare-and-swap commit). */
  readonly revision: number | undefined;
  /** Best first; at most options.limit. */
  readonly destinations: readonly Destination[];
  /** Hosts that can take the VM (ranked or not). */
  readonly eligible: number;
  readonly rejected: Rejections;
}

export type UnplaceableCode = "NO_HOST" | "UNKNOWN_HOST";

export interface Unplaceable {
  readonly kind: "unplaceable";
  readonly vm: string;
  readonly revision: number | undefined;
  readonly code: UnplaceableCode;
  /** "no host can take web-1 (10000 hosts): 9812 NO_VF, 120 HOST_DOWN, …". */
  readonly message: string;
  readonly eligible: 0;
  readonly rejected: Rejections;
}

export type Placement = Placed | Unplaceable;

export interface EvacuatedVm {
  readonly vm: string;
  readonly name: string;
  /** Position in the plan (1 = planned first). */
  readonly order: number;
  readonly destination: Destination;
  /** Other hosts that could also have taken it at that point. */
  readonly alternatives: number;
  readonly rejectedByCode: RejectionCounts;
}

export interface UnplacedVm {
  readonly vm: string;
  readonly name: string;
  readonly order: number;
  readonly code: UnplaceableCode;
  readonly message: string;
  readonly rejectedByCode: RejectionCounts;
  /** Every rejected host with its reason, as it stood when this VM was planned. */
  readonly rejections: readonly Rejection[];
}

export interface EvacuationPlan {
  /** complete: every VM has a destination. */
  readonly kind: "complete" | "partial";
  readonly revision: number | undefined;
  /** How the VMs were ordered, for the operator. */
  readonly order: string;
  readonly placed: readonly EvacuatedVm[];
  readonly unplaced: readonly UnplacedVm[];
  /** VFs this plan promises (vfKey), each to exactly one VM. */
  readonly reservedVfs: readonly string[];
}
