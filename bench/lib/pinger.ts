// An independent ping beside Ferry's connectivity probe, to check Ferry's
// figures: iputils `ping -D` under SCHED_FIFO (ping's own clock when it prints
// each reply), run as `ip netns exec NS chrt -f 10 ping …`, parsed and
// summarized here without any of
// src/lab/probe.ts. Asked for 10 ms (the default), iputils 20221126 sends
// every ≈ 16 ms, as Ferry's watch does (src/lab/connectivity.ts): at the same
// rate both catch the same short windows of reachability in a switch-over.
// (Below 10 ms iputils keeps the interval by spinning at 100 % of a core.)
import { spawn } from "node:child_process";

export interface Pinger {
  readonly pid: number;
  /** Receive times (epoch ms) of the distinct replies so far. */
  times(): number[];
  /** SIGINT, wait for ping to exit (SIGKILL after 3 s); the receive times. Idempotent. */
  stop(): Promise<number[]>;
}

const LINE = /^\[(\d+)\.(\d{1,6})\] \d+ bytes from [^:]+: icmp_seq=(\d+) /;

/** One line of `ping -D` output → [seq, epoch ms], or undefined (errors, DUP!s are sorted out by the caller). */
export function parseIputilsLine(line: string): [number, number] | undefined {
  const m = LINE.exec(line.trim());
  if (!m) return undefined;
  return [Number(m[3]), Number(m[1]) * 1000 + Number(m[2]!.padEnd(6, "0")) / 1000];
}

export function startPinger(o: { netns: string; target: string; intervalMs?: number }): Pinger {
  if (!/^[A-Za-z0-9_.-]+$/.test(o.netns)) throw new Error(`pinger: bad namespace name ${JSON.stringify(o.netns)}`);
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(o.target)) throw new Error(`pinger: bad IPv4 address ${JSON.stringify(o.target)}`);
  const interval = ((o.intervalMs ?? 10) / 1000).toString();
  // SCHED_FIFO: -D stamps a reply when ping prints it, and a ping of normal priority on 2 busy
  // cores was not scheduled for up to ≈ 600 ms (outages nobody else saw)
  const child = spawn("ip", ["netns", "exec", o.netns, "chrt", "-f", "10", "ping", "-D", "-n", "-i", interval, "-W", "1", o.target], { stdio: ["ignore", "pipe", "ignore"] });
  if (child.pid === undefined) throw new Error(`pinger: cannot start ping in ${o.netns} (is iputils-ping installed?)`);
  const pid = child.pid;
  const seen = new Map<number, number>();
  let buf = "";
  let last = -1;
  let wraps = 0;
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const r = parseIputilsLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      if (!r) continue;
      if (last >= 0 && r[0] + 32768 < last) wraps++;
      last = r[0];
      const seq = wraps * 65536 + r[0];
      if (!seen.has(seq)) seen.set(seq, r[1]);
    }
  });
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", () => resolve());
  });
  let stopped: Promise<number[]> | undefined;
  const times = (): number[] => [...seen.values()].sort((a, b) => a - b);
  return {
    pid,
    times,
    stop() {
      stopped ??= (async () => {
        try {
          process.kill(pid, "SIGINT");
        } catch {
          // already gone
        }
        const kill = setTimeout(() => {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            // already gone
          }
        }, 3_000);
        await exited;
        clearTimeout(kill);
        return times();
      })();
      return stopped;
    },
  };
}

/** The longest time without a reply in [from, to] (the edges count: from → first reply, last reply → to). */
export function longestGap(times: readonly number[], from: number, to: number): number {
  const [a, b] = longestGapAt(times, from, to);
  return b - a;
}

/** Where longestGap is: [the reply before it (or from), the reply after it (or to)]; the first of equal gaps. */
export function longestGapAt(times: readonly number[], from: number, to: number): [number, number] {
  let prev = from;
  let at: [number, number] = [from, from];
  for (const t of [...times.filter((x) => x > from && x < to), to]) {
    if (t - prev > at[1] - at[0]) at = [prev, t];
    prev = t;
  }
  return at;
}

/**
 * The outages in [from, to]: times of more than `outageMs` without a reply
 * (the edges count: from → first reply, last reply → to), each [start, end]
 * in epoch ms. With `lone`, replies that come for less than `minRunMs`
 * between two gaps of more than `minGapMs` do not end a gap (a lone reply in
 * the middle of a switch-over): the merged time is what must exceed
 * `outageMs`.
 */
export function outages(times: readonly number[], from: number, to: number, outageMs: number, lone?: { minGapMs: number; minRunMs: number }): [number, number][] {
  const gaps: [number, number][] = [];
  const minGap = lone?.minGapMs ?? outageMs;
  let prev = from;
  for (const t of [...times.filter((x) => x > from && x < to), to]) {
    if (t - prev > minGap) {
      const last = gaps.at(-1);
      if (lone !== undefined && last && prev - last[1] < lone.minRunMs) last[1] = t;
      else gaps.push([prev, t]);
    }
    prev = t;
  }
  return gaps.filter(([a, b]) => b - a > outageMs);
}

/** When the target answered steadily again in [from, to]: the first reply after its last outage (from: none). */
export function stableSince(times: readonly number[], from: number, to: number, outageMs: number, lone?: { minGapMs: number; minRunMs: number }): number {
  return outages(times, from, to, outageMs, lone).at(-1)?.[1] ?? from;
}

/** How long the target was out in [after, to]: the time covered by its outages (counted from `from`, so one that began before `after` counts from `after`). */
export function outAfter(times: readonly number[], from: number, after: number, to: number, outageMs: number, lone?: { minGapMs: number; minRunMs: number }): number {
  return outages(times, from, to, outageMs, lone).reduce((sum, [a, b]) => sum + Math.max(0, b - Math.max(a, after)), 0);
}

/**
 * The longest time without a reply in [from, to] when replies that come for
 * less than `minRunMs` between two gaps of more than `minGapMs` do not end
 * the outage (a lone reply in the middle of a switch-over). Two pingers that
 * sample at different instants catch different lone replies: their raw
 * longest gaps differ by them, this figure does not.
 */
export function longestOutage(times: readonly number[], from: number, to: number, o: { minGapMs: number; minRunMs: number }): number {
  return Math.max(longestGap(times, from, to), ...outages(times, from, to, 0, o).map(([a, b]) => b - a));
}

/**
 * The silence around [t0, t1] (e.g. a guest's pause, STOP → RESUME): the last
 * reply at or before t0 and the first reply at or after t1, or undefined when
 * a reply came between them (the target answered inside the interval) or
 * none came on one side.
 */
export function silenceAround(times: readonly number[], t0: number, t1: number): [number, number] | undefined {
  if (t1 < t0 || times.some((x) => x > t0 && x < t1)) return undefined;
  const before = times.filter((x) => x <= t0).at(-1);
  const after = times.find((x) => x >= t1);
  return before === undefined || after === undefined ? undefined : [before, after];
}
