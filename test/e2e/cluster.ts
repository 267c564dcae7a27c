// Shared by the e2e tests that run `ferry controller` and `ferry agent`s as
// real processes: free ports, spawning with a wait for "listening on",
// agents with their own sysfs fixture, config and log.
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AgentClient } from "../../src/agent/client.ts";
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

