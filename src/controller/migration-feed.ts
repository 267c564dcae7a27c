// What a migration's live stream gets besides the event bus: QEMU's RAM
// progress, sampled from the source's agent every ~250 ms while the migration
// is in perform (in memory only: not numbered, not written to the event log),
// and `end` once the controller has settled the migration's outcome.
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { MigrationProgress } from "../wire/instance-ops.ts";
import type { EndStreamEvent, ProgressStreamEvent } from "../wire/migration-stream.ts";

export type FeedEvent = ProgressStreamEvent | EndStreamEvent;

/** How often progress is sampled while perform runs. */
export const PROGRESS_EVERY_MS = 250;

export class MigrationFeed {
  readonly #subs = new Map<string, Set<(e: FeedEvent) => void>>();
  readonly #tickers = new Map<string, AbortController>();
  /** Each ticking migration's sampler, for the one last sample when perform ends. */
  readonly #samplers = new Map<string, (signal: AbortSignal) => Promise<MigrationProgress | undefined>>();
  /** The newest progress sample of each migration not ended: a stream opened after perform still gets QEMU's last figures. */
  readonly #last = new Map<string, ProgressStreamEvent>();
  readonly #clock: Clock;
  readonly #log: Logger;

  constructor(o: { clock: Clock; log: Logger }) {
    this.#clock = o.clock;
    this.#log = o.log;
  }

  subscribe(id: string, fn: (e: FeedEvent) => void): () => void {
    let set = this.#subs.get(id);
    if (!set) {
      set = new Set();
      this.#subs.set(id, set);
    }
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.#subs.get(id) === set) this.#subs.delete(id);
    };
  }

  publish(e: FeedEvent): void {
    if (e.type === "progress") this.#last.set(e.migrationId, e);
    else this.#last.delete(e.migrationId);
    for (const fn of this.#subs.get(e.migrationId) ?? []) fn(e);
  }

  /**
   * Sample `sample` every PROGRESS_EVERY_MS until stop(id) (or `signal`); a
   * sample that fails or times out is skipped, the next one is tried.
   */
  tick(id: string, sample: (signal: AbortSignal) => Promise<MigrationProgress | undefined>, signal: AbortSignal): void {
    if (this.#tickers.has(id)) return;
    const ctl = new AbortController();
    this.#tickers.set(id, ctl);
    this.#samplers.set(id, sample);
    const stop = AbortSignal.any([ctl.signal, signal]);
    void (async () => {
      while (!stop.aborted) {
        const p = await sample(AbortSignal.any([stop, this.#clock.timeout(1_000)])).catch(() => undefined);
        if (p && !stop.aborted) this.publish({ ...p, type: "progress", migrationId: id, phase: "perform", at: this.#clock.now() });
        await this.#clock.sleep(PROGRESS_EVERY_MS, stop).catch(() => undefined);
      }
    })()
      .catch((e: unknown) => this.#log.warn({ err: e, id }, "migration progress sampling stopped"))
      .finally(() => {
        if (this.#tickers.get(id) === ctl) this.#tickers.delete(id);
      });
  }

  /** The newest progress sample of a migration that has not ended, if any was taken. */
  lastProgress(id: string): ProgressStreamEvent | undefined {
    return this.#last.get(id);
  }

  /**
   * Perform is over: stop ticking and take one last sample (QEMU holds the
   * stream's totals at pre-switchover). A RAM copy shorter than the tick
   * (≈ 250 ms, after a primary's unplug) was otherwise never sampled with
   * its totals (CI: the dashboard's chart had 0 samples). Not published once
   * the migration has ended (stop()).
   */
  finishPerform(id: string): void {
    const sample = this.#samplers.get(id);
    this.#tickers.get(id)?.abort();
    this.#tickers.delete(id);
    if (!sample) return;
    void sample(this.#clock.timeout(1_000))
      .then((p) => {
        if (p && this.#samplers.get(id) === sample) this.publish({ ...p, type: "progress", migrationId: id, phase: "perform", at: this.#clock.now() });
      })
      .catch(() => undefined)
      .finally(() => {
        if (this.#samplers.get(id) === sample) this.#samplers.delete(id);
      });
  }

  stop(id: string): void {
    this.#samplers.delete(id);
    this.#tickers.get(id)?.abort();
    this.#tickers.delete(id);
  }

  stopAll(): void {
    for (const id of [...this.#tickers.keys()]) this.stop(id);
    this.#samplers.clear();
    this.#last.clear();
  }
}
