// The etcd connection the etcd store's parts share (EtcdStore, EtcdClusterStore,
// EtcdEventLog): one `etcd3` client (the maintained Node client: leases,
// watches, txn) for a list of endpoints, with TLS and auth, every unary call
// under a deadline, and every key under one prefix. Also the few primitives
// the parts build on: a key's value and revisions, a compare-and-set txn,
// fixed-width sequence keys, and errors that name the store.
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { ConsecutiveBreaker, circuitBreaker, handleWhen, isBrokenCircuitError, retry } from "cockatiel";
import { Etcd3, EtcdLeaseInvalidError, isRecoverableError } from "etcd3";
import type { ComparatorBuilder, IKeyValue, IOptions, Namespace, Watcher } from "etcd3";
import { type Clock, systemClock } from "../core/clock.ts";
import { FerryError, isFerryError } from "../core/errors.ts";

/** How a controller reaches etcd: `--store etcd://…` plus the config's `store:` options. */
export interface EtcdOptions {
  /** host:port of each member. */
  endpoints: string[];
  /** Client TLS: the CA that signed the members' certificates; cert and key when etcd demands client certificates. */
  tls?: { ca: string; cert?: string; key?: string; serverName?: string } | null;
  /** etcd auth: a user and a file holding its password (one line). */
  auth?: { username: string; passwordFile: string } | null;
  /** Every key lives under this prefix (default "ferry/"). */
  prefix?: string;
  /** Deadline of each call (default 5 s). */
  callTimeoutMs?: number;
}

/** EtcdOptions with the files read. */
export interface EtcdMaterial {
  /** host:port (or http(s)://host:port) of each member. */
  endpoints: string[];
  /** serverName: the DNS name to check the members' certificates against (needed with IP endpoints: Node refuses an IP as TLS server name). */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer; serverName?: string };
  auth?: { username: string; password: string };
  prefix?: string;
  callTimeoutMs?: number;
}

/** A stored key: its value and the revisions a compare-and-set compares. */
export interface Stored {
  key: string;
  value: string;
  /** The store's revision of the key's last change (0: absent). */
  mod: string;
  create: string;
}

export function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * How long a member that failed three calls in a row is left alone before one
 * call tries it again. etcd3's default is 5 s: once quorum came back, every
 * call of a controller whose members had all failed was refused for up to 5 s
 * ("the circuit breaker is open") although etcd answered again.
 */
export const MEMBER_RETRY_MS = 500;

/**
 * How long a read is tried again while etcd answers as a cluster between two
 * leaders does ("leader changed", no member answering): etcd elects a new
 * leader within its election timeout (1 s by default, longer under load). A
 * read is not retried past the connection's call deadline either.
 */
export const READ_RETRY_MS = 2500;

/** An error that says etcd could not answer now but may a moment later: UNAVAILABLE (a member down, "leader changed"), or every member's circuit open. */
function isTransient(e: unknown): boolean {
  return e instanceof Error && (isRecoverableError(e) || isBrokenCircuitError(e));
}

/**
 * An etcd call that failed (unreachable, no quorum, refused): FERRY_ERR_INTERNAL, retryable, naming the store;
 * details.transient when etcd may answer a moment later (UNAVAILABLE, "leader changed", every member's circuit open).
 * With `askedForMs`: a transient failure asked again for that long (readAgain) and still failing.
 */
export function storeError(what: string, e: unknown, askedForMs?: number): FerryError {
  if (isFerryError(e)) return e;
  if (askedForMs !== undefined && isTransient(e)) {
    // "leader changed" is a member answering, refusing; a broken circuit is none answering: either way no usable answer
    const last = isBrokenCircuitError(e) ? "no member answering" : message(e);
    return new FerryError("FERRY_ERR_INTERNAL", `etcd store: ${what}: etcd gave no usable answer for ${askedForMs} ms (last: ${last}): is etcd up, with a quorum? ('etcdctl endpoint health')`, { cause: e, retryable: true, details: { store: "etcd", transient: true } });
  }
  if (isBrokenCircuitError(e)) {
    return new FerryError("FERRY_ERR_INTERNAL", `etcd store: ${what}: no etcd member answered its last calls (each failed three in a row; each is tried again ${MEMBER_RETRY_MS} ms after): is etcd up, with a quorum? ('etcdctl endpoint health')`, { cause: e, retryable: true, details: { store: "etcd", transient: true } });
  }
  return new FerryError("FERRY_ERR_INTERNAL", `etcd store: ${what}: ${message(e)}`, { cause: e, retryable: true, details: { store: "etcd", transient: isTransient(e) } });
}

/**
 * Run `call`; while it fails transiently (isTransient) ask again, 100 ms
 * after the first failure and up to MEMBER_RETRY_MS apart, until `budgetMs`
 * has passed; then (or on any other error) throw its last error. etcd3 tries
 * a failed call again at once on another member, which does not outlast an
 * election: a controller's read right after an etcd member died failed with
 * "14 UNAVAILABLE: etcdserver: leader changed".
 */
export async function readAgain<T>(clock: Clock, budgetMs: number, call: () => Promise<T>): Promise<T> {
  const until = clock.monotonic() + budgetMs;
  for (let wait = 100; ; wait = Math.min(2 * wait, MEMBER_RETRY_MS)) {
    try {
      return await call();
    } catch (e) {
      if (!isTransient(e) || clock.monotonic() + wait > until) throw e;
    }
    await clock.sleep(wait);
  }
}

/** A sequence number as a key part that sorts as it counts (16 digits). */
export function seqKey(n: number): string {
  return String(n).padStart(16, "0");
}

export function stored(kv: IKeyValue, prefix: string): Stored {
  const key = kv.key.toString("utf8");
  return { key: key.startsWith(prefix) ? key.slice(prefix.length) : key, value: kv.value.toString("utf8"), mod: String(kv.mod_revision), create: String(kv.create_revision) };
}

async function readPem(field: string, file: string): Promise<Buffer> {
  let b: Buffer;
  try {
    b = await readFile(file);
  } catch (e) {
    throw new FerryError("FERRY_ERR_CONFIG", `store.${field} ${file}: cannot read: ${message(e)}`, { cause: e, details: { file, field: `store.${field}` } });
  }
  if (!b.subarray(0, 4096).toString("latin1").includes("-----BEGIN ")) {
    throw new FerryError("FERRY_ERR_CONFIG", `store.${field} ${file}: not a PEM file`, { details: { file, field: `store.${field}` } });
  }
  return b;
}

async function readPassword(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new FerryError("FERRY_ERR_CONFIG", `store.passwordFile ${file}: cannot read the etcd password: ${message(e)}`, { cause: e, details: { file, field: "store.passwordFile" } });
  }
  const pw = text.replace(/\r?\n$/, "");
  if (pw === "" || pw.includes("\n")) throw new FerryError("FERRY_ERR_CONFIG", `store.passwordFile ${file}: must hold the etcd password on one line`, { details: { file, field: "store.passwordFile" } });
  return pw;
}

/** The key the elected controller holds (etcd-election.ts); its create revision is the leadership term. */
export const LEADER_KEY = "leader";

/**
 * Whose writes this connection makes: "open" (no election: tests, tools),
 * "follower" (a controller that does not lead: every write refused here,
 * before etcd), or the leader of `term`: every write is a txn that also
 * compares the leader key's create revision with the term, so a leader that
 * was deposed (paused past its lease, cut off) changes nothing in etcd.
 */
export type Fence = { kind: "open" } | { kind: "follower" } | { kind: "leader"; term: string };

/** One client for the store's parts; close() closes it. */
export class EtcdConnection {
  readonly client: Etcd3;
  readonly ns: Namespace;
  readonly prefix: string;
  readonly endpoints: string[];
  /** Open watches: close() cancels them (a closed client alone leaves their streams retrying). */
  readonly #watchers = new Set<Watcher>();
  #fence: Fence = { kind: "open" };
  /** The client's options, for one client per member (keepAlive). */
  readonly #options: IOptions;
  /** One client per member, made on the first keepAlive. */
  #members: Etcd3[] | null = null;
  readonly #callTimeoutMs: number;

  private constructor(client: Etcd3, prefix: string, endpoints: string[], options: IOptions, callTimeoutMs: number) {
    this.client = client;
    this.#callTimeoutMs = callTimeoutMs;
    this.#options = options;
    this.prefix = prefix;
    this.ns = client.namespace(prefix);
    this.endpoints = endpoints;
  }

  /** Read the TLS and password files and make the client (it connects on first use). */
  static async open(o: EtcdOptions): Promise<EtcdConnection> {
    const tls = o.tls ?? null;
    const material: EtcdMaterial = { endpoints: o.endpoints, ...(o.prefix === undefined ? {} : { prefix: o.prefix }), ...(o.callTimeoutMs === undefined ? {} : { callTimeoutMs: o.callTimeoutMs }) };
    if (tls) {
      material.tls = { ca: await readPem("ca", tls.ca), ...(tls.serverName === undefined ? {} : { serverName: tls.serverName }) };
      if (tls.cert !== undefined && tls.key !== undefined) material.tls = { ...material.tls, cert: await readPem("cert", tls.cert), key: await readPem("key", tls.key) };
    }
    if (o.auth) material.auth = { username: o.auth.username, password: await readPassword(o.auth.passwordFile) };
    return EtcdConnection.connect(material);
  }

  /** Make the client from what the files hold (tests pass it directly). */
  static connect(o: EtcdMaterial): EtcdConnection {
    if (o.endpoints.length === 0) throw new FerryError("FERRY_ERR_CONFIG", "etcd store: no endpoints");
    const timeout = o.callTimeoutMs ?? 5000;
    const options: IOptions = {
      hosts: o.endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `${o.tls ? "https" : "http"}://${e}`)),
      dialTimeout: timeout,
      // unary calls under a deadline; watch streams (isStream) run until cancelled
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      // as etcd3's default (a member failing three calls in a row is skipped), tried again sooner once it answers
      // a call that fails as a dead member's does (UNAVAILABLE: nothing was sent) goes again to a member picked at random,
      // up to twice per member, not etcd3's 3 times: with one of three down, 3 picks of it in a row failed a follower's read (1 in 27)
      faultHandling: {
        host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: MEMBER_RETRY_MS, breaker: new ConsecutiveBreaker(3) }),
        global: retry(handleWhen(isRecoverableError), { maxAttempts: Math.max(3, 2 * o.endpoints.length) }),
      },
    };
    if (o.tls) {
      options.credentials = { rootCertificate: o.tls.ca, ...(o.tls.cert && o.tls.key ? { certChain: o.tls.cert, privateKey: o.tls.key } : {}) };
      if (o.tls.serverName !== undefined) options.grpcOptions = { "grpc.ssl_target_name_override": o.tls.serverName, "grpc.default_authority": o.tls.serverName };
      else if (o.endpoints.some((e) => isIP(e.replace(/^https?:\/\//, "").replace(/:\d+$/, "").replace(/^\[|\]$/g, "")) !== 0)) {
        throw new FerryError("FERRY_ERR_CONFIG", "etcd store: TLS to an IP endpoint needs store.tls.serverName, a DNS name in the members' certificates (Node refuses an IP address as TLS server name)", { details: { field: "store.tls.serverName" } });
      }
    }
    if (o.auth) options.auth = o.auth;
    const hostsOnly = o.endpoints.map((e) => e.replace(/^https?:\/\//, ""));
    return new EtcdConnection(new Etcd3(options), o.prefix ?? "ferry/", hostsOnly, options, timeout);
  }

  /** A key's value and revisions, or undefined. */
  async get(key: string): Promise<Stored | undefined> {
    const res = await this.#read(`get ${key}`, () => this.ns.get(key).exec());
    const kv = res.kvs[0];
    return kv ? stored(kv, this.prefix) : undefined;
  }

  /** Every key under `sub` (in key order), and the store's revision of that read. */
  async list(sub: string, o: { limit?: number; descending?: boolean } = {}): Promise<{ items: Stored[]; revision: string }> {
    const res = await this.#read(`list ${sub}`, () => {
      let b = this.ns.getAll().prefix(sub).sort("Key", o.descending ? "Descend" : "Ascend");
      if (o.limit !== undefined) b = b.limit(o.limit);
      return b.exec();
    });
    return { items: res.kvs.map((kv) => stored(kv, this.prefix)), revision: String(res.header.revision) };
  }

  /** A read, tried again while etcd cannot answer for a moment (readAgain); storeError otherwise. */
  #read<T>(what: string, call: () => Promise<T>): Promise<T> {
    const budget = Math.min(READ_RETRY_MS, this.#callTimeoutMs);
    return readAgain(systemClock, budget, call).catch((e: unknown) => {
      throw storeError(what, e, budget);
    });
  }

  /** Fence every later write (see Fence). */
  setFence(f: Fence): void {
    this.#fence = f;
  }

  get fence(): Fence {
    return this.#fence;
  }

  #notLeader(what: string, detail: string): FerryError {
    return new FerryError("FERRY_ERR_NOT_LEADER", `etcd store: ${what} refused: ${detail}; nothing was written (the leader does the writes: ask it, 'ferry controllers')`, { retryable: true, details: { store: "etcd" } });
  }

  /**
   * Start a write txn comparing `key`: under a leader fence the txn also
   * compares the leader key's create revision with the term; a follower's
   * write is refused here (FERRY_ERR_NOT_LEADER).
   */
  txn(what: string, key: string, column: "Create" | "Mod" | "Version" | "Value", cmp: "==" | "!=" | "<" | ">", value: string | number): ComparatorBuilder {
    const f = this.#fence;
    if (f.kind === "follower") throw this.#notLeader(what, "this controller does not lead");
    if (f.kind === "open") return this.ns.if(key, column, cmp, value);
    return this.ns.if(LEADER_KEY, "Create", "==", f.term).and(key, column, cmp, value);
  }

  /**
   * After a txn that did not succeed: FERRY_ERR_NOT_LEADER when the reason is
   * that this controller's term is over (the leader key is gone or another
   * controller's); returns when the failure was the caller's own compare.
   */
  async checkFence(what: string): Promise<void> {
    const f = this.#fence;
    // the txn was sent while leading (a follower's is refused before etcd): a follower now lost its term meanwhile, and
    // that is why its compare on the leader key failed (CI: 'already exists' instead, for a create right after a lapse)
    if (f.kind === "follower") throw this.#notLeader(what, "this controller's leadership term ended while the write was on its way");
    if (f.kind !== "leader") return;
    const cur = await this.get(LEADER_KEY);
    if (cur === undefined || cur.create !== f.term) {
      throw new FerryError("FERRY_ERR_NOT_LEADER", `etcd store: ${what} refused by etcd: this controller's leadership term ${f.term} is over (${cur === undefined ? "no controller leads now" : `term ${cur.create} leads now`}); nothing was written`, { retryable: false, details: { store: "etcd", term: f.term, ...(cur ? { leaderTerm: cur.create } : {}) } });
    }
  }

  /** Health: a read that needs a quorum (a linearizable range), within the call deadline. */
  async ping(): Promise<void> {
    await this.get("health");
  }

  /** Start a watch on what `build` selects; the returned function cancels it. close() cancels it too. */
  async watch(what: string, build: (ns: Namespace) => Promise<Watcher>): Promise<{ watcher: Watcher; cancel: () => Promise<void> }> {
    let w: Watcher;
    try {
      w = await build(this.ns);
    } catch (e) {
      throw storeError(`watch ${what}`, e);
    }
    this.#watchers.add(w);
    return {
      watcher: w,
      cancel: async () => {
        if (this.#watchers.delete(w)) await w.cancel();
      },
    };
  }

  /**
   * Renew lease `id` through every member at once; resolves with the TTL (s)
   * of the first member that renewed it, throws EtcdLeaseInvalidError when
   * etcd says it is gone, an AggregateError of each member's failure when
   * none renewed it by `deadline`. etcd3's own keepalive goes down a stream to
   * one member picked at random and does not try another when that one fails
   * or waits for a raft election: with one member of three down, a healthy
   * leader's renewals failed for 2 s often enough to end its term.
   */
  async keepAlive(id: string, deadline: Date): Promise<number> {
    const hosts = this.#options.hosts as string[];
    this.#members ??= hosts.map((h) => new Etcd3({ ...this.#options, hosts: [h], faultHandling: {} }));
    const once = async (c: Etcd3): Promise<number> => {
      const stream = await c.leaseClient.leaseKeepAlive({ deadline });
      try {
        const res = await new Promise<{ ID: string; TTL: string }>((resolve, reject) => {
          stream.on("data", resolve);
          stream.on("error", reject);
          stream.write({ ID: id });
        });
        if (res.TTL === "0" || Number(res.TTL) <= 0) throw new EtcdLeaseInvalidError(id);
        return Number(res.TTL);
      } finally {
        stream.end();
      }
    };
    return Promise.any(this.#members.map(once));
  }

  /** Close the per-member clients; cancel the watches (for at most a second), then close the client. */
  close(): void {
    for (const m of this.#members ?? []) m.close();
    this.#members = null;
    const ws = [...this.#watchers];
    this.#watchers.clear();
    const cancelled = Promise.allSettled(ws.map((w) => w.cancel()));
    const late = new Promise((resolve) => setTimeout(resolve, 1000).unref());
    void Promise.race([cancelled, late]).finally(() => this.client.close());
  }
}
