// Shared by the e2e and fault tests that run `ferry controller` and `ferry
// agent`s as real processes: free ports, spawning with a wait for "listening
// on", and TestCluster: a controller and agents on loopback, each agent with
// its own sysfs fixture, config and log; optionally each agent reached
// through a TCP proxy in both directions (proxies: true) so that a test can
// cut the controller↔agent connection, and a lab fabric of its own (fabric:
// true) whose peer can ping the real test guest.
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AgentClient } from "../../src/wire/agent-client.ts";
import { ControllerClient } from "../../src/api/client.ts";
import { EXIT } from "../../src/cli/exit-codes.ts";
import { networkSubnet } from "../../src/controller/vm-spec.ts";
import { systemClock } from "../../src/core/clock.ts";
import { run } from "../../src/core/run.ts";
import { writeSysfsFixture } from "../../src/host/fixture.ts";
import type { FixturePf } from "../../src/host/fixture.ts";
import { createFabric, destroyFabric, listNetns } from "../../src/lab/fabric.ts";
import { TEST_NETNS_PREFIX } from "../../src/lab/fabric-plan.ts";
import type { Fabric } from "../../src/lab/fabric-plan.ts";
import { CutProxy } from "./proxy.ts";

export const FERRY = fileURLToPath(new URL("../../bin/ferry", import.meta.url));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a !== null ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface Proc {
  child: ChildProcess;
  url: string;
  log: string;
}

/** Spawn `ferry <args>` and wait for its "listening on" log line. */
export async function spawnFerry(args: string[], log: string): Promise<Proc> {
  const child = spawn(FERRY, args, { stdio: ["ignore", "pipe", "pipe"] });
  const out = createWriteStream(log, { flags: "a" });
  child.stdout.pipe(out, { end: false });
  let text = "";
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`ferry ${args.join(" ")}: not listening after 20 s:\n${text}`)), 20_000);
    child.stderr.on("data", (b: Buffer) => {
      out.write(b);
      text += b.toString();
      const m = /listening on (https?:\/\/[0-9.:]+)/.exec(text);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(t);
      reject(new Error(`ferry ${args.join(" ")} exited (${String(code)}):\n${text}`));
    });
  });
  return { child, url, log };
}

export async function kill(p: Proc, sig: NodeJS.Signals): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise((r) => p.child.once("exit", r));
  p.child.kill(sig);
  await exited;
}

export interface TestAgent {
  name: string;
  dir: string;
  config: string;
  log: string;
  proc: Proc;
  /** Direct (not through a proxy): the test's own view of the host. */
  client: AgentClient;
  /** VF BDFs per network. */
  vfs: Record<string, string[]>;
  pfs: Record<string, string>;
  /** With proxies: controller → agent. */
  inbound: CutProxy | null;
  /** With proxies: agent → controller (heartbeats). */
  outbound: CutProxy | null;
}

export interface ControllerSetup {
  agentTokenFile: string;
  agentToken: string;
  controllerTokenFile: string;
  controllerToken: string;
  controllerConfig: string;
  port: number;
  /** What an agent's `controller:` needs. */
  ctl: { url: string; tokenFile: string };
}

/** Token files (0600) and controller.yaml in `base`, for a controller on a free loopback port. */
export async function writeControllerSetup(base: string, o: { heartbeatTimeoutMs?: number; deadlines?: string } = {}): Promise<ControllerSetup> {
  const agentTokenFile = join(base, "agent-token");
  const agentToken = randomBytes(32).toString("hex");
  await writeFile(agentTokenFile, `${agentToken}\n`, { mode: 0o600 });
  const controllerTokenFile = join(base, "controller-token");
  const controllerToken = randomBytes(32).toString("hex");
  await writeFile(controllerTokenFile, `${controllerToken}\n`, { mode: 0o600 });
  const port = await freePort();
  const controllerConfig = join(base, "controller.yaml");
  await writeFile(controllerConfig, [
    `listen: { address: 127.0.0.1, port: ${port} }`,
    `stateDir: cstate`,
    `tokenFile: controller-token`,
    `agentTokenFile: agent-token`,
    `heartbeatTimeoutMs: ${o.heartbeatTimeoutMs ?? 2500}`,
    `deadlines: ${o.deadlines ?? "{ unplugMs: 10000, convergeMs: 120000, precheckMs: 2000, primaryBackMs: 20000, stepMs: 60000 }"}`,
    ``,
  ].join("\n"));
  return { agentTokenFile, agentToken, controllerTokenFile, controllerToken, controllerConfig, port, ctl: { url: `http://127.0.0.1:${port}`, tokenFile: controllerTokenFile } };
}

/** Poll `f` until it returns something (errors count as not yet), or fail naming `what` and the last error. */
export async function waitFor<T>(what: string, f: () => Promise<T | undefined>, timeoutMs: number, everyMs = 100): Promise<T> {
  const until = systemClock.monotonic() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const x = await f();
      if (x !== undefined) return x;
    } catch (e) {
      last = e;
    }
    if (systemClock.monotonic() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ""}`);
    await systemClock.sleep(everyMs);
  }
}

/** `ferry …` as a subprocess with the env the caller holds now; `json` runs it with --json and expects exit 0. */
export function ferryCli(env: () => NodeJS.ProcessEnv): {
  ferry: (...args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;
  json: <T>(...args: string[]) => Promise<T>;
} {
  const ferry = (...args: string[]) => run(FERRY, args, { allowFailure: true, timeoutMs: 120_000, env: env() });
  const json = async <T>(...args: string[]): Promise<T> => {
    const r = await ferry(...args, "--json");
    if (r.code !== EXIT.ok) throw new Error(`ferry ${args.join(" ")}: exit ${r.code}: ${r.stderr}${r.stdout}`);
    return JSON.parse(r.stdout) as T;
  };
  return { ferry, json };
}

/** The first lines of a test agent's host.yaml: name, fixture, state and run dirs under its dir, token, loopback port. */
export function agentYamlHead(name: string, port: number, agentTokenFile: string): string[] {
  return [`name: ${name}`, `sysfsRoot: sys`, `stateDir: state`, `runDir: run`, `authTokenFile: ${agentTokenFile}`, `listen: { address: 127.0.0.1, port: ${port} }`];
}

export interface ClusterHost {
  name: string;
  uplinks: { network: string; numVfs: number }[];
}

export interface TestClusterOptions {
  hosts: ClusterHost[];
  /** The cluster directory's name prefix (under the system's tmpdir). */
  prefix?: string;
  heartbeatTimeoutMs?: number;
  /** Controller deadlines, as YAML. */
  deadlines?: string;
  /** How often the agents heartbeat (default 700 ms). */
  heartbeatMs?: number;
  /** `lab: true` in each host.yaml (fault switches allowed). */
  lab?: boolean;
  /** Reach each agent through a CutProxy in both directions (TestAgent.inbound, .outbound): cut() and restore(). */
  proxies?: boolean;
  /** With proxies: keep the controller's requests to each agent (TestAgent.inbound.requests()), to replay them. */
  record?: boolean;
  /**
   * Wire the guests' NICs to a real bridge: a lab fabric (src/lab/fabric.ts)
   * of this cluster's own, in a ferry-t-<…> namespace, whose peer can ping
   * the real test guest (TestCluster.fabric).
   */
  fabric?: boolean;
  /** Resolve only once the controller sees every host up. */
  waitUp?: boolean;
}

/** `ferry controller` and `ferry agent`s as real processes on loopback (agents first, then the controller). */
export class TestCluster {
  readonly agents = new Map<string, TestAgent>();
  base = "";
  api!: ControllerClient;
  controller: Proc | null = null;
  /** The env for `ferry` subprocesses against this controller (its URL and token file, no context file). */
  env: NodeJS.ProcessEnv = {};
  /** The lab fabric of the hosts' networks, with fabric: true. */
  fabric: Fabric | null = null;
  #controllerConfig = "";
  #controllerToken = "";

  static async up(o: TestClusterOptions): Promise<TestCluster> {
    const c = new TestCluster();
    await c.setUp(o);
    return c;
  }

  protected async setUp(o: TestClusterOptions): Promise<void> {
    this.base = await mkdtemp(join(tmpdir(), o.prefix ?? "fc-"));
    if (o.fabric === true) {
      await destroyOrphanFabrics();
      const networks = [...new Set(o.hosts.flatMap((h) => h.uplinks.map((u) => u.network)))].map((name) => {
        const { n, m } = networkSubnet(name);
        return { name, subnet: `10.${n}.${m}.0/24` };
      });
      this.fabric = await createFabric({ name: `${FABRIC_TAG}${process.pid}-${Date.now().toString(36).slice(-4)}`, prefix: TEST_NETNS_PREFIX, networks });
    }
    const setup = await writeControllerSetup(this.base, {
      ...(o.heartbeatTimeoutMs === undefined ? {} : { heartbeatTimeoutMs: o.heartbeatTimeoutMs }),
      ...(o.deadlines === undefined ? {} : { deadlines: o.deadlines }),
    });
    this.#controllerToken = setup.controllerToken;
    this.#controllerConfig = setup.controllerConfig;
    await Promise.all(o.hosts.map((h) => this.#makeAgent(h, o, setup)));
    await this.startController();
    if (o.waitUp === true) await waitFor("every host up", async () => ((await this.api.hosts()).filter((h) => h.state === "up").length === o.hosts.length ? true : undefined), 20_000);
  }

  async #makeAgent(h: ClusterHost, o: TestClusterOptions, setup: ControllerSetup): Promise<void> {
    const dir = join(this.base, h.name);
    await mkdir(dir, { recursive: true });
    const pfs: FixturePf[] = h.uplinks.map((u) => ({ vendor: "intel-82599", numVfs: u.numVfs, numaNode: 0 }));
    const fx = await writeSysfsFixture(join(dir, "sys"), { pfs, seed: h.name });
    const port = await freePort();
    const inbound = o.proxies === true ? await new CutProxy(port, { record: o.record === true }).listen() : null;
    const outbound = o.proxies === true ? await new CutProxy(setup.port).listen() : null;
    const nets = [...new Set(h.uplinks.map((u) => u.network))];
    const bridged = (n: string): string => {
      const f = this.fabric?.networks.find((x) => x.name === n);
      return f && this.fabric ? `  ${n}: { bridge: ${f.bridge}, netns: ${this.fabric.netns} }` : `  ${n}: {}`;
    };
    const config = join(dir, "host.yaml");
    await writeFile(config, [
      ...agentYamlHead(h.name, port, setup.agentTokenFile),
      `controller: { url: ${outbound?.url ?? setup.ctl.url}, tokenFile: ${setup.controllerTokenFile}, heartbeatMs: ${o.heartbeatMs ?? 700}${inbound ? `, advertiseUrl: ${inbound.url}` : ""} }`,
      ...(o.lab === true ? ["lab: true"] : []),
      `networks:`,
      ...nets.map(bridged),
      `uplinks:`,
      ...h.uplinks.flatMap((u, i) => [`  - pf: ${fx.pfs[i]!.bdf}`, `    network: ${u.network}`, `    standIns: { vfs: all, model: rtl8139 }`]),
      ``,
    ].join("\n"));
    const log = join(dir, "agent.log");
    const proc = await spawnFerry(["agent", "--config", config], log);
    const vfs: Record<string, string[]> = {};
    const pfMap: Record<string, string> = {};
    h.uplinks.forEach((u, i) => {
      (vfs[u.network] ??= []).push(...fx.pfs[i]!.vfs.map((v) => v.bdf));
      pfMap[u.network] = fx.pfs[i]!.bdf;
    });
    this.agents.set(h.name, { name: h.name, dir, config, log, proc, client: new AgentClient({ baseUrl: proc.url, token: setup.agentToken }), vfs, pfs: pfMap, inbound, outbound });
  }

  agent(name: string): TestAgent {
    const a = this.agents.get(name);
    if (!a) throw new Error(`no agent ${name}`);
    return a;
  }

  async startController(): Promise<void> {
    this.controller = await spawnFerry(["controller", "--config", this.#controllerConfig], join(this.base, "controller.log"));
    this.api = new ControllerClient({ baseUrl: this.controller.url, token: this.#controllerToken });
    this.env = { ...process.env, FERRY_CONTROLLER: this.controller.url, FERRY_TOKEN_FILE: join(this.base, "controller-token"), FERRY_CONTEXT: join(this.base, "no-context.json") };
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

  /** Cut the controller↔agent connection both ways (proxies: true). */
  cut(name: string): void {
    const a = this.agent(name);
    a.inbound?.cut();
    a.outbound?.cut();
  }

  restore(name: string): void {
    const a = this.agent(name);
    a.inbound?.restore();
    a.outbound?.restore();
  }

  /** Stop every instance (SIGKILL one its agent cannot stop), the controller, the agents, the proxies, the fabric; remove the directory (FERRY_KEEP_TEST_DIR keeps it). */
  async close(): Promise<void> {
    for (const a of this.agents.values()) {
      a.inbound?.restore();
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
      await a.inbound?.close();
      await a.outbound?.close();
    }
    if (this.fabric) await destroyFabric(this.fabric.name, { prefix: TEST_NETNS_PREFIX });
    if (process.env["FERRY_KEEP_TEST_DIR"] === undefined) await rm(this.base, { recursive: true, force: true });
    else process.stderr.write(`test dir kept: ${this.base}\n`);
  }
}

/** Cluster fabrics are named fm-<pid>-<suffix>: one whose test process is gone (killed before its cleanup) is removed by the next cluster. */
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
