// Shared by the e2e and fault tests that run `ferry controller` and `ferry
// agent`s as real processes: free ports, spawning with a wait for "listening
// on", and TestCluster: a controller and agents, each agent with its own
// sysfs fixture, config and log; optionally each agent reached through a TCP
// proxy in both directions (proxies: true) so that a test can cut the
// controller↔agent connection, and a lab fabric of its own (fabric: true)
// whose peer can ping the real test guest.
// The hosts are apart (issue 14), as a lab's (src/lab/lab-hosts.ts): each in
// network, mount and UTS namespaces of its own (ferry-t-fm-<pid>-<x>-<host>,
// held by a holder process), its agent and QEMUs inside, listening on its
// management address; the controller and the proxies (this process) on the
// root namespace's management bridge; migrations over the migration network
// with TLS (certificates from the cluster's own CA for each host's management
// and migration addresses). A host's files are read through hostPath().
// `apart: false`: every agent in this process's namespaces on 127.0.0.1.
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AgentClient } from "../../src/wire/agent-client.ts";
import { ControllerClient } from "../../src/api/client.ts";
import { EXIT } from "../../src/cli/exit-codes.ts";
import { networkSubnet } from "../../src/controller/vm-spec.ts";
import { systemClock } from "../../src/core/clock.ts";
import { freePort } from "../../src/core/ports.ts";
import { run } from "../../src/core/run.ts";
import { writeSysfsFixture } from "../../src/host/fixture.ts";
import type { FixturePf } from "../../src/host/fixture.ts";
import { createFabric, destroyFabric, listNetns } from "../../src/lab/fabric.ts";
import { parseLinks } from "../../src/lab/fabric-links.ts";
import { TEST_NETNS_PREFIX } from "../../src/lab/fabric-plan.ts";
import type { Fabric } from "../../src/lab/fabric-plan.ts";
import { apartHostPaths, apartMigrationLine, labCerts } from "../../src/lab/lab-host-config.ts";
import { createApartHosts, destroyApartHosts, enterHost, holderPath, startHolder } from "../../src/lab/lab-hosts.ts";
import { APART_AGENT_PORT, LAB_LINK_TAG } from "../../src/lab/lab-hosts-plan.ts";
import type { ApartHost, ApartPlan } from "../../src/lab/lab-hosts-plan.ts";
import { CutProxy } from "./proxy.ts";

export const FERRY = fileURLToPath(new URL("../../bin/ferry", import.meta.url));

export interface Proc {
  child: ChildProcess;
  url: string;
  log: string;
}

/** Spawn `ferry <args>` (through `via`, a command that execs it: e.g. enterHost's nsenter) and wait for its "listening on" log line. */
export async function spawnFerry(args: string[], log: string, via: readonly string[] = []): Promise<Proc> {
  const [file, ...pre] = [...via, FERRY];
  const child = spawn(file, [...pre, ...args], { stdio: ["ignore", "pipe", "pipe"] });
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
  /** Apart: the holder of the host's namespaces (nsenter target, /proc/<pid>/root) and the host's place in the plan; null: shared. */
  holderPid: number | null;
  apart: ApartHost | null;
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

/** Token files (0600) and controller.yaml in `base`, for a controller on a free port of `address` (default loopback). */
export async function writeControllerSetup(base: string, o: { heartbeatTimeoutMs?: number; deadlines?: string; address?: string } = {}): Promise<ControllerSetup> {
  const address = o.address ?? "127.0.0.1";
  const agentTokenFile = join(base, "agent-token");
  const agentToken = randomBytes(32).toString("hex");
  await writeFile(agentTokenFile, `${agentToken}\n`, { mode: 0o600 });
  const controllerTokenFile = join(base, "controller-token");
  const controllerToken = randomBytes(32).toString("hex");
  await writeFile(controllerTokenFile, `${controllerToken}\n`, { mode: 0o600 });
  const port = await freePort(address);
  const controllerConfig = join(base, "controller.yaml");
  await writeFile(controllerConfig, [
    `listen: { address: ${address}, port: ${port} }`,
    `stateDir: cstate`,
    `tokenFile: controller-token`,
    `agentTokenFile: agent-token`,
    `heartbeatTimeoutMs: ${o.heartbeatTimeoutMs ?? 2500}`,
    `deadlines: ${o.deadlines ?? "{ unplugMs: 10000, convergeMs: 120000, precheckMs: 2000, primaryBackMs: 20000, stepMs: 60000 }"}`,
    ``,
  ].join("\n"));
  return { agentTokenFile, agentToken, controllerTokenFile, controllerToken, controllerConfig, port, ctl: { url: `http://${address}:${port}`, tokenFile: controllerTokenFile } };
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
  /**
   * Each host in namespaces of its own with a migration network and TLS on
   * the migration stream (default true); false: every agent in this
   * process's namespaces on 127.0.0.1, migrating over loopback.
   */
  apart?: boolean;
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
  /** Apart: the hosts' namespaces and cables (management bridge, migration network). */
  plan: ApartPlan | null = null;
  #controllerConfig = "";
  #controllerToken = "";
  /** The name of this cluster's fabric and apart hosts, once made (close() removes them). */
  #netName: string | null = null;

  static async up(o: TestClusterOptions): Promise<TestCluster> {
    const c = new TestCluster();
    await c.setUp(o);
    return c;
  }

  /** Set the cluster up; when a step fails, what was made is removed again before the error goes on. */
  protected async setUp(o: TestClusterOptions): Promise<void> {
    this.base = await mkdtemp(join(tmpdir(), o.prefix ?? "fc-"));
    try {
      await this.#setUp(o);
    } catch (e) {
      await this.close().catch(() => undefined);
      throw e;
    }
  }

  async #setUp(o: TestClusterOptions): Promise<void> {
    const apart = o.apart ?? true;
    if (o.fabric === true || apart) {
      await destroyOrphanFabrics();
      const networks = [...new Set(o.hosts.flatMap((h) => h.uplinks.map((u) => u.network)))].map((name) => {
        const { n, m } = networkSubnet(name);
        return { name, subnet: `10.${n}.${m}.0/24` };
      });
      const name = `${FABRIC_TAG}${process.pid}-${Date.now().toString(36).slice(-4)}`;
      this.#netName = name;
      // apart hosts need the switch namespace (their uplinks and the migration bridge are there) even when the test asks for no fabric
      const fabric = await createFabric({ name, prefix: TEST_NETNS_PREFIX, networks });
      if (o.fabric === true) this.fabric = fabric;
      if (apart) this.plan = await createApartHosts({ lab: name, prefix: TEST_NETNS_PREFIX, hosts: o.hosts.map((h) => h.name), networks: fabric.networks.map((n) => ({ name: n.name, bridge: n.bridge })) });
    }
    const setup = await writeControllerSetup(this.base, {
      ...(o.heartbeatTimeoutMs === undefined ? {} : { heartbeatTimeoutMs: o.heartbeatTimeoutMs }),
      ...(o.deadlines === undefined ? {} : { deadlines: o.deadlines }),
      ...(this.plan ? { address: this.plan.mgmt.ip } : {}),
    });
    this.#controllerToken = setup.controllerToken;
    this.#controllerConfig = setup.controllerConfig;
    // apart: each host's certificate names its management and migration addresses (TLS on the migration stream)
    const certs = this.plan ? await labCerts(this.base, this.plan.hosts.map((h) => ({ name: h.name, ips: [h.mgmtIp, h.migIp] }))) : null;
    const saveDir = join(this.base, "saves");
    if (this.plan) await mkdir(saveDir, { mode: 0o700 });
    await Promise.all(o.hosts.map((h) => this.#makeAgent(h, o, setup, certs ? { yaml: certs.yaml, saveDir } : null)));
    await this.startController();
    if (o.waitUp === true) await waitFor("every host up", async () => ((await this.api.hosts()).filter((h) => h.state === "up").length === o.hosts.length ? true : undefined), 20_000);
  }

  async #makeAgent(h: ClusterHost, o: TestClusterOptions, setup: ControllerSetup, apart: { yaml: (name: string) => string; saveDir: string } | null): Promise<void> {
    const dir = join(this.base, h.name);
    await mkdir(dir, { recursive: true });
    const pfs: FixturePf[] = h.uplinks.map((u) => ({ vendor: "intel-82599", numVfs: u.numVfs, numaNode: 0 }));
    const fx = await writeSysfsFixture(join(dir, "sys"), { pfs, seed: h.name });
    const ph = this.plan?.hosts.find((x) => x.name === h.name) ?? null;
    const address = ph?.mgmtIp ?? "127.0.0.1";
    const port = ph ? APART_AGENT_PORT : await freePort();
    // the proxies run here (root namespace), where the agents reach them: on the management bridge
    const proxyAt = this.plan?.mgmt.ip ?? "127.0.0.1";
    const ctlAddress = this.plan?.mgmt.ip ?? "127.0.0.1";
    const inbound = o.proxies === true ? await new CutProxy(port, { record: o.record === true, targetHost: address, listenHost: proxyAt }).listen() : null;
    const outbound = o.proxies === true ? await new CutProxy(setup.port, { targetHost: ctlAddress, listenHost: proxyAt }).listen() : null;
    const nets = [...new Set(h.uplinks.map((u) => u.network))];
    const bridged = (n: string): string => {
      const f = this.fabric?.networks.find((x) => x.name === n);
      if (!f || !this.fabric) return `  ${n}: {}`;
      // apart: the host's own bridge (in its namespace), uplinked to the fabric's
      return ph ? `  ${n}: { bridge: ${ph.uplinks.find((u) => u.network === n)!.hostBridge} }` : `  ${n}: { bridge: ${f.bridge}, netns: ${this.fabric.netns} }`;
    };
    const config = join(dir, "host.yaml");
    const head = ph && apart
      ? [...apartHostPaths(h.name), `authTokenFile: ${setup.agentTokenFile}`, `listen: { address: ${ph.mgmtIp}, port: ${port} }`, apartMigrationLine(ph.migIp, { yaml: apart.yaml(h.name) })]
      : agentYamlHead(h.name, port, setup.agentTokenFile);
    await writeFile(config, [
      ...head,
      `controller: { url: ${outbound?.url ?? setup.ctl.url}, tokenFile: ${setup.controllerTokenFile}, heartbeatMs: ${o.heartbeatMs ?? 700}${inbound ? `, advertiseUrl: ${inbound.url}` : ""} }`,
      ...(o.lab === true ? ["lab: true"] : []),
      `networks:`,
      ...nets.map(bridged),
      `uplinks:`,
      ...h.uplinks.flatMap((u, i) => [`  - pf: ${fx.pfs[i]!.bdf}`, `    network: ${u.network}`, `    standIns: { vfs: all, model: rtl8139 }`]),
      ``,
    ].join("\n"));
    const log = join(dir, "agent.log");
    const holderPid = ph && apart ? (await startHolder({ dir: this.base, host: ph, hostDir: dir, saveDir: apart.saveDir, log: join(dir, "holder.log") })).holderPid : null;
    // the agent enters its host's namespaces (nsenter execs it: the pid is the agent's)
    const proc = await spawnFerry(["agent", "--config", config], log, holderPid === null ? [] : enterHost(holderPid));
    const vfs: Record<string, string[]> = {};
    const pfMap: Record<string, string> = {};
    h.uplinks.forEach((u, i) => {
      (vfs[u.network] ??= []).push(...fx.pfs[i]!.vfs.map((v) => v.bdf));
      pfMap[u.network] = fx.pfs[i]!.bdf;
    });
    this.agents.set(h.name, { name: h.name, dir, config, log, proc, client: new AgentClient({ baseUrl: proc.url, token: setup.agentToken }), vfs, pfs: pfMap, inbound, outbound, holderPid, apart: ph });
  }

  /** A path of host `name`'s own view (its mount namespace: the paths its agent reports), as this process reaches it. */
  hostPath(name: string, path: string): string {
    const a = this.agent(name);
    return a.holderPid === null ? path : holderPath(a.holderPid, path);
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

  /** Start a killed agent again on its config, inside its host's namespaces when apart (the holder keeps them). */
  async restartAgent(name: string): Promise<void> {
    const a = this.agent(name);
    if (a.holderPid !== null && !alive(a.holderPid)) throw new Error(`${name}: the holder of its namespaces (pid ${a.holderPid}) is gone`);
    a.proc = await spawnFerry(["agent", "--config", a.config], a.log, a.holderPid === null ? [] : enterHost(a.holderPid));
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

  /** Stop every instance (SIGKILL one its agent cannot stop), the controller, the agents, the proxies, the hosts' holders and namespaces, the management bridge, the fabric; remove the directory (FERRY_KEEP_TEST_DIR keeps it). */
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
    if (this.#netName !== null) await destroyNet(this.#netName, { holders: [...this.agents.values()].flatMap((a) => (a.holderPid === null ? [] : [a.holderPid])), marker: this.base });
    if (process.env["FERRY_KEEP_TEST_DIR"] === undefined) await rm(this.base, { recursive: true, force: true });
    else process.stderr.write(`test dir kept: ${this.base}\n`);
  }
}

/**
 * Cluster fabrics and apart hosts are named fm-<pid>-<suffix> (namespaces
 * ferry-t-fm-<pid>-<suffix>[-<host>], root links aliased `ferry-lab
 * fm-<pid>-<suffix> …`): those whose test process is gone (killed before its
 * cleanup) are removed by the next cluster.
 */
const FABRIC_TAG = "fm-";
const NET_NAME = new RegExp(`^(${FABRIC_TAG}(\\d+)-[a-z0-9]+)(?:-|$)`);
/** A cluster's host names are the test's own (host-a, …), not a lab's host<N>: any name after the cluster's. */
const ANY_HOST = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Remove a cluster's apart hosts (every process in their namespaces, the namespaces, the root namespace's management bridge and veths) and its fabric. */
async function destroyNet(name: string, o: { holders?: readonly number[]; marker?: string } = {}): Promise<void> {
  await destroyApartHosts(name, { prefix: TEST_NETNS_PREFIX, hosts: ANY_HOST, ...o });
  await destroyFabric(name, { prefix: TEST_NETNS_PREFIX });
}

async function destroyOrphanFabrics(): Promise<void> {
  const names = new Set<string>();
  for (const ns of await listNetns({ prefix: TEST_NETNS_PREFIX })) {
    if (ns.startsWith(TEST_NETNS_PREFIX)) names.add(ns.slice(TEST_NETNS_PREFIX.length));
  }
  for (const l of parseLinks((await run("ip", ["-json", "link", "show"], { timeoutMs: 10_000 })).stdout)) {
    const a = l.alias?.split(" ");
    if (a?.[0] === LAB_LINK_TAG && a[1] !== undefined) names.add(a[1]);
  }
  const orphans = new Set<string>();
  for (const n of names) {
    const m = NET_NAME.exec(n);
    if (m && !alive(Number(m[2]))) orphans.add(m[1]!);
  }
  for (const name of orphans) await destroyNet(name);
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
