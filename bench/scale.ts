// The controller at scale, with SIMULATED agents: 50 hosts, 100 VMs, all 100
// migrated at once. The agents are in-process fakes (no QEMU, no sysfs, no
// network): each answers the controller's requests (inventory, instances,
// the step protocol of src/wire/steps.ts) after a small random delay, keeps
// its VF leases as a real agent would, and heartbeats on the schedule the
// controller gives it. The controller, its SQLite stores and its HTTP API
// are the real ones (API requests by app.inject, in process).
//   scripts/rt node bench/scale.ts [--quick]
// Measures: heartbeats missed (a host the controller marks down), lease
// conflicts (a VF leased to two holders at once, or a prepare refused
// because its VF was held), the controller process's memory (before, peak,
// after), and POST /v1/migrations and GET /v1/migrations/:id latency under
// that load. Writes bench/results/scale.json.
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildControllerApp } from "../src/api/app.ts";
import { DEFAULT_DEADLINES } from "../src/controller/config.ts";
import { Controller } from "../src/controller/controller.ts";
import { systemClock } from "../src/core/clock.ts";
import { silentLogger } from "../src/core/log.ts";
import { SqliteClusterStore } from "../src/store/cluster.ts";
import type { VmRecord } from "../src/store/cluster.ts";
import { SqliteStore } from "../src/store/sqlite.ts";

const quick = process.argv.includes("--quick");
const HOSTS = 50;
const VMS = 100;
const PFS = 2;
const VFS_PER_PF = 8;
const NETWORK = "physnet1";
/** Each fake agent answers a request after this many ms (uniform). */
const DELAY_MS: [number, number] = quick ? [2, 10] : [5, 40];
const HEARTBEAT_TIMEOUT_MS = 3_000;
const TOKEN = "t".repeat(32);
const AGENT_TOKEN = "a".repeat(32);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const jitter = (): Promise<void> => sleep(DELAY_MS[0] + Math.random() * (DELAY_MS[1] - DELAY_MS[0]));
const hex = (n: number): string => n.toString(16).padStart(2, "0");

interface Holder {
  kind: "instance" | "migration";
  vmUuid: string;
  instanceId?: string;
  migrationId?: string;
  expiresAt?: number;
}
interface Instance {
  instanceId: string;
  vmUuid: string;
  vmName: string;
  /** nic name → VF */
  nics: Map<string, string | null>;
  incoming: boolean;
  running: boolean;
  startedAt: number;
}

const stats = {
  /** A VF leased to a second holder while the first held it: what must never happen (the fakes refuse it, as agents do). */
  doubleLeases: 0,
  /** A prepare that named a VF another migration held: the controller gave one VF to two migrations at once. */
  leaseConflicts: 0,
  conflictNotes: [] as string[],
  requests: 0,
  heartbeats: 0,
  /** Longest time between two beats of one host while the migrations ran. */
  heartbeatGapMaxMs: 0,
  measuring: false,
};

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}
const problem = (status: number, code: string, message: string): Response => json(status, { code, message, retryable: false, details: {} });

/** One simulated host's agent. */
class FakeAgent {
  readonly name: string;
  readonly url: string;
  readonly pfs: { bdf: string; vfs: string[] }[] = [];
  readonly leases = new Map<string, { holder: Holder; at: number }>();
  readonly instances = new Map<string, Instance>();
  /** Migrations this agent holds something of (step records, leases). */
  readonly migrations = new Map<string, { role: "source" | "destination"; instanceId?: string; spec?: unknown }>();

  constructor(i: number) {
    this.name = `host-${String(i).padStart(2, "0")}`;
    this.url = `http://${this.name}:7070`;
    for (let p = 0; p < PFS; p++) {
      const bus = hex(0x3b + p);
      this.pfs.push({ bdf: `0000:${bus}:00.0`, vfs: Array.from({ length: VFS_PER_PF }, (_, v) => `0000:${bus}:${hex(2 + (v >> 3))}.${v & 7}`) });
    }
  }

  lease(vf: string, holder: Holder, why: string): boolean {
    const held = this.leases.get(vf);
    const same = held && held.holder.kind === holder.kind && held.holder.instanceId === holder.instanceId && held.holder.migrationId === holder.migrationId;
    if (held && !same) {
      stats.leaseConflicts++;
      if (stats.conflictNotes.length < 10) stats.conflictNotes.push(`${this.name} ${vf}: ${why} wanted it, held by ${held.holder.kind} ${held.holder.migrationId ?? held.holder.instanceId}`);
      return false;
    }
    if (held && !same) stats.doubleLeases++;
    this.leases.set(vf, { holder, at: Date.now() });
    return true;
  }

  release(pred: (h: Holder) => boolean): void {
    for (const [vf, l] of this.leases) if (pred(l.holder)) this.leases.delete(vf);
  }

  inventory(): unknown {
    const vfs = this.pfs.flatMap((pf, p) =>
      pf.vfs.map((bdf, v) => ({
        bdf, pf: pf.bdf, pfIfname: `ens${p}`, vfIndex: v, network: NETWORK, vendor: "8086", device: "154c", numaNode: p % 2,
        mac: null, vlan: null, standIn: null, lease: this.leases.get(bdf)?.holder ?? null,
      })),
    );
    const free = vfs.filter((v) => v.lease === null).length;
    return {
      host: this.name, sysfsRoot: "/simulated",
      pfs: this.pfs.map((pf, p) => ({ bdf: pf.bdf, ifname: `ens${p}`, network: NETWORK, vendor: "8086", device: "1572", numaNode: p % 2, bandwidthMbps: 25000, totalVfs: VFS_PER_PF, numVfs: VFS_PER_PF })),
      vfs,
      networks: [{ name: NETWORK, bridge: null, netns: null, vlan: null, vfs: vfs.length, free }],
      leases: [...this.leases].map(([vf, l]) => ({ vf, holder: l.holder, createdAt: l.at, updatedAt: l.at })),
      problems: [],
    };
  }

  instanceView(i: Instance): unknown {
    const vfs = [...i.nics.values()].filter((v): v is string => v !== null);
    return {
      instanceId: i.instanceId, vmUuid: i.vmUuid, vmName: i.vmName, pid: 1000, startedAt: i.startedAt, accel: "tcg", netns: null,
      incoming: i.incoming, state: i.running ? "running" : i.incoming ? "inmigrate" : "shutdown", running: i.running,
      devices: [], vfs, nics: [...i.nics].map(([name, vf]) => ({ name, vf })), serialLog: "/simulated/serial.log",
    };
  }

  async handle(method: string, path: string, body: unknown): Promise<Response> {
    stats.requests++;
    await jitter();
    const b = (body ?? {}) as Record<string, unknown>;
    if (method === "GET" && path === "/v1/inventory") return json(200, this.inventory());
    if (method === "GET" && path === "/v1/health") return json(200, { ok: true });
    if (method === "GET" && path === "/v1/leases") return json(200, (this.inventory() as { leases: unknown }).leases === undefined ? { leases: [] } : { leases: (this.inventory() as { leases: unknown[] }).leases });
    if (method === "GET" && path === "/v1/instances") return json(200, { instances: [...this.instances.values()].map((i) => this.instanceView(i)), gone: [] });
    let m = /^\/v1\/instances\/([^/]+)$/.exec(path);
    if (method === "GET" && m) {
      const i = this.instances.get(decodeURIComponent(m[1]!));
      return i ? json(200, this.instanceView(i)) : problem(404, "FERRY_ERR_NOT_FOUND", "no such instance");
    }
    if (method === "GET" && /^\/v1\/instances\/[^/]+\/migration$/.test(path)) return problem(404, "FERRY_ERR_NOT_FOUND", "simulated agent: no progress");
    m = /^\/v1\/migrations\/([^/]+)\/([a-z]+)$/.exec(path);
    if (method === "POST" && m) return this.step(decodeURIComponent(m[1]!), m[2]!, b);
    return problem(404, "FERRY_ERR_NOT_FOUND", `simulated agent: ${method} ${path} not simulated`);
  }

  step(id: string, step: string, b: Record<string, unknown>): Response {
    const src = (): Instance | undefined => this.instances.get(String(b.instanceId));
    switch (step) {
      case "begin": {
        const i = src();
        if (!i || !i.running) return problem(409, "FERRY_ERR_STATE", `instance ${String(b.instanceId)} is not running here`);
        this.migrations.set(id, { role: "source", instanceId: i.instanceId });
        return json(200, { spec: { name: i.vmName, uuid: i.vmUuid, nics: [...i.nics.keys()] } });
      }
      case "prepare": {
        const had = this.migrations.get(id);
        if (had?.instanceId) return json(200, { instanceId: had.instanceId, uri: "tcp:127.0.0.1:49152" });
        const spec = b.spec as { name: string; uuid: string };
        const nics = b.nics as { name: string; vf: string | null }[];
        const holder: Holder = { kind: "migration", migrationId: id, vmUuid: spec.uuid, expiresAt: Date.now() + Number(b.leaseTtlMs) };
        const taken: string[] = [];
        for (const n of nics) {
          if (n.vf === null) continue;
          if (!this.lease(n.vf, holder, `migration ${id}`)) {
            for (const vf of taken) this.leases.delete(vf);
            return problem(409, "FERRY_ERR_LEASE_HELD", `VF ${n.vf} is leased to another holder`);
          }
          taken.push(n.vf);
        }
        const instanceId = `i-${randomBytes(4).toString("hex")}`;
        this.instances.set(instanceId, { instanceId, vmUuid: spec.uuid, vmName: spec.name, nics: new Map(nics.map((n) => [n.name, n.vf])), incoming: true, running: false, startedAt: Date.now() });
        this.migrations.set(id, { role: "destination", instanceId });
        return json(200, { instanceId, uri: "tcp:127.0.0.1:49152" });
      }
      case "perform":
        return json(200, { status: "pre-switchover", transferredBytes: 512 << 20, remainingBytes: 0 });
      case "precheck":
        return json(200, { ok: true });
      case "switchover": {
        const i = src();
        if (i) i.running = false;
        return json(200, { totalMs: 900, downtimeMs: 40, transferredBytes: 520 << 20 });
      }
      case "finish": {
        const mig = this.migrations.get(id);
        const i = mig?.instanceId === undefined ? undefined : this.instances.get(mig.instanceId);
        if (!i) return problem(404, "FERRY_ERR_NOT_FOUND", `no prepared instance for ${id}`);
        i.running = true;
        i.incoming = false;
        // the migration's leases become the instance's
        for (const [vf, l] of this.leases) if (l.holder.migrationId === id) this.leases.set(vf, { holder: { kind: "instance", vmUuid: i.vmUuid, instanceId: i.instanceId }, at: Date.now() });
        this.migrations.delete(id);
        return json(200, { instanceId: i.instanceId, nics: [...i.nics].map(([name, vf]) => ({ name, attached: vf !== null, vf })) });
      }
      case "confirm": {
        const i = src();
        this.migrations.delete(id);
        if (!i) return json(200, { state: "gone" });
        if (b.success === true) {
          this.instances.delete(i.instanceId);
          this.release((h) => h.kind === "instance" && h.instanceId === i.instanceId);
          return json(200, { state: "stopped" });
        }
        i.running = true;
        return json(200, { state: "running", pausedMs: 50 });
      }
      case "abort": {
        const mig = this.migrations.get(id);
        if (mig?.instanceId) this.instances.delete(mig.instanceId);
        this.release((h) => h.migrationId === id);
        this.migrations.delete(id);
        return json(200, { aborted: true });
      }
      case "cancel":
        this.migrations.delete(id);
        return json(200, { result: "not-running" });
      default:
        return problem(404, "FERRY_ERR_NOT_FOUND", `simulated agent: step ${step} not simulated`);
    }
  }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const MiB = (x: number): number => Math.round((x / 1048576) * 10) / 10;

async function main(): Promise<void> {
  const loadBefore = loadavg();
  const agents = Array.from({ length: HOSTS }, (_, i) => new FakeAgent(i));
  const byUrl = new Map(agents.map((a) => [new URL(a.url).host, a]));
  const fakeFetch: typeof fetch = async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const agent = byUrl.get(url.host);
    if (!agent) throw new TypeError(`fetch failed: no simulated agent at ${url.host}`);
    const text = init?.body === undefined || init.body === null ? undefined : String(init.body as string);
    init?.signal?.throwIfAborted();
    return agent.handle(init?.method ?? "GET", url.pathname, text === undefined || text === "" ? undefined : JSON.parse(text));
  };

  const store = new SqliteStore(":memory:");
  const cluster = new SqliteClusterStore(":memory:");
  const controller = new Controller({
    config: { heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, hostCapacity: { memoryMiB: 262144, vcpus: 128 }, deadlines: DEFAULT_DEADLINES },
    store, cluster, clock: systemClock, log: silentLogger, agentToken: AGENT_TOKEN,
    guestImage: () => Promise.resolve({ kernel: "/simulated/k", initrd: "/simulated/i" }),
    fetch: fakeFetch,
  });
  const app = buildControllerApp({ controller, token: TOKEN, version: "0.0.0", clock: systemClock });
  const auth = { authorization: `Bearer ${TOKEN}` };

  // Heartbeats: each agent on the interval the controller answers, via the API.
  let stopping = false;
  const lastBeat = new Map<string, number>();
  const beat = async (a: FakeAgent): Promise<number> => {
    const r = await app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: auth, payload: { name: a.name, url: a.url, version: "simulated", accel: "tcg", migrations: [...a.migrations.keys()] } });
    if (r.statusCode !== 200) throw new Error(`heartbeat ${a.name}: HTTP ${r.statusCode} ${r.body}`);
    stats.heartbeats++;
    const now = Date.now();
    const prev = lastBeat.get(a.name);
    if (prev !== undefined && stats.measuring) stats.heartbeatGapMaxMs = Math.max(stats.heartbeatGapMaxMs, now - prev);
    lastBeat.set(a.name, now);
    const reply = JSON.parse(r.body) as { intervalMs: number; ended?: string[] };
    for (const id of reply.ended ?? []) {
      a.migrations.delete(id);
      a.release((h) => h.migrationId === id);
    }
    return reply.intervalMs;
  };
  for (const a of agents) await beat(a);
  const beating = agents.map(async (a) => {
    let interval = HEARTBEAT_TIMEOUT_MS / 3;
    while (!stopping) {
      await sleep(interval);
      if (stopping) break;
      interval = await beat(a).catch(() => interval);
    }
  });
  await controller.start();

  // 100 running VMs, two per host, each with a failover NIC on a leased VF.
  const now = Date.now();
  for (let v = 0; v < VMS; v++) {
    const a = agents[v % HOSTS]!;
    const vf = a.pfs[v % PFS]!.vfs[Math.floor(v / HOSTS)]!;
    const uuid = `00000000-0000-4000-8000-${String(v).padStart(12, "0")}`;
    const instanceId = `i-${randomBytes(4).toString("hex")}`;
    a.instances.set(instanceId, { instanceId, vmUuid: uuid, vmName: `vm-${v}`, nics: new Map([["net0", vf]]), incoming: false, running: true, startedAt: now });
    a.lease(vf, { kind: "instance", vmUuid: uuid, instanceId }, "setup");
    const rec: Omit<VmRecord, "seq"> = {
      uuid, name: `vm-${v}`, memoryMiB: 1024, vcpus: 1, host: a.name, instanceId, state: "running", noOs: true, createdAt: now, updatedAt: now,
      nics: [{ name: "net0", network: NETWORK, mode: "failover", policy: "mandatory", mac: `52:54:00:00:${hex(v >> 8)}:${hex(v & 255)}`, guestPorts: { standby: 1, primary: 2 }, address: `10.1.0.${v + 2}/24`, vf }],
    };
    await cluster.createVm(rec);
  }

  // Watchers: hosts marked down, leases held twice, memory.
  const downSeen = new Set<string>();
  let peakRss = 0;
  let peakHeap = 0;
  const watch = (async () => {
    while (!stopping) {
      for (const h of await controller.listHosts()) if (h.state === "down") downSeen.add(h.name);
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      peakHeap = Math.max(peakHeap, m.heapUsed);
      await sleep(100);
    }
  })();

  globalThis.gc?.();
  const memBefore = process.memoryUsage();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  stats.measuring = true;
  const t0 = performance.now();

  // All 100 at once, each by POST /v1/migrations, then polled by GET until it ends.
  const postMs: number[] = [];
  const getMs: number[] = [];
  const outcomes = new Map<string, number>();
  const errors: string[] = [];
  await Promise.all(
    Array.from({ length: VMS }, async (_, v) => {
      const s = performance.now();
      const r = await app.inject({ method: "POST", url: "/v1/migrations", headers: auth, payload: { vm: `vm-${v}` } });
      postMs.push(performance.now() - s);
      if (r.statusCode >= 300) {
        outcomes.set(`refused ${r.statusCode}`, (outcomes.get(`refused ${r.statusCode}`) ?? 0) + 1);
        if (errors.length < 5) errors.push(`vm-${v}: ${r.body.slice(0, 300)}`);
        return;
      }
      const id = (JSON.parse(r.body) as { migration: { id: string } }).migration.id;
      for (;;) {
        await sleep(50);
        const g0 = performance.now();
        const g = await app.inject({ method: "GET", url: `/v1/migrations/${id}`, headers: auth });
        getMs.push(performance.now() - g0);
        if (g.statusCode !== 200) throw new Error(`GET /v1/migrations/${id}: HTTP ${g.statusCode} ${g.body.slice(0, 300)}`);
        const rec = JSON.parse(g.body) as { phase: string; outcome: string | null; code: string | null; settling?: boolean };
        if (rec.phase === "done" && rec.settling !== true) {
          const k = `${rec.outcome ?? "?"}${rec.code ? ` ${rec.code}` : ""}`;
          outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
          return;
        }
        if (performance.now() - s > 120_000) {
          outcomes.set(`still ${rec.phase} after 120 s`, (outcomes.get(`still ${rec.phase} after 120 s`) ?? 0) + 1);
          return;
        }
      }
    }),
  );
  const wallMs = performance.now() - t0;
  // Keep beating a little past the end: a host the load starved would be marked down now.
  await sleep(HEARTBEAT_TIMEOUT_MS + 500);
  stopping = true;
  await Promise.all([...beating, watch]);
  loop.disable();
  globalThis.gc?.();
  const memAfter = process.memoryUsage();
  await controller.close();
  await app.close();
  store.close();
  cluster.close();

  // Final lease check: each VF held at most once, by the instance that runs the VM.
  let vfsLeased = 0;
  for (const a of agents) vfsLeased += a.leases.size;
  postMs.sort((a, b) => a - b);
  getMs.sort((a, b) => a - b);
  const loadAfter = loadavg();
  const result = {
    benchmark: "scale",
    simulated: "in-process fake agents answering the step protocol (src/wire/steps.ts) after a random delay; no QEMU, no sysfs, no network",
    quick,
    node: process.version,
    date: new Date().toISOString(),
    loadAverage: { before: loadBefore, after: loadAfter },
    hosts: HOSTS,
    vfsPerHost: PFS * VFS_PER_PF,
    migrations: VMS,
    agentDelayMs: DELAY_MS,
    heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS,
    wallMs,
    outcomes: Object.fromEntries(outcomes),
    errors,
    hostsMarkedDown: [...downSeen],
    heartbeats: stats.heartbeats,
    heartbeatGapMaxMs: stats.heartbeatGapMaxMs,
    doubleLeases: stats.doubleLeases,
    leaseConflicts: stats.leaseConflicts,
    eventLoopDelayMs: { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
    leaseConflictNotes: stats.conflictNotes,
    vfsLeasedAfter: vfsLeased,
    agentRequests: stats.requests,
    memoryMiB: {
      rssBefore: MiB(memBefore.rss), rssPeak: MiB(peakRss), rssAfter: MiB(memAfter.rss),
      heapBefore: MiB(memBefore.heapUsed), heapPeak: MiB(peakHeap), heapAfter: MiB(memAfter.heapUsed),
    },
    api: {
      postMigrations: { n: postMs.length, p50Ms: percentile(postMs, 50), p99Ms: percentile(postMs, 99), maxMs: postMs.at(-1) ?? NaN },
      getMigration: { n: getMs.length, p50Ms: percentile(getMs, 50), p99Ms: percentile(getMs, 99), maxMs: getMs.at(-1) ?? NaN },
    },
  };

  const f = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : "n/a");
  console.log(`scale benchmark${quick ? " (--quick)" : ""}: SIMULATED agents (in-process fakes, ${DELAY_MS[0]}–${DELAY_MS[1]} ms per request, no QEMU); real controller, SQLite stores, HTTP API; Node ${process.version}`);
  console.log(`load average (1, 5, 15 min) before ${loadBefore.map((x) => x.toFixed(2)).join(" ")}, after ${loadAfter.map((x) => x.toFixed(2)).join(" ")}`);
  const rows: [string, string][] = [
    ["hosts × VFs", `${HOSTS} × ${PFS * VFS_PER_PF}`],
    ["concurrent migrations", `${VMS} (all started at once), ${f(wallMs / 1000)} s until the last ended`],
    ["outcomes", [...outcomes].map(([k, n]) => `${n} ${k}`).join(", ")],
    ["hosts marked down (missed heartbeat)", `${downSeen.size}${downSeen.size ? `: ${[...downSeen].join(", ")}` : ""} (longest gap between one host's beats ${f(stats.heartbeatGapMaxMs)} ms, timeout ${HEARTBEAT_TIMEOUT_MS} ms)`],
    ["VFs leased twice at once", String(stats.doubleLeases)],
    ["prepares refused: VF held by another migration", `${stats.leaseConflicts} (the controller gave one VF to several migrations planned at the same time)`],
    ["event loop delay p50 / p99 / max ms", `${f(loop.percentile(50) / 1e6)} / ${f(loop.percentile(99) / 1e6)} / ${f(loop.max / 1e6)}`],
    ["controller RSS MiB before / peak / after", `${f(MiB(memBefore.rss))} / ${f(MiB(peakRss))} / ${f(MiB(memAfter.rss))}`],
    ["controller heap MiB before / peak / after", `${f(MiB(memBefore.heapUsed))} / ${f(MiB(peakHeap))} / ${f(MiB(memAfter.heapUsed))}`],
    ["POST /v1/migrations p50 / p99 / max ms", `${f(result.api.postMigrations.p50Ms)} / ${f(result.api.postMigrations.p99Ms)} / ${f(result.api.postMigrations.maxMs)} (n ${postMs.length})`],
    ["GET /v1/migrations/:id p50 / p99 / max ms", `${f(result.api.getMigration.p50Ms)} / ${f(result.api.getMigration.p99Ms)} / ${f(result.api.getMigration.maxMs)} (n ${getMs.length})`],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
  for (const e of errors) console.log(`  refused: ${e}`);
  for (const n of stats.conflictNotes.slice(0, 3)) console.log(`  conflict: ${n}`);

  const out = join(dirname(fileURLToPath(import.meta.url)), "results", "scale.json");
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
  console.log(`wrote ${out}`);
}

await main();
