// The fault tests' cluster: `ferry controller` and lab `ferry agent`s as real
// processes on loopback, each agent reached through a TCP proxy of this
// process in both directions (controller → agent: the agent advertises the
// proxy's URL; agent → controller: its heartbeats go through another proxy),
// so a test can cut the controller↔agent connection and restore it. Processes
// are killed by pid and restarted on the same config; QEMU processes are found
// through the agents and killed by pid. `check()` compares the store with the
// hosts' real state (DESIGN invariants 1–3, and 4 where the guest prints a
// heartbeat).
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import type { Server, Socket } from "node:net";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Type } from "typebox";
import { AgentClient } from "../../src/agent/client.ts";
import type { InstanceViewT } from "../../src/agent/api.ts";
import { ControllerClient } from "../../src/api/client.ts";

import { networkSubnet } from "../../src/controller/vm-spec.ts";
import { writeSysfsFixture } from "../../src/host/fixture.ts";
import { createFabric, destroyFabric, listNetns } from "../../src/lab/fabric.ts";
import { TEST_NETNS_PREFIX } from "../../src/lab/fabric-plan.ts";
import type { Fabric } from "../../src/lab/fabric-plan.ts";
import type { MigrationRecord } from "../../src/migration/types.ts";
import { lastHeartbeat, readConsole, waitForHeartbeat } from "../../src/qemu/console.ts";
import type { HttpRequest } from "./observe.ts";
import { parseHttpRequests, qemuPidsOf } from "./observe.ts";
import { agentYamlHead, freePort, kill, spawnFerry, waitFor, writeControllerSetup } from "../e2e/cluster.ts";
import type { Proc } from "../e2e/cluster.ts";

/** A TCP proxy to 127.0.0.1:target that can be cut (every socket destroyed, new ones refused) and restored. */
export class CutProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  /** Client→server bytes of each connection, in order of connection (record: true). */
  readonly #recorded: Buffer[][] = [];
  readonly #record: boolean;
  #cut = false;
  readonly target: number;
  port = 0;

  constructor(target: number, o: { record?: boolean } = {}) {
    this.target = target;
    this.#record = o.record === true;
    this.#server = createServer((client) => {
      if (this.#cut) {
        client.destroy();
        return;
      }
      const upstream = connect(this.target, "127.0.0.1");
      if (this.#record) {
        const chunks: Buffer[] = [];
        this.#recorded.push(chunks);
        client.on("data", (b: Buffer) => chunks.push(b));
      }
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on("close", () => this.#sockets.delete(s));
        s.on("error", () => undefined);
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(0, "127.0.0.1", () => resolve());
    });
    const a = this.#server.address();
    this.port = typeof a === "object" && a !== null ? a.port : 0;
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Every complete request that went through (record: true), connection by connection. */
  requests(): HttpRequest[] {
    return this.#recorded.flatMap((c) => parseHttpRequests(Buffer.concat(c)));
  }

  cut(): void {
    this.#cut = true;
    for (const s of this.#sockets) s.destroy();
  }

  restore(): void {
    this.#cut = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

export interface FaultAgent {
  name: string;
  config: string;
  log: string;
  proc: Proc;
  /** Direct (not through the proxy): the test's own view of the host. */
  client: AgentClient;
  /** Controller → agent. */
  inbound: CutProxy;
  /** Agent → controller (heartbeats). */
  outbound: CutProxy;
  vfs: string[];
}

const FaultView = Type.Object({
  enabled: Type.Boolean(),
  armed: Type.Array(Type.Object({ name: Type.String() }, { additionalProperties: true })),
  holding: Type.Array(Type.Object({ step: Type.String(), migrationId: Type.String() }, { additionalProperties: true })),
});

export interface ClusterOptions {
  hosts: { name: string; vfs: number }[];
  /** Controller deadlines (defaults: generous, for a loaded 2-core machine). */
  deadlines?: string;
  heartbeatTimeoutMs?: number;
  /**
   * Wire the guests' NICs to a real bridge: a lab fabric (src/lab/fabric.ts)
   * of this cluster's own, in a ferry-t-<…> namespace, whose peer can ping
   * the real test guest (FaultCluster.fabric).
   */
  fabric?: boolean;
  /** Keep the controller's requests to each agent (FaultAgent.inbound.requests()), to replay them. */
  record?: boolean;
}

export { waitFor };

export class FaultCluster {
  readonly agents = new Map<string, FaultAgent>();
  base = "";
  api!: ControllerClient;
  controller: Proc | null = null;
  #controllerConfig = "";
  #controllerToken = "";
  #controllerPort = 0;
  #agentToken = "";
  #record = false;
  /** The network namespace and bridge of physnet1, with fabric: true. */
  fabric: Fabric | null = null;

  static async start(o: ClusterOptions): Promise<FaultCluster> {
    const c = new FaultCluster();
    await c.#start(o);
    return c;
  }

  async #start(o: ClusterOptions): Promise<void> {
    this.base = await mkdtemp(join(tmpdir(), "ff-"));
    this.#record = o.record === true;
    if (o.fabric === true) {
      await destroyOrphanFabrics();
      const { n, m } = networkSubnet("physnet1");
      this.fabric = await createFabric({ name: `${FABRIC_TAG}${process.pid}-${Date.now().toString(36).slice(-4)}`, prefix: TEST_NETNS_PREFIX, networks: [{ name: "physnet1", subnet: `10.${n}.${m}.0/24` }] });
    }
    if (o.fabric === true) {
      await destroyOrphanFabrics();
      const { n, m } = networkSubnet("physnet1");
      this.fabric = await createFabric({ name: `${FABRIC_TAG}${process.pid}-${Date.now().toString(36).slice(-4)}`, prefix: TEST_NETNS_PREFIX, networks: [{ name: "physnet1", subnet: `10.${n}.${m}.0/24` }] });
    }
    const setup = await writeControllerSetup(this.base, {
      heartbeatTimeoutMs: o.heartbeatTimeoutMs ?? 4000,
      deadlines: o.deadlines ?? "{ unplugMs: 10000, convergeMs: 60000, precheckMs: 2000, primaryBackMs: 20000, stepMs: 30000 }",
    });
    const { agentTokenFile, controllerTokenFile } = setup;
    this.#agentToken = setup.agentToken;
    this.#controllerToken = setup.controllerToken;
    this.#controllerPort = setup.port;
    this.#controllerConfig = setup.controllerConfig;
    await Promise.all(o.hosts.map((h) => this.#makeAgent(h.name, h.vfs, agentTokenFile, controllerTokenFile)));
    await this.startController();
    await waitFor("every host up", async () => ((await this.api.hosts()).filter((h) => h.state === "up").length === o.hosts.length ? true : undefined), 20_000);
  }

  async #makeAgent(name: string, numVfs: number, agentTokenFile: string, controllerTokenFile: string): Promise<void> {
    const dir = join(this.base, name);
    await mkdir(dir, { recursive: true });
    const fx = await writeSysfsFixture(join(dir, "sys"), { pfs: [{ vendor: "intel-82599", numVfs, numaNode: 0 }], seed: name });
    const port = await freePort();
    const inbound = await new CutProxy(port, { record: this.#record }).listen();
    const outbound = await new CutProxy(this.#controllerPort).listen();
    const config = join(dir, "host.yaml");
    await writeFile(config, [
      ...agentYamlHead(name, port, agentTokenFile),
      `controller: { url: ${outbound.url}, tokenFile: ${controllerTokenFile}, heartbeatMs: 500, advertiseUrl: ${inbound.url} }`,
      `lab: true`,
      `networks:`,
      this.fabric ? `  physnet1: { bridge: ${this.fabric.networks[0]!.bridge}, netns: ${this.fabric.netns} }` : `  physnet1: {}`,
      `uplinks:`,
      `  - pf: ${fx.pfs[0]!.bdf}`,
      `    network: physnet1`,
      `    standIns: { vfs: all, model: rtl8139 }`,
      ``,
    ].join("\n"));
    const log = join(dir, "agent.log");
    const proc = await spawnFerry(["agent", "--config", config], log);
    this.agents.set(name, { name, config, log, proc, client: new AgentClient({ baseUrl: proc.url, token: this.#agentToken }), inbound, outbound, vfs: fx.pfs[0]!.vfs.map((v) => v.bdf) });
  }

  agent(name: string): FaultAgent {
    const a = this.agents.get(name);
    if (!a) throw new Error(`no agent ${name}`);
    return a;
  }

  async startController(): Promise<void> {
    this.controller = await spawnFerry(["controller", "--config", this.#controllerConfig], join(this.base, "controller.log"));
    this.api = new ControllerClient({ baseUrl: this.controller.url, token: this.#controllerToken });
  }

  async killController(): Promise<void> {
    if (this.controller) await kill(this.controller, "SIGKILL");
  }

  async killAgent(name: string): Promise<void> {
    await kill(this.agent(name).proc, "SIGKILL");
  }

  async restartAgent(name: string): Promise<void> {
    const a = this.agent(name);
    a.proc = await spawnFerry(["agent", "--config", a.config], a.log);
  }

  cut(name: string): void {
    const a = this.agent(name);
    a.inbound.cut();
    a.outbound.cut();
  }

  restore(name: string): void {
    const a = this.agent(name);
    a.inbound.restore();
    a.outbound.restore();
  }

  // ---- lab fault switches

  async arm(host: string, name: string, o: { once?: boolean; holdMs?: number } = {}): Promise<void> {
    await this.agent(host).client.request("POST", "/v1/faults", FaultView, { name, once: o.once ?? true, ...(o.holdMs === undefined ? {} : { holdMs: o.holdMs }) });
  }

  /** Disarm every switch on a live host and release its holds. */
  async clearFaults(host: string): Promise<void> {
    await this.agent(host).client.request("DELETE", "/v1/faults", FaultView);
  }

  async waitHolding(host: string, step: string, migrationId: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(`${host} holding at ${step} for ${migrationId}`, async () => {
      const v = await this.agent(host).client.request("GET", "/v1/faults", FaultView);
      return v.holding.some((h) => h.step === step && h.migrationId === migrationId) ? true : undefined;
    }, timeoutMs, 50);
  }

  // ---- QEMU processes

  /** Every QEMU instance of a VM on every host (as the agents see them). */
  async instancesOf(vmUuid: string): Promise<(InstanceViewT & { host: string })[]> {
    const out: (InstanceViewT & { host: string })[] = [];
    for (const a of this.agents.values()) {
      for (const i of (await a.client.instances()).instances) if (i.vmUuid === vmUuid) out.push({ ...i, host: a.name });
    }
    return out;
  }

  async killQemu(host: string, instanceId: string): Promise<void> {
    const i = await this.agent(host).client.instance(instanceId);
    process.kill(i.pid, "SIGKILL");
    await waitFor(`QEMU ${i.pid} gone`, () => Promise.resolve(alive(i.pid) ? undefined : true), 10_000, 20);
  }

  /** SIGSTOP a QEMU by pid; it stays stopped until contQemu. */
  async stopQemu(host: string, instanceId: string): Promise<number> {
    const i = await this.agent(host).client.instance(instanceId);
    process.kill(i.pid, "SIGSTOP");
    await waitFor(`QEMU ${i.pid} stopped`, async () => ((await readFile(`/proc/${i.pid}/stat`, "latin1")).match(/\) T /) ? true : undefined), 5_000, 20);
    return i.pid;
  }

  contQemu(pid: number): void {
    if (alive(pid)) process.kill(pid, "SIGCONT");
  }

  /**
   * Wait until the cluster is healthy — every agent process alive and
   * answering, the controller answering and seeing every host up, no
   * migration in flight, no fault switch holding — or fail saying what is
   * not (a point must never start on a cluster a previous one broke).
   */
  async waitHealthy(timeoutMs = 60_000): Promise<void> {
    let why = "";
    try {
      await waitFor("a healthy cluster", async () => {
        const bad: string[] = [];
        for (const a of this.agents.values()) {
          if (a.proc.child.exitCode !== null || a.proc.child.signalCode !== null) bad.push(`${a.name}: agent process exited (${String(a.proc.child.exitCode ?? a.proc.child.signalCode)})`);
          else {
            const f = await a.client.request("GET", "/v1/faults", FaultView).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
            if (f instanceof Error) bad.push(`${a.name}: agent does not answer (${f.message})`);
            else if (f.holding.length > 0) bad.push(`${a.name}: still holding ${f.holding.map((h) => `${h.step}/${h.migrationId}`).join(", ")}`);
          }
        }
        if (this.controller === null || this.controller.child.exitCode !== null || this.controller.child.signalCode !== null) bad.push("controller process exited");
        else {
          const hosts = await this.api.hosts().catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
          if (hosts instanceof Error) bad.push(`controller does not answer (${hosts.message})`);
          else {
            for (const name of this.agents.keys()) {
              const h = hosts.find((x) => x.name === name);
              if (h?.state !== "up") bad.push(`controller sees ${name} ${h?.state ?? "unregistered"}`);
            }
            const busy = (await this.api.migrations()).filter((m) => m.phase !== "done");
            if (busy.length > 0) bad.push(`migrations in flight: ${busy.map((m) => `${m.id} (${m.phase})`).join(", ")}`);
          }
        }
        why = bad.join("; ");
        return bad.length === 0 ? true : undefined;
      }, timeoutMs, 250);
    } catch {
      const tails = await Promise.all([...this.agents.values()].map(async (a) => `--- ${a.name} agent log (last lines):\n${(await readFile(a.log, "utf8").catch(() => "")).split("\n").slice(-8).join("\n")}`));
      throw new Error(`the cluster did not become healthy within ${timeoutMs / 1000} s: ${why}. A previous point left it broken; start the matrix again (FERRY_MATRIX_ONLY= selects points).\n${tails.join("\n")}`);
    }
  }

  async waitDone(id: string, timeoutMs = 120_000): Promise<MigrationRecord> {
    return waitFor(`migration ${id} done`, async () => {
      const r = await this.api.migration(id);
      return r.phase === "done" && !(r as MigrationRecord & { settling?: boolean }).settling ? r : undefined;
    }, timeoutMs, 150);
  }

  async close(): Promise<void> {
    for (const a of this.agents.values()) {
      a.inbound.restore();
      const list = await a.client.instances().catch(() => ({ instances: [] }));
      for (const i of list.instances) {
        await a.client.stopInstance(i.instanceId).catch(() => {
          if (alive(i.pid)) process.kill(i.pid, "SIGKILL");
        });
      }
    }
    if (this.controller) await kill(this.controller, "SIGTERM");
    for (const a of this.agents.values()) {
      await kill(a.proc, "SIGTERM");
      await a.inbound.close();
      await a.outbound.close();
    }
    if (this.fabric) await destroyFabric(this.fabric.name, { prefix: TEST_NETNS_PREFIX });
    if (process.env["FERRY_KEEP_TEST_DIR"] === undefined) await rm(this.base, { recursive: true, force: true });
    else process.stderr.write(`test dir kept: ${this.base}\n`);
  }

  // ---- the invariants

  /**
   * DESIGN invariants against the hosts' real state, after a migration of
   * `vm` ended: the guest runs in exactly one instance — the one the store
   * names (the migration's runsOn and the VM record) — or, when `down` (the
   * only running QEMU was killed), in none and the store says so; no instance
   * of the VM is left over; every lease on every host belongs to a running
   * instance and the VM's leases are the VFs its record names; the migration
   * has a terminal outcome (rec null: the request was refused). With `heartbeatAfter`, the guest's heartbeat
   * counter continues past it (guest memory kept). Returns the violations.
   */
  async check(vm: { name: string; uuid: string }, rec: MigrationRecord | null, o: { down?: boolean; heartbeatAfter?: number } = {}): Promise<string[]> {
    const v: string[] = [];
    if (rec && (rec.phase !== "done" || rec.outcome === null)) v.push(`migration ${rec.id} not terminal (${rec.phase})`);
    const procs = await qemuPidsOf(vm.uuid);
    const want = o.down === true ? 0 : 1;
    if (procs.length !== want) v.push(`${procs.length} QEMU processes of the VM in /proc (pids ${procs.map((p) => p.pid).join(", ") || "none"}), expected ${want}`);
    for (const p of procs.filter((x) => x.state === "T")) v.push(`QEMU ${p.pid} is left stopped (SIGSTOP)`);
    const insts = await this.instancesOf(vm.uuid);
    const running = insts.filter((i) => i.running);
    const stray = insts.filter((i) => !i.running);
    if (stray.length > 0) v.push(`left-over instances: ${stray.map((i) => `${i.host}/${i.instanceId} (${i.state})`).join(", ")}`);
    const record = await this.api.vm(vm.name);
    if (o.down === true) {
      if (running.length > 0) v.push(`guest should be down, runs in ${running.map((i) => `${i.host}/${i.instanceId}`).join(", ")}`);
      // a migration that had done its work when the QEMU died (Finish, Confirm) rightly names the destination; the VM record must say down
      const done = rec?.outcome === "succeeded" || rec?.outcome === "degraded" || rec?.outcome === "recovered";
      if (rec && rec.runsOn !== null && !done) v.push(`migration says it runs on ${rec.runsOn.host}/${rec.runsOn.instanceId}, but it is down`);
      if (record.state === "running" || record.instanceId !== null) v.push(`VM record says ${record.state} on ${record.host}/${String(record.instanceId)}, but it is down`);
    } else {
      if (running.length !== 1) v.push(`guest runs in ${running.length} instances: ${running.map((i) => `${i.host}/${i.instanceId}`).join(", ") || "none"}`);
      const r = running[0];
      if (r) {
        if (rec && (rec.runsOn?.host !== r.host || rec.runsOn.instanceId !== r.instanceId)) v.push(`migration says runsOn ${JSON.stringify(rec.runsOn)}, it runs on ${r.host}/${r.instanceId}`);
        if (record.state !== "running" || record.host !== r.host || record.instanceId !== r.instanceId) v.push(`VM record says ${record.state} on ${record.host}/${String(record.instanceId)}, it runs on ${r.host}/${r.instanceId}`);
        const leased = (await this.agent(r.host).client.leases()).leases.filter((l) => l.holder.kind === "instance" && l.holder.instanceId === r.instanceId).map((l) => l.vf).sort();
        // a VF that did not come back after the switch-over stays leased to the instance (steps.ts finish), unnamed by the record
        const named = record.nics.map((n) => n.vf).filter((x): x is string => x !== null).sort();
        if (!named.every((x) => leased.includes(x))) v.push(`VM record names VFs ${JSON.stringify(named)}, its instance holds ${JSON.stringify(leased)}`);
        if (o.heartbeatAfter !== undefined) {
          const hb = await waitForHeartbeat(r.serialLog, o.heartbeatAfter, { timeoutMs: 30_000 }).catch(() => undefined);
          if (hb === undefined) v.push(`heartbeat did not continue past ${o.heartbeatAfter} (last: ${String(lastHeartbeat(await readConsole(r.serialLog)))})`);
        }
      }
    }
    v.push(...(await this.leaseViolations()));
    return v;
  }

  /**
   * The store against the hosts, for every VM: a VM recorded running runs in
   * exactly that instance (QMP says running) and holds the VFs its record
   * names; a VM recorded otherwise runs nowhere; no instance of it is left
   * over; with `rec`, the migration is terminal and names where the VM runs
   * (or nothing when it is down); every lease belongs to a running instance.
   */
  async checkStore(rec: MigrationRecord | null): Promise<string[]> {
    const v: string[] = [];
    for (const vm of await this.api.vms()) {
      const insts = await this.instancesOf(vm.uuid);
      const running = insts.filter((i) => i.running);
      for (const i of insts.filter((x) => !x.running)) v.push(`${vm.name}: left-over instance ${i.host}/${i.instanceId} (${i.state})`);
      if (vm.state === "running") {
        const r = running[0];
        if (running.length !== 1 || !r || r.host !== vm.host || r.instanceId !== vm.instanceId) {
          v.push(`${vm.name}: recorded running on ${vm.host}/${String(vm.instanceId)}, runs in ${running.map((i) => `${i.host}/${i.instanceId}`).join(", ") || "nothing"}`);
        } else {
          const leased = (await this.agent(r.host).client.leases()).leases.filter((l) => l.holder.kind === "instance" && l.holder.instanceId === r.instanceId).map((l) => l.vf);
          const named = vm.nics.map((n) => n.vf).filter((x): x is string => x !== null);
          if (!named.every((x) => leased.includes(x))) v.push(`${vm.name}: record names VFs ${JSON.stringify(named)}, its instance holds ${JSON.stringify(leased)}`);
        }
      } else if (running.length > 0) {
        v.push(`${vm.name}: recorded ${vm.state}, runs in ${running.map((i) => `${i.host}/${i.instanceId}`).join(", ")}`);
      }
      if (rec && rec.plan.vm.uuid === vm.uuid) {
        if (rec.phase !== "done" || rec.outcome === null) v.push(`${vm.name}: migration ${rec.id} not terminal (${rec.phase})`);
        const where = rec.runsOn ? `${rec.runsOn.host}/${rec.runsOn.instanceId}` : "nowhere";
        const recorded = vm.state === "running" ? `${vm.host}/${String(vm.instanceId)}` : "nowhere";
        if (where !== recorded && !(vm.state !== "running" && rec.runsOn !== null && running.length === 0 && rec.outcome !== null && ["succeeded", "degraded", "recovered"].includes(rec.outcome))) {
          v.push(`${vm.name}: migration ${rec.id} says it runs on ${where}, the VM record ${recorded}`);
        }
      }
    }
    v.push(...(await this.leaseViolations()));
    return v;
  }

  /** Every lease on every host is held by a running instance (no migration lease, no dead holder). */
  async leaseViolations(): Promise<string[]> {
    const v: string[] = [];
    for (const a of this.agents.values()) {
      const runningIds = new Set((await a.client.instances()).instances.filter((i) => i.running).map((i) => i.instanceId));
      for (const l of (await a.client.leases()).leases) {
        if (l.holder.kind !== "instance") v.push(`${a.name} ${l.vf}: leaked to migration ${l.holder.migrationId}`);
        else if (!runningIds.has(l.holder.instanceId)) v.push(`${a.name} ${l.vf}: held by ${l.holder.instanceId}, which is not running`);
      }
    }
    return v;
  }
}

/** Fault-cluster fabrics are named fm-<pid>-<suffix>: one whose test process is gone (killed before its cleanup) is removed by the next cluster. */
const FABRIC_TAG = "fm-";

async function destroyOrphanFabrics(): Promise<void> {
  for (const ns of await listNetns({ prefix: TEST_NETNS_PREFIX })) {
    const m = new RegExp(`^${TEST_NETNS_PREFIX}${FABRIC_TAG}(\\d+)-[a-z0-9]+$`).exec(ns);
    if (m && !alive(Number(m[1]))) await destroyFabric(ns.slice(TEST_NETNS_PREFIX.length), { prefix: TEST_NETNS_PREFIX });
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The last heartbeat in an instance's serial log (0 when none yet). */
export async function heartbeatOf(serialLog: string): Promise<number> {
  return lastHeartbeat(await readConsole(serialLog)) ?? 0;
}
