// Leader takeover time on etcd (issue 15 item 6): three etcd members (Debian's
// etcd-server, by pid, src/store/testing/etcd-cluster.ts) and three `ferry
// controller` processes with the default election (lease 2 s, renewed every
// 500 ms). N times (default 20; --quick 5): SIGKILL the leader, time until a
// surviving controller names another leader (GET /v1/controllers, polled
// every 10 ms), start the killed one again as a follower. Prints p50, p99
// and max and writes bench/results/takeover.json.
//   scripts/rt node bench/takeover.ts [--quick]      FERRY_BENCH_ROUNDS=N
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ControllerClient } from "../src/api/client.ts";
import { systemClock } from "../src/core/clock.ts";
import { DEFAULT_LEASE_MS } from "../src/controller/config.ts";
import { EtcdCluster, freePorts } from "../src/store/testing/etcd-cluster.ts";
import { benchRounds, machine, median, table, writeResult } from "./lib/report.ts";

const FERRY = fileURLToPath(new URL("../bin/ferry", import.meta.url));
const KILLS = benchRounds(20, 5);

interface Ctl {
  config: string;
  log: string;
  url: string;
  api: ControllerClient;
  child: ChildProcess | null;
}

function start(c: Ctl): Promise<void> {
  const child = spawn(FERRY, ["controller", "--config", c.config], { stdio: ["ignore", "ignore", "pipe"] });
  const out = createWriteStream(c.log, { flags: "a" });
  c.child = child;
  return new Promise((resolve, reject) => {
    let text = "";
    const t = setTimeout(() => reject(new Error(`controller not listening after 20 s:\n${text}`)), 20_000);
    child.stderr.on("data", (b: Buffer) => {
      out.write(b);
      text += b.toString();
      if (text.includes("listening on")) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once("exit", (code) => reject(new Error(`controller exited (${String(code)}):\n${text}`)));
  });
}

async function killed(c: Ctl): Promise<void> {
  const child = c.child;
  c.child = null;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await gone;
}

/** The leader as the first running controller that answers names it. */
async function leaderUrl(ctls: Ctl[], not?: string): Promise<string | null> {
  for (const c of ctls) {
    if (c.child === null || c.url === not) continue;
    const v = await c.api.controllers({ timeoutMs: 1_000 }).catch(() => null);
    if (v) return v.leader?.url ?? null;
  }
  return null;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "fbt-"));
  const etcd = await EtcdCluster.start({ members: 3 });
  const ctls: Ctl[] = [];
  try {
    const token = randomBytes(32).toString("hex");
    await writeFile(join(dir, "agent-token"), `${token}\n`, { mode: 0o600 });
    await writeFile(join(dir, "controller-token"), `${token}\n`, { mode: 0o600 });
    const ports = await freePorts(3);
    for (const [i, port] of ports.entries()) {
      const config = join(dir, `controller-${i}.yaml`);
      await writeFile(config, [`listen: { address: 127.0.0.1, port: ${port} }`, `stateDir: state-${i}`, `tokenFile: controller-token`, `agentTokenFile: agent-token`, `store: ${etcd.storeUrl}`, ``].join("\n"));
      const url = `http://127.0.0.1:${port}`;
      ctls.push({ config, log: join(dir, `controller-${i}.log`), url, api: new ControllerClient({ baseUrl: url, token }), child: null });
    }
    for (const c of ctls) await start(c);
    const samples: number[] = [];
    for (let k = 0; k < KILLS; k++) {
      let leader: string | null = null;
      while (leader === null) leader = await leaderUrl(ctls);
      const victim = ctls.find((c) => c.url === leader)!;
      const t0 = systemClock.monotonic();
      await killed(victim);
      let next: string | null = null;
      while (next === null || next === leader) {
        next = await leaderUrl(ctls, leader);
        if (next === null || next === leader) await systemClock.sleep(10);
        if (systemClock.monotonic() - t0 > 30_000) throw new Error(`no takeover within 30 s after kill ${k + 1}`);
      }
      samples.push(systemClock.monotonic() - t0);
      console.log(`kill ${k + 1}/${KILLS}: ${samples.at(-1)!.toFixed(0)} ms`);
      await start(victim);
    }
    const sorted = [...samples].sort((a, b) => a - b);
    const p99 = sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)]!;
    const row = { kills: samples.length, leaseMs: DEFAULT_LEASE_MS, p50Ms: Math.round(median(samples)), p99Ms: Math.round(p99), maxMs: Math.round(sorted.at(-1)!), minMs: Math.round(sorted[0]!) };
    console.log(`\n${table(["KILLS", "LEASE", "P50", "P99", "MAX", "MIN"], [[row.kills, `${row.leaseMs} ms`, `${row.p50Ms} ms`, `${row.p99Ms} ms`, `${row.maxMs} ms`, `${row.minMs} ms`]])}`);
    console.log(`\nwrote ${writeResult("takeover", { ...row, samplesMs: samples.map((x) => Math.round(x)), machine: machine("n/a") })}`);
  } finally {
    for (const c of ctls) await killed(c);
    await etcd.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
