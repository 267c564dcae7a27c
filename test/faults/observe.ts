// What the fault tests observe of the hosts from outside Ferry: the QEMU
// processes of a VM as `ps` would show them (/proc, by the VM's UUID on the
// command line), how long the guest's vCPUs stood still (its instances' run
// state sampled every 100 ms, and the real guest's heartbeats as they reach
// its serial logs), and the controller's HTTP requests to an agent as they
// crossed the proxy (to replay them later). Parsing is pure and unit-tested
// (plan.unit.test.ts).
import { open, readdir, readFile } from "node:fs/promises";
import type { AgentClient } from "../../src/wire/agent-client.ts";
import { systemClock } from "../../src/core/clock.ts";
import { startProbe } from "../../src/lab/probe.ts";
import type { RunSample } from "./plan.ts";
import { longestHeartbeatGap, longestPause } from "./plan.ts";

// ---- QEMU processes from /proc

/** A process's argv from /proc/<pid>/cmdline (NUL-separated). */
export function parseCmdline(raw: string): string[] {
  const parts = raw.split("\0");
  if (parts.at(-1) === "") parts.pop();
  return parts;
}

/** A QEMU process of the VM: qemu-system-* with `-uuid <uuid>`. */
export function isQemuOf(argv: readonly string[], vmUuid: string): boolean {
  const bin = argv[0] ?? "";
  if (!/(^|\/)qemu-system-[a-z0-9_]+$/.test(bin)) return false;
  const i = argv.indexOf("-uuid");
  return i >= 0 && argv[i + 1] === vmUuid;
}

/** The state letter of /proc/<pid>/stat (R, S, T, Z, …); the comm field may hold spaces and parentheses. */
export function procState(stat: string): string {
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

/** Live (not zombie) QEMU processes of a VM on this machine, whatever host namespace they run in. */
export async function qemuPidsOf(vmUuid: string): Promise<{ pid: number; state: string }[]> {
  const out: { pid: number; state: string }[] = [];
  for (const d of await readdir("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const argv = parseCmdline(await readFile(`/proc/${d}/cmdline`, "latin1").catch(() => ""));
    if (!isQemuOf(argv, vmUuid)) continue;
    const state = procState(await readFile(`/proc/${d}/stat`, "latin1").catch(() => ""));
    if (state !== "" && state !== "Z" && state !== "X") out.push({ pid: Number(d), state });
  }
  return out;
}

// ---- how long the guest stood still

export interface PauseReport {
  /** Longest time no instance of the VM was running, by its agents' QMP run state (unknown while an agent is away: the last state seen goes on). */
  runStatePauseMs: number;
  /** Longest time between new heartbeats of the real guest (null: no heartbeats, a no-OS guest). */
  heartbeatGapMs: number | null;
  samples: number;
}

const HEARTBEAT = /ferry-heartbeat (\d+)/g;

/** Samples a VM's run state and heartbeats until stop(). */
export class PauseWatch {
  readonly #samples: RunSample[] = [];
  readonly #beats: { at: number; n: number }[] = [];
  readonly #offsets = new Map<string, number>();
  readonly #stop = new AbortController();
  readonly #loop: Promise<void>;

  /** `agents`: each agent's client and how this process reaches a path of its host (TestCluster.hostPath). */
  constructor(vmUuid: string, agents: () => Iterable<{ client: AgentClient; path: (p: string) => string }>, o: { everyMs?: number } = {}) {
    this.#loop = this.#run(vmUuid, agents, o.everyMs ?? 100);
  }

  async #run(vmUuid: string, agents: () => Iterable<{ client: AgentClient; path: (p: string) => string }>, everyMs: number): Promise<void> {
    while (!this.#stop.signal.aborted) {
      let running = false;
      let unknown = false;
      await Promise.all([...agents()].map(async (a) => {
        const list = await a.client.instances({ timeoutMs: 1_500 }).catch(() => undefined);
        if (!list) {
          unknown = true;
          return;
        }
        for (const i of list.instances) {
          if (i.vmUuid !== vmUuid) continue;
          if (i.running) running = true;
          const log = a.path(i.serialLog);
          if (!this.#offsets.has(log)) this.#offsets.set(log, 0);
        }
      }));
      this.#samples.push({ at: systemClock.monotonic(), running: running ? true : unknown ? null : false });
      await this.#readBeats();
      await systemClock.sleep(everyMs, this.#stop.signal).catch(() => undefined);
    }
  }

  async #readBeats(): Promise<void> {
    for (const [path, off] of this.#offsets) {
      const f = await open(path, "r").catch(() => undefined);
      if (!f) continue;
      try {
        const buf = Buffer.alloc(64 * 1024);
        const { bytesRead } = await f.read(buf, 0, buf.length, off);
        if (bytesRead === 0) continue;
        const text = buf.subarray(0, bytesRead).toString("latin1");
        const end = text.lastIndexOf("\n") + 1; // whole lines only
        this.#offsets.set(path, off + end);
        const now = systemClock.monotonic();
        for (const m of text.slice(0, end).matchAll(HEARTBEAT)) {
          const n = Number(m[1]);
          if (n > (this.#beats.at(-1)?.n ?? -1)) this.#beats.push({ at: now, n });
        }
      } finally {
        await f.close();
      }
    }
  }

  async stop(): Promise<PauseReport> {
    this.#stop.abort();
    await this.#loop;
    return {
      runStatePauseMs: Math.round(longestPause(this.#samples).ms),
      heartbeatGapMs: this.#beats.length < 2 ? null : Math.round(longestHeartbeatGap(this.#beats, this.#samples.at(-1)?.at)),
      samples: this.#samples.length,
    };
  }
}

// ---- recorded HTTP requests

export interface HttpRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

/**
 * The complete HTTP/1.1 requests in one connection's client→server bytes
 * (keep-alive: several in a row; Content-Length or chunked bodies). An
 * incomplete request at the end is left out.
 */
export function parseHttpRequests(data: Buffer): HttpRequest[] {
  const out: HttpRequest[] = [];
  let at = 0;
  for (;;) {
    const headEnd = data.indexOf("\r\n\r\n", at);
    if (headEnd < 0) return out;
    const lines = data.subarray(at, headEnd).toString("latin1").split("\r\n");
    const [method = "", path = ""] = (lines[0] ?? "").split(" ");
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const c = l.indexOf(":");
      if (c > 0) headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
    }
    let p = headEnd + 4;
    let body: Buffer;
    if (/chunked/i.test(headers["transfer-encoding"] ?? "")) {
      const parts: Buffer[] = [];
      for (;;) {
        const le = data.indexOf("\r\n", p);
        if (le < 0) return out;
        const size = parseInt(data.subarray(p, le).toString("latin1"), 16);
        if (Number.isNaN(size)) return out;
        p = le + 2;
        if (size === 0) {
          if (data.length < p + 2) return out;
          p += 2;
          break;
        }
        if (data.length < p + size + 2) return out;
        parts.push(data.subarray(p, p + size));
        p += size + 2;
      }
      body = Buffer.concat(parts);
    } else {
      const len = Number(headers["content-length"] ?? "0");
      if (data.length < p + len) return out;
      body = data.subarray(p, p + len);
      p += len;
    }
    out.push({ method, path, headers, body: body.toString("utf8") });
    at = p;
  }
}

// ---- connectivity until stable

export interface ConnectivityReport {
  /** Longest time without a reply, from the probe's start until it stopped. */
  longestGapMs: number;
  /** From the migration's end until the last gap (≥ minGapMs) ended: 0 when the NIC was already steady. */
  untilStableMs: number;
  /** The NIC answered steadily for the settle window before the deadline. */
  stable: boolean;
}

/**
 * Connectivity figures from a probe's gaps (ms since its start): the longest
 * gap, and how long after `endMs` (the migration's end, ms since the probe's
 * start) the last gap ended.
 */
export function connectivityFigures(gaps: readonly { fromMs: number; toMs: number }[], longestGapMs: number, endMs: number): { longestGapMs: number; untilStableMs: number } {
  const lastEnd = gaps.reduce((m, g) => Math.max(m, g.toMs), 0);
  return { longestGapMs: Math.round(longestGapMs), untilStableMs: Math.max(0, Math.round(lastEnd - endMs)) };
}

/** Settle window (issue 20: ≥ 5 s of steady answers) and the gap that breaks it. */
export const SETTLE_MS = 5_000;
export const STEADY_GAP_MS = 250;

/**
 * Probe the guest from the fabric's peer (ping every 10 ms) from now on;
 * untilStable() waits, after the migration ended, until the NIC has
 * answered with no gap over STEADY_GAP_MS for SETTLE_MS (or the deadline),
 * then stops and reports.
 */
export async function watchConnectivity(netns: string, target: string): Promise<{
  /** endedAt: epoch ms (systemClock.now()) the migration ended. */
  untilStable: (endedAt: number, deadlineMs?: number) => Promise<ConnectivityReport>;
  stop: () => Promise<void>;
}> {
  const probe = await startProbe({ netns, target, intervalMs: 10, minGapMs: STEADY_GAP_MS, pinger: "busybox" });
  await probe.waitReply(probe.startedAt, { timeoutMs: 15_000 }).catch(async (e: unknown) => {
    await probe.stop().catch(() => undefined);
    throw new Error(`the guest (${target}) does not answer ping from ${netns} before the fault: the point cannot check connectivity (${String(e)})`);
  });
  return {
    stop: () => probe.stop().then(() => undefined, () => undefined),
    async untilStable(endedAt: number, deadlineMs = 40_000): Promise<ConnectivityReport> {
      const until = systemClock.monotonic() + deadlineMs;
      let count = probe.replyCount();
      let steadySince = systemClock.monotonic();
      let stable = false;
      while (systemClock.monotonic() < until) {
        await systemClock.sleep(STEADY_GAP_MS);
        const n = probe.replyCount();
        if (n === count) steadySince = systemClock.monotonic();
        count = n;
        if (systemClock.monotonic() - steadySince >= SETTLE_MS) {
          stable = true;
          break;
        }
      }
      const r = await probe.stop();
      return { ...connectivityFigures(r.gaps, r.longestGapMs, endedAt - r.startedAt), stable };
    },
  };
}
