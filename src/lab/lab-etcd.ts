// A lab's etcd cluster (`ferry lab up --store etcd`): three members of
// Debian's etcd (package etcd-server) on 127.0.0.1, ports asked of the
// kernel, data and logs in <labDir>/etcd. Started detached like the lab's
// other processes and recorded by pid in lab.json; their command lines name
// the lab dir (--data-dir), so `lab down` stops them by pid (ownedAlive) and
// removes the data with the dir. Plain HTTP on loopback: only this machine's
// controllers reach it.
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { systemClock } from "../core/clock.ts";
import { FerryError } from "../core/errors.ts";
import { pollUntil } from "../core/poll.ts";
import { freePorts } from "../core/ports.ts";
import { etcdEnv, etcdMemberArgs } from "../store/etcd-member.ts";
import { ownedAlive } from "./lab-process.ts";

export interface LabEtcdMember {
  name: string;
  pid: number;
  /** http://127.0.0.1:PORT, where controllers reach it */
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  log: string;
}

/** `etcd://127.0.0.1:A,127.0.0.1:B,…`, as a controller's `store:` takes it. */
export function etcdStoreUrl(members: readonly LabEtcdMember[]): string {
  return `etcd://${members.map((m) => new URL(m.clientUrl).host).join(",")}`;
}

function spawnMember(m: Omit<LabEtcdMember, "pid">, cluster: string, token: string): number {
  const fd = openSync(m.log, "a", 0o600);
  try {
    const args = etcdMemberArgs({ name: m.name, dataDir: m.dataDir, clientUrl: m.clientUrl, peerUrl: m.peerUrl, cluster, token });
    const env = etcdEnv();
    const child = spawn("etcd", args, { detached: true, stdio: ["ignore", fd, fd], env });
    child.once("error", () => undefined);
    child.unref();
    if (child.pid === undefined) throw new FerryError("FERRY_ERR_COMMAND", "cannot start etcd: is Debian's etcd-server installed? (npm run setup installs it)");
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** Start `count` members in <dir>/etcd and wait until each answers /health; each started is in `started` as soon as it runs (for the lab's state). */
export async function startLabEtcd(dir: string, count: number, started: (m: LabEtcdMember) => void, timeoutMs = 30_000): Promise<LabEtcdMember[]> {
  const base = join(dir, "etcd");
  await mkdir(base, { recursive: true, mode: 0o700 });
  // a client and a peer port per member, all distinct
  const free = await freePorts(2 * count);
  const planned: Omit<LabEtcdMember, "pid">[] = [];
  for (let i = 1; i <= count; i++) {
    const name = `etcd-${i}`;
    planned.push({ name, clientUrl: `http://127.0.0.1:${free[2 * i - 2]!}`, peerUrl: `http://127.0.0.1:${free[2 * i - 1]!}`, dataDir: join(base, name), log: join(base, `${name}.log`) });
  }
  const cluster = planned.map((m) => `${m.name}=${m.peerUrl}`).join(",");
  const token = `ferry-lab-${dir.split("/").pop() ?? "lab"}`;
  const members: LabEtcdMember[] = [];
  for (const p of planned) {
    const m = { ...p, pid: spawnMember(p, cluster, token) };
    members.push(m);
    started(m);
  }
  let last = "";
  const healthy = await pollUntil(systemClock, { timeoutMs, everyMs: 200 }, async () => {
    for (const m of members) {
      if (!(await ownedAlive(m.pid, dir))) throw new FerryError("FERRY_ERR_COMMAND", `etcd member ${m.name} (pid ${m.pid}) exited while starting; see ${m.log}`);
      try {
        const r = await fetch(`${m.clientUrl}/health`, { signal: systemClock.timeout(1_000) });
        const body = (await r.json()) as { health?: unknown };
        if (!r.ok || body.health !== "true") {
          last = `${m.name}: HTTP ${r.status} ${JSON.stringify(body)}`;
          return undefined;
        }
      } catch (e) {
        last = `${m.name}: ${e instanceof Error ? e.message : String(e)}`;
        return undefined;
      }
    }
    return true;
  });
  if (!healthy) throw new FerryError("FERRY_ERR_TIMEOUT", `the lab's etcd cluster was not healthy within ${timeoutMs} ms (${last}); see the logs in ${base}`);
  return members;
}
