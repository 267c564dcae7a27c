// Leader election among controllers on etcd, with our own lease and txn (not
// etcd3's Election: we need the election key's create revision as the term,
// our own renew period, and to know the moment the lease may have lapsed).
//
// Each controller holds one etcd lease of `leaseMs` (etcd counts whole
// seconds), renewed every `renewMs`, and under it a member key
// (controllers/<id>: its URL, since when). It campaigns with one txn: put the
// leader key (under its lease) only while the key does not exist. The txn's
// revision is the key's create revision: the leadership's term, which only
// grows. Until elected the connection is fenced as a follower (its writes are
// refused before etcd); once elected, every write compares the leader key's
// create revision with the term (etcd-client.ts Fence).
//
// A leader whose renewals have all failed for `leaseMs` (counted from when
// the last good one was sent: etcd may already have let the lease go) has
// lost: onLost is called once and the election stops. A follower that loses
// its lease takes a new one. A watch on the leader key wakes the followers as
// soon as the key is deleted (revoked, or expired), so a takeover takes the
// lease's TTL plus one txn.
//
// Keys, under the connection's prefix:
//   leader              the leader's member record (under its lease)
//   controllers/<id>    each controller's member record (under its lease)
import { EtcdLeaseInvalidError } from "etcd3";
import type { Lease } from "etcd3";
import type { Clock } from "../core/clock.ts";
import { FerryError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { LEADER_KEY, message, storeError } from "./etcd-client.ts";
import type { EtcdConnection, Stored } from "./etcd-client.ts";

const memberKey = (id: string): string => `controllers/${encodeURIComponent(id)}`;

/** A controller taking part in the election. */
export interface Member {
  id: string;
  /** Where its API answers (what followers forward writes to). */
  url: string;
  startedAt: number;
}

/** The leader: a member, its term (the leader key's create revision) and since when it leads. */
export interface Leader extends Member {
  term: string;
  since: number;
}

/** Rounds of one lease renewal (each through every member at once). */
const RENEW_ATTEMPTS = 3;

export interface ElectionOptions {
  /** The lease (a multiple of 1000: etcd leases count whole seconds). */
  leaseMs: number;
  /** How often the lease is renewed (well under leaseMs). */
  renewMs: number;
  clock: Clock;
  log: Logger;
  /** This controller was elected for `term` (the fence is set before). */
  onElected: (term: string) => void;
  /** This controller's term is over (its lease lapsed or was refused): stop doing anything of that term. */
  onLost: (why: string) => void;
}

function parseMember(s: Stored): Member & { since?: number } {
  const x = JSON.parse(s.value) as unknown;
  if (typeof x !== "object" || x === null) throw new FerryError("FERRY_ERR_INTERNAL", `etcd store: ${s.key} is not a member record`);
  const o = x as Record<string, unknown>;
  if (typeof o["id"] !== "string" || typeof o["url"] !== "string" || typeof o["startedAt"] !== "number") throw new FerryError("FERRY_ERR_INTERNAL", `etcd store: ${s.key} is not a member record`);
  return { id: o["id"], url: o["url"], startedAt: o["startedAt"], ...(typeof o["since"] === "number" ? { since: o["since"] } : {}) };
}

export class EtcdElection {
  readonly #c: EtcdConnection;
  readonly #me: Member;
  readonly #o: ElectionOptions;
  readonly #stop = new AbortController();
  #grantChecked = false;
  #lease: Lease | null = null;
  #leaseId: string | null = null;
  /** Monotonic time the last good renewal (or the grant) was sent. */
  #lastOk = 0;
  #term: string | null = null;
  #wake: AbortController = new AbortController();
  #loops: Promise<void>[] = [];
  #cancelWatch: () => Promise<void> = () => Promise.resolve();

  constructor(connection: EtcdConnection, me: Member, o: ElectionOptions) {
    if (o.leaseMs < 1000 || o.leaseMs % 1000 !== 0) throw new FerryError("FERRY_ERR_CONFIG", `election lease ${o.leaseMs} ms: must be whole seconds (etcd leases count seconds), at least 1000`);
    if (o.renewMs <= 0 || o.renewMs * 2 > o.leaseMs) throw new FerryError("FERRY_ERR_CONFIG", `election renew ${o.renewMs} ms: must be above 0 and at most half the lease (${o.leaseMs} ms)`);
    this.#c = connection;
    this.#me = me;
    this.#o = o;
    connection.setFence({ kind: "follower" });
  }

  /** The term this controller leads (null: it does not). */
  get term(): string | null {
    return this.#term;
  }

  get me(): Member {
    return this.#me;
  }

  /** Take a lease, become a member and campaign once, then go on in the background: onElected when this controller wins. */
  async start(): Promise<void> {
    try {
      await this.#grant();
      await this.#campaign();
    } catch (e) {
      this.#o.log.warn({ err: message(e) }, "election: etcd did not answer; trying again");
    }
    const { watcher, cancel } = await this.#c.watch("the leader key", (ns) => ns.watch().key(LEADER_KEY).create());
    watcher.on("delete", () => this.#wake.abort());
    watcher.on("error", (e) => this.#o.log.warn({ err: message(e) }, "election: the watch on the leader key failed; campaigning on the renew period"));
    this.#cancelWatch = cancel;
    this.#loops = [this.#campaignLoop(), this.#watchdog()];
  }

  async #grant(): Promise<void> {
    const ttl = this.#o.leaseMs / 1000;
    const sent = this.#o.clock.monotonic();
    const lease = this.#c.client.lease(ttl, { autoKeepAlive: false });
    lease.on("lost", () => undefined);
    let id: string;
    try {
      id = await lease.grant();
      await this.#c.ns.put(memberKey(this.#me.id)).value(JSON.stringify(this.#me)).lease(id).exec();
    } catch (e) {
      lease.release();
      throw storeError("election: take a lease", e);
    }
    this.#lease = lease;
    this.#leaseId = id;
    this.#lastOk = sent;
    await this.#checkGranted(id, ttl);
  }

  /** etcd raises a TTL under its minimum (1.5 × its election timeout, in whole seconds: 2 s by default) without an error: say so, once. */
  async #checkGranted(id: string, asked: number): Promise<void> {
    if (this.#grantChecked) return;
    this.#grantChecked = true;
    const granted = await this.#c.client.leaseClient.leaseTimeToLive({ ID: id }).then((r) => Number(r.grantedTTL), () => null);
    if (granted !== null && granted > asked) {
      this.#o.log.warn({ askedS: asked, grantedS: granted }, `election: etcd granted a ${granted} s lease for the ${asked} s asked (its minimum lease is 1.5 × its election timeout): a takeover after a leader's crash takes up to ${granted} s; lower the etcd members' --election-timeout, or set election.leaseMs to ${granted * 1000}`);
    }
  }

  /**
   * Renew the lease through every etcd member at once (EtcdConnection.keepAlive),
   * up to RENEW_ATTEMPTS rounds each under renewMs: the first member that
   * renews it is enough. (etcd3's keepalive picks one member at random: with
   * one member of three down, a healthy leader lost its term — CI, 2026-12-05.)
   */
  async #renew(): Promise<void> {
    const lease = this.#lease;
    const id = this.#leaseId;
    if (!lease || id === null) return;
    const errors: string[] = [];
    for (let round = 1; round <= RENEW_ATTEMPTS && !this.#stop.signal.aborted && this.#lease === lease; round++) {
      const sent = this.#o.clock.monotonic();
      try {
        // etcd3 takes a wall-clock deadline for gRPC calls
        await this.#c.keepAlive(id, new Date(Date.now() + this.#o.renewMs));
        if (this.#lease === lease) this.#lastOk = sent;
        if (errors.length > 0) this.#o.log.info({ term: this.#term, failed: errors }, `election: lease renewed at round ${round}`);
        return;
      } catch (e) {
        const all = e instanceof AggregateError ? (e.errors as unknown[]) : [e];
        if (all.some((x) => x instanceof EtcdLeaseInvalidError)) {
          this.#lapse("etcd says the lease is gone (it expired: this controller was paused or cut off longer than the lease)");
          return;
        }
        errors.push(...all.map(message));
      }
    }
    this.#o.log.warn({ err: errors.join("; "), term: this.#term }, "election: lease renewal failed");
  }

  /** Try once to become the leader. */
  async #campaign(): Promise<void> {
    if (this.#leaseId === null || this.#term !== null) return;
    const ns = this.#c.ns;
    const since = this.#o.clock.now();
    const res = await ns
      .if(LEADER_KEY, "Create", "==", 0)
      .then(ns.put(LEADER_KEY).value(JSON.stringify({ ...this.#me, since })).lease(this.#leaseId))
      .commit()
      .catch((e: unknown) => {
        throw storeError("election: campaign", e);
      });
    if (!res.succeeded || this.#stop.signal.aborted) return;
    const term = String(res.header.revision);
    this.#term = term;
    this.#c.setFence({ kind: "leader", term });
    this.#o.log.info({ term, id: this.#me.id }, `elected leader (term ${term})`);
    this.#o.onElected(term);
  }

  async #campaignLoop(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        if (this.#lease === null) await this.#grant();
        else await this.#renew();
        if (this.#term === null) await this.#campaign();
      } catch (e) {
        this.#o.log.warn({ err: message(e) }, "election: etcd did not answer; trying again");
      }
      if (this.#wake.signal.aborted) this.#wake = new AbortController();
      try {
        await this.#o.clock.sleep(this.#o.renewMs, AbortSignal.any([signal, this.#wake.signal]));
      } catch {
        // woken: the leader key was deleted, or stopped
      }
    }
  }

  /** The lease may have lapsed in etcd: a leader's term is over; a follower takes a new lease. */
  #lapse(why: string): void {
    this.#lease?.release();
    this.#lease = null;
    this.#leaseId = null;
    if (this.#term === null) return;
    const term = this.#term;
    this.#term = null;
    this.#c.setFence({ kind: "follower" });
    this.#stop.abort();
    this.#o.log.error({ term }, `lost the leadership (term ${term}): ${why}`);
    this.#o.onLost(why);
  }

  async #watchdog(): Promise<void> {
    const signal = this.#stop.signal;
    const every = Math.max(10, Math.floor(this.#o.renewMs / 4));
    while (!signal.aborted) {
      try {
        await this.#o.clock.sleep(every, signal);
      } catch {
        return;
      }
      if (this.#lease !== null && this.#o.clock.monotonic() - this.#lastOk > this.#o.leaseMs) {
        this.#lapse(`no lease renewal got through for ${this.#o.leaseMs} ms (etcd unreachable or without quorum)`);
      }
    }
  }

  /** The current leader, as etcd has it (undefined: none). */
  async leader(): Promise<Leader | undefined> {
    const s = await this.#c.get(LEADER_KEY);
    if (s === undefined) return undefined;
    const m = parseMember(s);
    return { id: m.id, url: m.url, startedAt: m.startedAt, since: m.since ?? m.startedAt, term: s.create };
  }

  /** Every controller whose lease holds. */
  async members(): Promise<Member[]> {
    const { items } = await this.#c.list("controllers/");
    return items.map((s) => {
      const m = parseMember(s);
      return { id: m.id, url: m.url, startedAt: m.startedAt };
    });
  }

  /** Stop campaigning and give the lease back (the leader key with it: a follower takes over at once). */
  async close(): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled(this.#loops);
    await this.#cancelWatch();
    this.#c.setFence({ kind: "follower" });
    const lease = this.#lease;
    this.#lease = null;
    await lease?.revoke({ deadline: new Date(Date.now() + 1000) }).catch(() => undefined);
  }
}
