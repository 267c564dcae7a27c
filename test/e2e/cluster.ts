// Shared by the e2e tests that run `ferry controller` and `ferry agent`s as
// real processes: free ports, spawning with a wait for "listening on",
// agents with their own sysfs fixture, config and log.
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AgentClient } from "../../src/agent/client.ts";
import { EXIT } from "../../src/cli/exit-codes.ts";
import { systemClock } from "../../src/core/clock.ts";
import { run } from "../../src/core/run.ts";
import { writeSysfsFixture } from "../../src/host/fixture.ts";
import type { FixturePf } from "../../src/host/fixture.ts";

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
  proc: Proc;
  client: AgentClient;
  /** VF BDFs per network. */
  vfs: Record<string, string[]>;
  pfs: Record<string, string>;
}

/** The first lines of a test agent's host.yaml: name, fixture, state and run dirs under its dir, token, loopback port. */
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

export function agentYamlHead(name: string, port: number, agentTokenFile: string): string[] {
  return [`name: ${name}`, `sysfsRoot: sys`, `stateDir: state`, `runDir: run`, `authTokenFile: ${agentTokenFile}`, `listen: { address: 127.0.0.1, port: ${port} }`];
}

export async function makeAgent(base: string, name: string, uplinks: { network: string; numVfs: number }[], agentTokenFile: string, controller: { url: string; tokenFile: string }): Promise<TestAgent> {
  const dir = join(base, name);
  await mkdir(dir, { recursive: true });
  const pfs: FixturePf[] = uplinks.map((u) => ({ vendor: "intel-82599", numVfs: u.numVfs, numaNode: 0 }));
  const fx = await writeSysfsFixture(join(dir, "sys"), { pfs, seed: name });
  const port = await freePort();
  const nets = [...new Set(uplinks.map((u) => u.network))];
  const yaml = [
    ...agentYamlHead(name, port, agentTokenFile),
    `controller: { url: ${controller.url}, tokenFile: ${controller.tokenFile}, heartbeatMs: 700 }`,
    `networks:`,
    ...nets.map((n) => `  ${n}: {}`),
    `uplinks:`,
    ...uplinks.flatMap((u, i) => [`  - pf: ${fx.pfs[i]!.bdf}`, `    network: ${u.network}`, `    standIns: { vfs: all, model: rtl8139 }`]),
    ``,
  ].join("\n");
  const config = join(dir, "host.yaml");
  await writeFile(config, yaml);
  const proc = await spawnFerry(["agent", "--config", config], join(dir, "agent.log"));
  const token = (await readFile(agentTokenFile, "utf8")).trim();
  const vfs: Record<string, string[]> = {};
  const pfMap: Record<string, string> = {};
  uplinks.forEach((u, i) => {
    (vfs[u.network] ??= []).push(...fx.pfs[i]!.vfs.map((v) => v.bdf));
    pfMap[u.network] = fx.pfs[i]!.bdf;
  });
  return { name, dir, config, proc, client: new AgentClient({ baseUrl: proc.url, token }), vfs, pfs: pfMap };
}

