// For the controller API's tests: a real Controller on in-memory SQLite and a
// fake clock, behind the real fastify app (requests by app.inject), with no
// agents (their fetch fails, as with agents that are down); or (liveCluster)
// with real agents in this process, everything on loopback.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { Agent } from "../agent/agent.ts";
import { buildAgentApp } from "../agent/http/app.ts";
import { makeTestHost } from "../agent/testing.ts";
import type { TestHost } from "../agent/testing.ts";
import { systemClock } from "../core/clock.ts";
import { guestImagePaths } from "../model/guest-image.ts";
import { Controller } from "../controller/controller.ts";
import { DEFAULT_DEADLINES } from "../controller/config.ts";
import type { Deadlines } from "../migration/types.ts";
import { FakeClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import { SqliteClusterStore } from "../store/cluster.ts";
import { SqliteStore } from "../store/sqlite.ts";
import { buildControllerApp } from "./app.ts";

export const TEST_TOKEN = "t".repeat(32);

/** The controller, its stores, clock and app; closed after the test file. */
export function memoryControllerApp(o: { fetch?: typeof fetch; heartbeatTimeoutMs?: number } = {}): { clock: FakeClock; store: SqliteStore; cluster: SqliteClusterStore; controller: Controller; app: ReturnType<typeof buildControllerApp>; auth: { authorization: string } } {
  const clock = new FakeClock();
  const store = new SqliteStore(":memory:");
  const cluster = new SqliteClusterStore(":memory:");
  const controller = new Controller({
    config: { heartbeatTimeoutMs: o.heartbeatTimeoutMs ?? 6000, hostCapacity: { memoryMiB: 16384, vcpus: 16 }, deadlines: DEFAULT_DEADLINES },
    store, cluster, clock, log: silentLogger, agentToken: "a".repeat(32), guestImage: () => Promise.resolve({ kernel: "/k", initrd: "/i" }),
    fetch: o.fetch ?? (() => Promise.reject(new Error("no agents in this test"))),
  });
  const app = buildControllerApp({ controller, token: TEST_TOKEN, version: "0.0.0", clock });
  after(async () => {
    await app.close();
    store.close();
    cluster.close();
  });
  return { clock, store, cluster, controller, app, auth: { authorization: `Bearer ${TEST_TOKEN}` } };
}

export interface LiveHost {
  name: string;
  network: string;
  numVfs: number;
}

export interface LiveCluster {
  controller: Controller;
  /** The controller API's URL (loopback) and a file holding its token: what `ferry` needs (FERRY_CONTROLLER, FERRY_TOKEN_FILE). */
  url: string;
  tokenFile: string;
  /** An environment for spawning bin/ferry against this controller (no context file). */
  env: NodeJS.ProcessEnv;
  agents: Map<string, Agent>;
  hosts: Map<string, TestHost>;
  /** The controller's cluster store, for a test that needs a record an older Ferry wrote. */
  cluster: SqliteClusterStore;
  close(): Promise<void>;
}

/**
 * For CLI and API tests that need hosts: a real Controller (in-memory SQLite,
 * the system clock) and real agents in this process (sysfs fixtures with
 * stand-in VFs, one network each), every API on loopback, the agents
 * registered by a heartbeat. VMs started here are real QEMU processes.
 */
export async function liveCluster(hostsWanted: readonly LiveHost[], o: { deadlines?: Partial<Deadlines> } = {}): Promise<LiveCluster> {
  const agentToken = "a".repeat(32);
  const store = new SqliteStore(":memory:");
  const cluster = new SqliteClusterStore(":memory:");
  const controller = new Controller({
    config: { heartbeatTimeoutMs: 60_000, hostCapacity: { memoryMiB: 16384, vcpus: 16 }, deadlines: { ...DEFAULT_DEADLINES, ...o.deadlines } },
    store, cluster, clock: systemClock, log: silentLogger, agentToken, guestImage: () => guestImagePaths(),
  });
  const hosts = new Map<string, TestHost>();
  const agents = new Map<string, Agent>();
  const apps: { close(): Promise<unknown> }[] = [];
  const dirs: string[] = [];
  const close = async (): Promise<void> => {
    for (const a of agents.values()) for (const i of (await a.listInstances()).instances) await a.stopInstance(i.instanceId).catch(() => undefined);
    for (const app of apps.reverse()) await app.close();
    for (const a of agents.values()) await a.close();
    for (const h of hosts.values()) await h.cleanup();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
    store.close();
    cluster.close();
  };
  try {
    for (const w of hostsWanted) {
      const host = await makeTestHost({ name: w.name, network: w.network, numVfs: w.numVfs });
      hosts.set(w.name, host);
      const agent = await Agent.open({ config: host.config });
      agents.set(w.name, agent);
      const app = buildAgentApp({ agent, token: agentToken });
      apps.push(app);
      const url = await app.listen({ host: "127.0.0.1", port: 0 });
      await controller.heartbeat({ name: w.name, url, version: agent.version, accel: agent.accel.accel });
    }
    const app = buildControllerApp({ controller, token: TEST_TOKEN, version: "0.0.0" });
    apps.push(app);
    const url = await app.listen({ host: "127.0.0.1", port: 0 });
    const dir = await mkdtemp(join(tmpdir(), "fl-"));
    dirs.push(dir);
    const tokenFile = join(dir, "controller-token");
    await writeFile(tokenFile, `${TEST_TOKEN}\n`, { mode: 0o600 });
    const env = { ...process.env, FERRY_CONTROLLER: url, FERRY_TOKEN_FILE: tokenFile, FERRY_CONTEXT: join(dir, "no-context.json") };
    return { controller, url, tokenFile, env, agents, hosts, cluster, close };
  } catch (e) {
    await close();
    throw e;
  }
}
