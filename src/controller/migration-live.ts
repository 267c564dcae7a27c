// A running migration seen and steered: its live stream (the phases so far
// from the record, then its events, QEMU's progress and `end`), and its
// bandwidth cap and downtime limit changed on the source's QEMU while RAM
// streams (set; force-complete raises the downtime limit).
import { MiB } from "../core/units.ts";
import { FerryError } from "../core/errors.ts";
import type { MigrationRecord } from "../migration/types.ts";
import { isTerminal } from "../migration/types.ts";
import type { MigrationViewT } from "../wire/controller-api.ts";
import type { ControllerEvent } from "../wire/events.ts";
import { phaseTimes } from "../wire/migration-stream.ts";
import type { ForceCompleteViewT, MigrationLimitsViewT, MigrationStreamEvent } from "../wire/migration-stream.ts";
import type { ControllerContext } from "./context.ts";
import type { FeedEvent, MigrationFeed } from "./migration-feed.ts";


/** Force-complete's downtime limit when none is given: at least this, else QEMU's expected downtime and a quarter more. */
export const FORCE_DOWNTIME_MIN_MS = 2_000;

export const NO_POSTCOPY_WHY = "post-copy is not used: it needs the postcopy-ram capability from the migration's start, which Ferry does not set, because QEMU 7.2 cannot post-copy a guest with VFIO devices (the failover NICs' primaries); instead the downtime limit was raised, and QEMU switches over as soon as its expected downtime fits it";

/** The phases a record has been through, oldest first, as stream events. */
export function replayPhases(r: Pick<MigrationRecord, "id" | "timings" | "createdAt">): MigrationStreamEvent[] {
  const phases = phaseTimes(r);
  return phases.map((p, i) => ({ type: "phase", migrationId: r.id, from: i === 0 ? null : phases[i - 1]!.phase, to: p.phase, at: p.startedAt, replayed: true }));
}

function ofMigration(e: ControllerEvent, id: string): e is ControllerEvent & MigrationStreamEvent {
  return "migrationId" in e && e.migrationId === id;
}

export interface LiveDeps {
  c: ControllerContext;
  feed: MigrationFeed;
  get(id: string): Promise<MigrationViewT>;
}

export class MigrationLive {
  readonly #d: LiveDeps;

  constructor(d: LiveDeps) {
    this.#d = d;
  }

  /**
   * Send migration `id`'s stream to `send`: the phases so far, then each of
   * its events as it comes, until `end` (sent once the outcome is settled) or
   * `signal`. Resolves when the stream is over. FERRY_ERR_NOT_FOUND first
   * (nothing sent) for an unknown id.
   */
  async follow(id: string, send: (e: MigrationStreamEvent) => void, signal: AbortSignal): Promise<void> {
    const queue: MigrationStreamEvent[] = [];
    let live = false;
    const told = new Set<string>();
    let ended = false;
    let finish = (): void => undefined;
    const over = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const deliver = (e: MigrationStreamEvent): void => {
      if (ended) return;
      if (e.type === "phase") {
        const k = `${e.to}@${e.at}`;
        if (told.has(k)) return;
        told.add(k);
      }
      send(e);
      if (e.type === "end") {
        ended = true;
        finish();
      }
    };
    const take = (e: MigrationStreamEvent): void => {
      if (live) deliver(e);
      else queue.push(e);
    };
    const offBus = this.#d.c.events.subscribe((e) => {
      if (ofMigration(e, id)) take(e);
    });
    const offFeed = this.#d.feed.subscribe(id, (e: FeedEvent) => take(e));
    const onAbort = (): void => finish();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      const rec = await this.#d.get(id);
      for (const e of replayPhases(rec)) deliver(e);
      // opened after samples were taken (perform may be over by now): QEMU's last figures first, then what comes
      const last = this.#d.feed.lastProgress(id);
      if (last && !queue.includes(last)) deliver(last);
      live = true;
      for (const e of queue.splice(0)) deliver(e);
      if (isTerminal(rec) && rec.settling !== true) deliver({ type: "end", migrationId: id, migration: rec, at: this.#d.c.d.clock.now() });
      if (!signal.aborted) await over;
    } finally {
      offBus();
      offFeed();
      signal.removeEventListener("abort", onAbort);
    }
  }

  async #streaming(id: string, what: string): Promise<MigrationRecord> {
    const r = await this.#d.c.d.store.getMigration(id);
    if (!r) throw new FerryError("FERRY_ERR_NOT_FOUND", `migration ${id} not found: 'ferry migrations' lists the known ones`, { details: { id } });
    if (r.phase !== "perform") {
      const now = isTerminal(r) ? `it has ended (${r.outcome ?? "?"})` : `it is in phase ${r.phase}`;
      throw new FerryError("FERRY_ERR_STATE", `cannot ${what} migration ${id}: ${now}; a migration's bandwidth and downtime limit can be changed while its RAM streams (phase perform) only`, { details: { id, phase: r.phase } });
    }
    return r;
  }

  async #set(r: MigrationRecord, action: "set" | "force-complete", body: { maxBandwidthBytes?: number; downtimeLimitMs?: number }): Promise<MigrationLimitsViewT> {
    const { c } = this.#d;
    const held = await c.agent(r.plan.source.host).setMigrationLimits(r.plan.source.instanceId, body, { timeoutMs: 5_000, signal: c.signal });
    const view = { migrationId: r.id, phase: r.phase, status: held.status, maxBandwidthMiBps: Math.round((held.maxBandwidthBytes / MiB) * 10) / 10, downtimeLimitMs: held.downtimeLimitMs };
    // journaled without a `step`: the coordinator reads only step entries as the phase's answers
    await c.d.store.appendJournal({ migrationId: r.id, phase: r.phase, kind: "result", data: { operator: action, ...body, held }, at: c.d.clock.now() });
    c.events.publish({ type: "tuned", migrationId: r.id, action, maxBandwidthMiBps: view.maxBandwidthMiBps, downtimeLimitMs: view.downtimeLimitMs, at: c.d.clock.now() });
    c.d.log.info({ id: r.id, action, ...body }, "migration limits changed");
    return view;
  }

  /** migrate-set-parameters on the source's QEMU while RAM streams; answers what QEMU holds then. */
  async setLimits(id: string, input: { maxBandwidthMiBps?: number; downtimeLimitMs?: number }): Promise<MigrationLimitsViewT> {
    if (input.maxBandwidthMiBps === undefined && input.downtimeLimitMs === undefined) throw new FerryError("FERRY_ERR_INVALID", "nothing to set: give maxBandwidthMiBps, downtimeLimitMs or both ('ferry migration set ID --max-bandwidth MiB/s --downtime-limit ms')");
    const r = await this.#streaming(id, "tune");
    return this.#set(r, "set", {
      ...(input.maxBandwidthMiBps === undefined ? {} : { maxBandwidthBytes: input.maxBandwidthMiBps * MiB }),
      ...(input.downtimeLimitMs === undefined ? {} : { downtimeLimitMs: input.downtimeLimitMs }),
    });
  }

  /**
   * Make the migration converge now. Post-copy cannot be used (NO_POSTCOPY_WHY):
   * the downtime limit is raised to `downtimeLimitMs`, else to QEMU's expected
   * downtime and a quarter more (at least FORCE_DOWNTIME_MIN_MS).
   */
  async forceComplete(id: string, input: { downtimeLimitMs?: number } = {}): Promise<ForceCompleteViewT> {
    const r = await this.#streaming(id, "force-complete");
    let limit = input.downtimeLimitMs;
    if (limit === undefined) {
      const p = await this.#d.c.agent(r.plan.source.host).migrationProgress(r.plan.source.instanceId, { timeoutMs: 2_000, signal: this.#d.c.signal }).catch(() => undefined);
      limit = Math.max(FORCE_DOWNTIME_MIN_MS, Math.ceil((p?.expectedDowntimeMs ?? 0) * 1.25));
    }
    const view = await this.#set(r, "force-complete", { downtimeLimitMs: limit });
    return { ...view, action: "downtime-limit-raised", why: NO_POSTCOPY_WHY };
  }
}
