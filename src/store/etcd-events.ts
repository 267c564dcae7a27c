// The controller's event log on etcd: the EventLog port (model/events.ts) as
// SqliteEventLog keeps it, for several controllers. The port is synchronous
// (the EventBus numbers and logs an event inside publish), so this log keeps
// the newest `keep` events in memory and writes each one behind, in publish
// order (one chain of txns). The order in etcd is the events' order: a txn
// writes event N only while the counter key events-last is below N (values
// are fixed-width, so etcd's byte compare is a numeric one) and sets it to N,
// so a stale or duplicate number (a second writer) is refused, never stored
// out of order. A watch on the events follows what any controller writes:
// it feeds the memory (since() shows other controllers' events too) and
// watchEvents(after, fn), which delivers every stored event after `after`
// once, in order.
//
// Keys, under the connection's prefix:
//   events-last              the highest seq written (16 digits)
//   events/<seq, 16 digits>  one event (JSON)
import { FerryError } from "../core/errors.ts";
import type { EventLog, LoggedEvent } from "../model/events.ts";
import { seqKey, storeError } from "./etcd-client.ts";
import type { EtcdConnection, Stored } from "./etcd-client.ts";

const LAST = "events-last";
const eventKey = (seq: number): string => `events/${seqKey(seq)}`;

export interface EtcdEventLogOptions {
  /** Events kept (in etcd and in memory), newest first (default 10 000). */
  keep?: number;
  /** A write or the watch failed (history is best effort: the controller logs it and goes on). */
  onError?: (e: unknown) => void;
}

export class EtcdEventLog<E extends LoggedEvent> implements EventLog<E> {
  readonly #c: EtcdConnection;
  readonly #keep: number;
  readonly #onError: (e: unknown) => void;
  /** The newest events, by seq. */
  #events: E[] = [];
  #last = 0;
  #writes: Promise<void> = Promise.resolve();
  #sinceTrim = 0;
  readonly #followers = new Set<{ after: number; fn: (e: E) => void }>();
  #cancelWatch: () => Promise<void> = () => Promise.resolve();

  private constructor(c: EtcdConnection, o: EtcdEventLogOptions) {
    this.#c = c;
    this.#keep = o.keep ?? 10_000;
    this.#onError = o.onError ?? (() => undefined);
  }

  /** Load the newest events, then follow the store from that read's revision on. */
  static async open<E extends LoggedEvent>(c: EtcdConnection, o: EtcdEventLogOptions = {}): Promise<EtcdEventLog<E>> {
    const log = new EtcdEventLog<E>(c, o);
    try {
      // so that the first append's compare has a value to compare with
      await c.ns.if(LAST, "Create", "==", 0).then(c.ns.put(LAST).value(seqKey(0))).commit();
    } catch (e) {
      throw storeError("open the event log", e);
    }
    const { items, revision } = await c.list("events/", { descending: true, limit: log.#keep });
    log.#events = items.reverse().map((s) => log.#parse(s));
    const last = await c.get(LAST);
    log.#last = Math.max(Number(last?.value ?? 0), log.#events.at(-1)?.seq ?? 0);
    await log.#follow(BigInt(revision) + 1n);
    return log;
  }

  #parse(s: Stored): E {
    try {
      return JSON.parse(s.value) as E;
    } catch (e) {
      throw new FerryError("FERRY_ERR_INTERNAL", `event log: ${s.key} in etcd is not JSON; the log is history only: delete that key and restart the controller`, { cause: e });
    }
  }

  async #follow(fromRevision: bigint): Promise<void> {
    const { watcher: w, cancel } = await this.#c.watch("the event log", (ns) => ns.watch().prefix("events/").startRevision(String(fromRevision)).create());
    w.on("put", (kv) => {
      try {
        const key = kv.key.toString("utf8");
        this.#remember(this.#parse({ key, value: kv.value.toString("utf8"), mod: String(kv.mod_revision), create: String(kv.create_revision) }), true);
      } catch (e) {
        this.#onError(e);
      }
    });
    w.on("error", (e) => this.#onError(e));
    this.#cancelWatch = cancel;
  }

  /** Keep `e` in memory (once, in seq order); when stored, pass it to the followers. */
  #remember(e: E, stored: boolean): void {
    const i = this.#events.findLastIndex((x) => x.seq <= e.seq);
    if (this.#events[i]?.seq !== e.seq) {
      this.#events.splice(i + 1, 0, e);
      if (this.#events.length > this.#keep) this.#events.splice(0, this.#events.length - this.#keep);
    }
    this.#last = Math.max(this.#last, e.seq);
    if (!stored) return;
    for (const f of this.#followers) {
      if (e.seq <= f.after) continue;
      f.after = e.seq;
      f.fn(e);
    }
  }

  lastSeq(): number {
    return this.#last;
  }

  append(e: E): void {
    this.#remember(e, false);
    const trim = ++this.#sinceTrim >= 100;
    if (trim) this.#sinceTrim = 0;
    const ns = this.#c.ns;
    this.#writes = this.#writes.then(async () => {
      try {
        const res = await this.#c
          .txn(`append event ${e.seq}`, LAST, "Value", "<", seqKey(e.seq))
          .then(ns.put(eventKey(e.seq)).value(JSON.stringify(e)), ns.put(LAST).value(seqKey(e.seq)))
          .commit();
        if (!res.succeeded) await this.#c.checkFence(`append event ${e.seq}`);
        if (!res.succeeded) throw new FerryError("FERRY_ERR_CONFLICT", `event log: event ${e.seq} refused: the log already holds an event numbered ${e.seq} or later (another controller writes it)`, { details: { seq: e.seq } });
        if (trim && e.seq > this.#keep) await this.#c.txn("trim the event log", LAST, "Mod", ">", 0).then(ns.delete().inRange({ start: eventKey(0), end: eventKey(e.seq - this.#keep + 1) })).commit();
      } catch (err) {
        this.#onError(storeError(`append event ${e.seq}`, err));
      }
    });
  }

  since(after: number, limit: number): E[] {
    const newer = this.#events.filter((e) => e.seq > after);
    return newer.slice(Math.max(0, newer.length - limit));
  }

  /**
   * Call `fn` with every stored event after `after`, in seq order, once each:
   * those in memory now, then each as the watch sees it stored (by this or
   * another controller). Returns the unsubscribe function.
   */
  watchEvents(after: number, fn: (e: E) => void): () => void {
    const f = { after, fn };
    for (const e of this.since(after, this.#keep)) {
      f.after = e.seq;
      fn(e);
    }
    this.#followers.add(f);
    return () => this.#followers.delete(f);
  }

  /** Wait until every append so far is written (or failed). */
  flush(): Promise<void> {
    return this.#writes;
  }

  async close(): Promise<void> {
    await this.flush();
    this.#followers.clear();
    await this.#cancelWatch();
  }
}
