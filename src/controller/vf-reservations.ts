// VFs promised to a plan before anything else shows them. Between the moment
// the scheduler picks a destination's VFs and the moment they show as taken
// (the migration's record in the store, then its lease on the destination; a
// started VM's lease on its host) another plan could pick them again. So every
// plan that hands out VFs goes through plan() here:
//
//  - its reads (store, agents' inventories) run concurrently with other plans';
//  - then, with no await in between, it is given the reserved VFs and picks:
//    the VFs of every migration not ended (its record's planned destination
//    VFs: not leased yet, or leased, which changes nothing), the VFs other
//    plans hold, and those released since this plan began its reads (their
//    record or lease may have come too late for those reads to see);
//  - what it picked is held until release(), which its caller calls once the
//    record is written or the lease is taken (or it gave up).
//
// The pick and the hold are one synchronous step, so two plans can never pick
// the same VF: the later one sees the earlier one's hold. That is this
// controller's lock over planning, without holding agents' inventory fetches
// one behind the other. Holds live in memory: a controller that takes over
// sees the migrations in flight in the store.
export interface PlanResult<T> {
  value: T;
  /** Ends the hold on the VFs the plan picked (idempotent). */
  release: () => void;
}

export class VfReservations {
  readonly #inFlight: () => Promise<Iterable<string>>;
  /** Increases at each plan's start and each release. */
  #seq = 0;
  readonly #held = new Map<number, readonly string[]>();
  /** Released holds that plans still reading may have missed, by release seq. */
  #released: { seq: number; vfs: readonly string[] }[] = [];
  /** Each plan still reading: the seq it began at. */
  readonly #reading = new Set<number>();

  /** `inFlight`: the VFs (vfKey) planned for migrations whose records are not ended. */
  constructor(inFlight: () => Promise<Iterable<string>>) {
    this.#inFlight = inFlight;
  }

  /**
   * Plan: `read` does the I/O; `pick` (synchronous) gets what it read and the
   * VFs reserved now, and returns its answer and the VFs (vfKey) to hold.
   */
  async plan<R, T>(read: () => Promise<R>, pick: (read: R, reserved: ReadonlySet<string>) => { value: T; hold: readonly string[] }): Promise<PlanResult<T>> {
    const began = ++this.#seq;
    this.#reading.add(began);
    try {
      const [r, inFlight] = await Promise.all([read(), this.#inFlight()]);
      const reserved = new Set(inFlight);
      for (const vfs of this.#held.values()) for (const k of vfs) reserved.add(k);
      for (const x of this.#released) if (x.seq > began) for (const k of x.vfs) reserved.add(k);
      const { value, hold } = pick(r, reserved);
      if (hold.length === 0) return { value, release: () => {} };
      const id = ++this.#seq;
      this.#held.set(id, [...hold]);
      return { value, release: () => this.#release(id) };
    } finally {
      this.#reading.delete(began);
      this.#prune();
    }
  }

  /** The VFs held now (vfKey), for tests and diagnostics. */
  held(): Set<string> {
    return new Set([...this.#held.values()].flat());
  }

  #release(id: number): void {
    const vfs = this.#held.get(id);
    if (vfs === undefined) return;
    this.#held.delete(id);
    if (this.#reading.size > 0) this.#released.push({ seq: ++this.#seq, vfs });
  }

  /** Forget releases that no plan still reading began before. */
  #prune(): void {
    if (this.#reading.size === 0) {
      this.#released = [];
      return;
    }
    const oldest = Math.min(...this.#reading);
    this.#released = this.#released.filter((x) => x.seq > oldest);
  }
}
