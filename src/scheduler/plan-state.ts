// What a plan has promised on top of the snapshot: reserved VFs and the memory
// and vCPUs of earlier placements. Copy-on-write over the index's arrays, so
// the filter pass reads the same arrays either way and the index is never
// modified. Private to the scheduler: one is made per place() call (from the
// request's reservedVfs) or per evacuation plan (growing as VMs are placed).
import type { PlacementIndex } from "./cluster-index.ts";

export class PlanState {
  readonly index: PlacementIndex;
  /** Reserved VFs (global indexes) that were free in the snapshot. */
  readonly reserved = new Set<number>();
  /** Reserved VFs per PF. */
  readonly pfReserved = new Map<number, number>();
  /** Free memory and vCPUs per host, net of earlier placements of the plan. */
  memFree: Float64Array;
  cpuFree: Float64Array;
  private readonly keyCopies = new Map<number, Int32Array>();
  private memCopied = false;

  constructor(index: PlacementIndex, reservedVfs?: ReadonlySet<string>) {
    this.index = index;
    this.memFree = index.memFree;
    this.cpuFree = index.cpuFree;
    if (reservedVfs) for (const key of reservedVfs) this.reserve(index.vfByKey(key));
  }

  /** Free VFs per host for a key, net of reservations. */
  keyFree(key: number): Int32Array {
    return this.keyCopies.get(key) ?? this.index.keyFree[key]!;
  }

  /** Promise a VF (global index) to a plan. Unknown (-1), leased or already reserved VFs change nothing. */
  reserve(vf: number): void {
    const index = this.index;
    if (vf < 0 || this.reserved.has(vf) || index.vfs[vf]!.leasedBy !== null) return;
    this.reserved.add(vf);
    const pf = index.vfPf[vf]!;
    this.pfReserved.set(pf, (this.pfReserved.get(pf) ?? 0) + 1);
    const host = index.pfs[pf]!.host;
    for (let j = 0; j < 4; j++) {
      const key = index.vfKeys[4 * vf + j]!;
      let arr = this.keyCopies.get(key);
      if (arr === undefined) {
        arr = index.keyFree[key]!.slice();
        this.keyCopies.set(key, arr);
      }
      arr[host]! -= 1;
    }
  }

  /** Count a placed VM's memory and vCPUs against a host. */
  consume(host: number, memoryMiB: number, vcpus: number): void {
    if (!this.memCopied) {
      this.memFree = this.memFree.slice();
      this.cpuFree = this.cpuFree.slice();
      this.memCopied = true;
    }
    this.memFree[host]! -= memoryMiB;
    this.cpuFree[host]! -= vcpus;
  }
}
