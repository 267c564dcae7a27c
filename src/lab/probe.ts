// Connectivity measurement: ICMP echo from the fabric's peer to a guest at a
// fixed interval, with sequence numbers, to see how long the guest was unreachable.
//
// Two pingers, both run as `ip netns exec NS [chrt -f 10] <ping …> TARGET`
// (`ip netns exec` and chrt exec in place, so the child's pid is ping's;
// SIGINT to it makes ping print its statistics, whose "N packets transmitted"
// is the probe count). Under SCHED_FIFO when this process may (canRunRealtime):
// both stamps below are taken after ping is scheduled, which on 2 busy cores
// took up to ≈ 600 ms at normal priority.
//
// - busybox (`busybox ping -i 0.01`, the default when no pinger is asked for):
//   keeps the 10 ms interval (≈ 98 requests/s measured). Its lines carry no
//   timestamp; they are stamped when this process reads them, so a busy event
//   loop makes them late (up to ≈ 200 ms in the controller during a migration).
// - iputils (`ping -D -n -i 0.01 -W 1`, the connectivity watch's): -D is
//   ping's own clock when it prints the reply. iputils 20221126 sends every
//   ≈ 16 ms when asked for 10 ms, and below 10 ms keeps the interval by
//   spinning at 100 % of a core, so "probes ≈ duration / 10 ms" does not hold.
//
// The parser and the summary are pure and unit-tested with recorded output.
import { spawn } from "node:child_process";
import { systemClock } from "../core/clock.ts";
import { FerryError, invalid } from "../core/errors.ts";
import { run } from "../core/run.ts";
import * as v from "../model/validate.ts";
import { parseIpv4 } from "./fabric-plan.ts";

export type Pinger = "iputils" | "busybox";

export interface ProbeOptions {
  /** The namespace to probe from (the fabric's; the peer address is there). */
  netns: string;
  /** The guest's IPv4 address. */
  target: string;
  /** Default 10. */
  intervalMs?: number;
  /** Gaps between replies longer than this are listed in `gaps` (default 5 intervals). */
  minGapMs?: number;
  /** Default: busybox when installed (it keeps a 10 ms interval), else iputils. */
  pinger?: Pinger | "auto";
  /** Aborting stops the probe (its result is still given by stop()). */
  signal?: AbortSignal;
}

export interface Gap {
  /** ms since the probe started. */
  fromMs: number;
  toMs: number;
}

export interface ProbeResult {
  /** Echo requests sent. */
  probes: number;
  /** Distinct sequence numbers answered. */
  replies: number;
  /** probes − replies (the last request may still have been in flight at stop). */
  lost: number;
  /** Longest time without a reply: start → first reply, between replies, last reply → stop. */
  longestGapMs: number;
  gaps: Gap[];
  durationMs: number;
  /** Wall-clock time (epoch ms) the probe started. */
  startedAt: number;
  /** ms from start to the first reply; undefined if none came. */
  firstReplyMs: number | undefined;
  pinger: Pinger;
}

export interface Probe {
  readonly startedAt: number;
  readonly pid: number;
  readonly pinger: Pinger;
  /** Distinct replies so far. */
  replyCount(): number;
  /** Receive times (epoch ms) of the replies so far, in the order they came. */
  replyTimes(): number[];
  /** Epoch ms of the first reply received at or after `afterMs` (epoch ms); waits for it. */
  waitReply(afterMs: number, o: { timeoutMs: number; signal?: AbortSignal }): Promise<number>;
  /**
   * SIGINT to ping, wait for its statistics, summarize. Idempotent (a second
   * call gives the first call's result). `from` (epoch ms): measure gaps from
   * then instead of from the probe's start (a migration that began a moment
   * after its probe).
   */
  stop(o?: { from?: number }): Promise<ProbeResult>;
}

// ---------------------------------------------------------------------------
// Parsing (pure)

export type PingLine =
  | { kind: "reply"; seq: number; /** epoch ms from -D, if present */ atMs: number | undefined }
  | { kind: "stats"; transmitted: number; received: number }
  | { kind: "other" };

const REPLY_RE = /^(?:\[(\d+(?:\.\d+)?)\]\s+)?\d+ bytes from [^:]+: (?:icmp_seq|seq)=(\d+)\b/;
const STATS_RE = /^(\d+) packets transmitted, (\d+) (?:packets )?received/;

/** "1795319033.680668" (seconds) → epoch ms, exact to the microsecond. */
function stampMs(s: string): number {
  const [sec = "0", frac = ""] = s.split(".");
  return Math.round(Number(sec + frac.padEnd(6, "0").slice(0, 6))) / 1000;
}

/** One line of iputils (`-D`) or busybox ping output. Errors ("From … Destination Host Unreachable") are not replies. */
export function parsePingLine(line: string): PingLine {
  const l = line.trim();
  const m = REPLY_RE.exec(l);
  if (m?.[2] !== undefined) return { kind: "reply", seq: Number(m[2]), atMs: m[1] === undefined ? undefined : stampMs(m[1]) };
  const s = STATS_RE.exec(l);
  if (s?.[1] !== undefined && s[2] !== undefined) return { kind: "stats", transmitted: Number(s[1]), received: Number(s[2]) };
  return { kind: "other" };
}

export interface Reply {
  /** Unwrapped sequence number. */
  seq: number;
  atMs: number;
}

/** Collects replies from ping lines: distinct seqs (DUP! ignored), 16-bit wrap undone, the statistics line kept. */
export class PingTally {
  readonly replies: Reply[] = [];
  transmitted: number | undefined;
  /** Highest (unwrapped) seq seen. */
  maxSeq: number | undefined;
  readonly #seen = new Set<number>();
  #epoch = 0;
  #lastRaw: number | undefined;

  /** Feed one line; `nowMs` stamps replies without a -D timestamp. Returns the new reply, if the line was one. */
  add(line: string, nowMs: number): Reply | undefined {
    const p = parsePingLine(line);
    if (p.kind === "stats") {
      this.transmitted = p.transmitted;
      return undefined;
    }
    if (p.kind !== "reply") return undefined;
    if (this.#lastRaw !== undefined && p.seq < this.#lastRaw - 32768) this.#epoch++;
    const seq = this.#epoch * 65536 + p.seq;
    // late replies from before a wrap stay in their epoch
    const unwrapped = this.#lastRaw !== undefined && p.seq > this.#lastRaw + 32768 && this.#epoch > 0 ? seq - 65536 : seq;
    if (unwrapped === seq) this.#lastRaw = p.seq;
    this.maxSeq = Math.max(this.maxSeq ?? unwrapped, unwrapped);
    if (this.#seen.has(unwrapped)) return undefined;
    this.#seen.add(unwrapped);
    const r = { seq: unwrapped, atMs: p.atMs ?? nowMs };
    this.replies.push(r);
    return r;
  }
}

/**
 * The result from what a probe saw. `firstSeq` is the pinger's first sequence
 * number (iputils 1, busybox 0): without a statistics line, the highest seq
 * seen tells how many requests were sent at least.
 */
export function summarize(o: {
  startedAt: number;
  stoppedAt: number;
  replies: readonly Reply[];
  transmitted: number | undefined;
  maxSeq: number | undefined;
  firstSeq: number;
  minGapMs: number;
  pinger: Pinger;
}): ProbeResult {
  const times = o.replies.map((r) => r.atMs).sort((a, b) => a - b);
  const fromSeq = o.maxSeq === undefined ? 0 : o.maxSeq - o.firstSeq + 1;
  const probes = Math.max(o.transmitted ?? 0, fromSeq, o.replies.length);
  const points = [o.startedAt, ...times.map((t) => Math.min(Math.max(t, o.startedAt), o.stoppedAt)), o.stoppedAt];
  let longestGapMs = 0;
  const gaps: Gap[] = [];
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1] ?? 0;
    const b = points[i] ?? 0;
    const d = b - a;
    longestGapMs = Math.max(longestGapMs, d);
    if (d > o.minGapMs) gaps.push({ fromMs: round(a - o.startedAt), toMs: round(b - o.startedAt) });
  }
  return {
    probes,
    replies: o.replies.length,
    lost: probes - o.replies.length,
    longestGapMs: round(longestGapMs),
    gaps,
    durationMs: round(o.stoppedAt - o.startedAt),
    startedAt: o.startedAt,
    firstReplyMs: times[0] === undefined ? undefined : round(times[0] - o.startedAt),
    pinger: o.pinger,
  };
}

const round = (ms: number): number => Math.round(ms * 10) / 10;

export interface Steadiness {
  /** Epoch ms the last outage ended (its first reply after it); `from` when there was none; `now` while one lasts. */
  stableSince: number;
  /** now − stableSince. */
  steadyForMs: number;
}

/**
 * Since when a target has answered steadily: the end of its last outage
 * (a time of more than `outageMs` without a reply, counting from `from` and
 * up to `now`). Replies before `from` or after `now` are not looked at.
 */
export function steadiness(replyTimes: readonly number[], o: { from: number; now: number; outageMs: number }): Steadiness {
  const times = replyTimes.filter((t) => t > o.from && t <= o.now).sort((a, b) => a - b);
  let stableSince = o.from;
  let prev = o.from;
  for (const t of [...times, o.now]) {
    if (t - prev > o.outageMs) stableSince = t;
    prev = t;
  }
  return { stableSince, steadyForMs: o.now - stableSince };
}

/**
 * How long a target was out after `after`: the time in [after, now] covered
 * by outages (times of more than `outageMs` without a reply, counted from
 * `from`, so an outage that began before `after` counts from `after`).
 */
export function outageAfter(replyTimes: readonly number[], o: { from: number; after: number; now: number; outageMs: number }): number {
  const times = replyTimes.filter((t) => t > o.from && t <= o.now).sort((a, b) => a - b);
  let out = 0;
  let prev = o.from;
  for (const t of [...times, o.now]) {
    if (t - prev > o.outageMs) out += Math.max(0, t - Math.max(prev, o.after));
    prev = t;
  }
  return out;
}

/**
 * ping's argv (after `ip netns exec NS`). With `realtime`, ping runs under
 * `chrt -f 10` (SCHED_FIFO): a reply's stamp is taken when ping prints it
 * (iputils -D calls gettimeofday then; busybox's are taken by the reader), and
 * on 2 cores busy with TCG guests a ping of normal priority was not scheduled
 * for up to ≈ 600 ms, which read as outages nobody else saw. ping sleeps
 * between packets, so the priority costs nothing else.
 */
export function pingArgv(pinger: Pinger, target: string, intervalMs: number, o: { realtime?: boolean } = {}): string[] {
  const interval = (intervalMs / 1000).toString();
  const ping = pinger === "iputils" ? ["ping", "-D", "-n", "-i", interval, "-W", "1", target] : ["busybox", "ping", "-i", interval, target];
  return o.realtime === true ? ["chrt", "-f", "10", ...ping] : ping;
}

let realtimeOk: Promise<boolean> | undefined;
/** Whether this process may run programs under SCHED_FIFO (root, not in a container without CAP_SYS_NICE). */
export function canRunRealtime(): Promise<boolean> {
  realtimeOk ??= run("chrt", ["-f", "10", "true"], { allowFailure: true, timeoutMs: 5_000 }).then(
    (r) => r.code === 0,
    () => false,
  );
  return realtimeOk;
}

// ---------------------------------------------------------------------------
// Running

/** The pinger to use when none is asked for: busybox (10 ms kept), else iputils. */
export async function detectPinger(): Promise<Pinger> {
  const bb = await run("busybox", ["ping", "--help"], { allowFailure: true, timeoutMs: 5_000 }).catch(() => undefined);
  if (bb && /Send ICMP ECHO_REQUEST/.test(bb.stdout + bb.stderr)) return "busybox";
  const r = await run("ping", ["-V"], { allowFailure: true, timeoutMs: 5_000 }).catch(() => undefined);
  if (r?.code === 0 && /iputils/.test(r.stdout + r.stderr)) return "iputils";
  throw new FerryError("FERRY_ERR_COMMAND", "no ping to probe with: install busybox-static (or iputils-ping)");
}

export async function startProbe(o: ProbeOptions): Promise<Probe> {
  const netns = v.name("netns", o.netns);
  const target = parseIpv4("target", o.target);
  const intervalMs = o.intervalMs ?? 10;
  if (!Number.isInteger(intervalMs) || intervalMs < 2 || intervalMs > 60_000) throw invalid("intervalMs", intervalMs, "must be a whole number of ms between 2 and 60000");
  const minGapMs = o.minGapMs ?? 5 * intervalMs;
  const pinger = o.pinger === undefined || o.pinger === "auto" ? await detectPinger() : o.pinger;
  const firstSeq = pinger === "iputils" ? 1 : 0;

  const tally = new PingTally();
  const waiters = new Set<{ after: number; resolve: (t: number) => void }>();
  let stderr = "";
  let exited = false;
  const exitP = Promise.withResolvers<void>();

  const realtime = await canRunRealtime();
  const startedAt = Date.now();
  const child = spawn("ip", ["netns", "exec", netns, ...pingArgv(pinger, target, intervalMs, { realtime })], { stdio: ["ignore", "pipe", "pipe"] });
  const spawnFailed = new Promise<Error>((resolve) => child.once("error", resolve));
  child.once("exit", () => {
    exited = true;
    exitP.resolve();
  });
  child.once("error", () => {
    exited = true;
    exitP.resolve();
  });
  let buf = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    const now = Date.now();
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const r = tally.add(line, now);
      if (r) {
        for (const w of waiters) {
          if (r.atMs >= w.after) {
            waiters.delete(w);
            w.resolve(r.atMs);
          }
        }
      }
    }
  });
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    if (stderr.length < 4000) stderr += chunk;
  });
  const pid = child.pid;
  if (pid === undefined) {
    const e = await spawnFailed;
    throw new FerryError("FERRY_ERR_COMMAND", `cannot start ping in ${netns}: ${e.message}`, { cause: e });
  }

  let result: Promise<ProbeResult> | undefined;
  const stop = (so: { from?: number } = {}): Promise<ProbeResult> => {
    result ??= (async () => {
      const stoppedAt = Date.now();
      if (!exited) {
        try {
          process.kill(pid, "SIGINT");
        } catch {
          // already gone
        }
        const escalate = new AbortController();
        systemClock.sleep(3_000, escalate.signal).then(() => {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            // already gone
          }
        }, () => undefined);
        await exitP.promise;
        escalate.abort();
      }
      if (buf !== "") tally.add(buf, Date.now());
      for (const w of waiters) waiters.delete(w);
      if (tally.transmitted === undefined && tally.replies.length === 0 && stderr.trim() !== "") {
        throw new FerryError("FERRY_ERR_COMMAND", `ping ${target} in ${netns} failed: ${stderr.trim().slice(0, 500)}`, { details: { netns, target } });
      }
      return summarize({ startedAt: Math.min(Math.max(startedAt, so.from ?? startedAt), stoppedAt), stoppedAt, replies: tally.replies, transmitted: tally.transmitted, maxSeq: tally.maxSeq, firstSeq, minGapMs, pinger });
    })();
    return result;
  };
  o.signal?.addEventListener("abort", () => void stop().catch(() => undefined), { once: true });

  return {
    startedAt,
    pid,
    pinger,
    replyCount: () => tally.replies.length,
    replyTimes: () => tally.replies.map((r) => r.atMs),
    waitReply(afterMs, w) {
      const have = tally.replies.find((r) => r.atMs >= afterMs);
      if (have) return Promise.resolve(have.atMs);
      if (exited) return Promise.reject(new FerryError("FERRY_ERR_STATE", `the probe of ${target} has stopped`));
      return new Promise<number>((resolve, reject) => {
        const entry = {
          after: afterMs,
          resolve: (t: number) => {
            timer.abort();
            w.signal?.removeEventListener("abort", onAbort);
            resolve(t);
          },
        };
        const fail = (e: FerryError): void => {
          waiters.delete(entry);
          timer.abort();
          w.signal?.removeEventListener("abort", onAbort);
          reject(e);
        };
        const onAbort = (): void => fail(new FerryError("FERRY_ERR_ABORTED", `waiting for a reply from ${target}: aborted`));
        const timer = new AbortController();
        systemClock.sleep(w.timeoutMs, timer.signal).then(() => fail(new FerryError("FERRY_ERR_TIMEOUT", `no reply from ${target} within ${w.timeoutMs} ms`)), () => undefined);
        w.signal?.addEventListener("abort", onAbort, { once: true });
        waiters.add(entry);
      });
    },
    stop,
  };
}
