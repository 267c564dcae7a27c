// The controller's event stream: coordinator events (phases, outcomes, NIC
// degradation, step retries) and host liveness, each with a sequence number.
// The last `capacity` are kept in memory; with an EventLog (the controller's
// SQLite file) every event is also written down, so history and sequence
// numbers survive a controller restart. Subscribers get every event after
// they subscribe. The SSE route replays, then follows.
import type { EventLog } from "../model/events.ts";
import type { ControllerEvent, ControllerEventInput } from "../wire/events.ts";

export class EventBus {
  readonly #buffer: ControllerEvent[] = [];
  readonly #subs = new Set<(e: ControllerEvent) => void>();
  readonly #capacity: number;
  readonly #log: EventLog<ControllerEvent> | undefined;
  readonly #onLogError: (e: unknown) => void;
  #seq: number;

  constructor(capacity = 2000, o: { log?: EventLog<ControllerEvent>; onLogError?: (e: unknown) => void } = {}) {
    this.#capacity = capacity;
    this.#log = o.log;
    this.#onLogError = o.onLogError ?? (() => undefined);
    this.#seq = o.log?.lastSeq() ?? 0;
  }

  publish(e: ControllerEventInput): ControllerEvent {
    // the log's last number may have moved on: another controller (etcd: a leader before this one) wrote after this bus began
    this.#seq = Math.max(this.#seq, this.#lastLogged());
    const ev: ControllerEvent = { ...e, seq: ++this.#seq };
    this.#buffer.push(ev);
    if (this.#buffer.length > this.#capacity) this.#buffer.shift();
    try {
      this.#log?.append(ev);
    } catch (err) {
      this.#onLogError(err); // history is best effort: never fail a migration step over it
    }
    for (const s of this.#subs) s(ev);
    return ev;
  }

  #lastLogged(): number {
    try {
      return this.#log?.lastSeq() ?? 0;
    } catch (err) {
      this.#onLogError(err);
      return 0;
    }
  }

  /** Events with seq > after: from the log when there is one (also those from before a restart), else the memory buffer. */
  since(after = 0): ControllerEvent[] {
    if (this.#log) {
      try {
        return this.#log.since(after, this.#capacity);
      } catch (err) {
        this.#onLogError(err);
      }
    }
    return this.#buffer.filter((e) => e.seq > after);
  }

  subscribe(fn: (e: ControllerEvent) => void): () => void {
    this.#subs.add(fn);
    return () => this.#subs.delete(fn);
  }
}
