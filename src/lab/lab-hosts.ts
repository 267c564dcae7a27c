// An apart lab's hosts (side effects): their namespaces and cables
// (lab-hosts-plan.ts), their holders (host-holder.ts), the agent started
// inside a holder's namespaces, a host's files read from the root namespace,
// and the teardown that needs nothing but the lab's name.
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { readFile, readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import { systemClock } from "../core/clock.ts";
import { FerryError } from "../core/errors.ts";
import { pollUntil } from "../core/poll.ts";
import { run as defaultRun } from "../core/run.ts";
import type { Runner } from "../core/run.ts";
import * as v from "../model/validate.ts";
import { cmd } from "./fabric-commands.ts";
import type { Cmd } from "./fabric-commands.ts";
import { parseLinks, parseNetnsList } from "./fabric-links.ts";
import { apartHostCommands, apartSharedCommands, labHostNetns, labRootLinks, planApart } from "./lab-hosts-plan.ts";
import type { ApartHost, ApartInput, ApartPlan } from "./lab-hosts-plan.ts";
import type { NetnsPrefix } from "./fabric-plan.ts";
import { ownedAlive, spawnDetached, stopPid } from "./lab-process.ts";

const HOLDER = join(import.meta.dirname, "host-holder.ts");

async function exec(c: Cmd, run: Runner, allowFailure = false): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await run(c.file, c.args, { timeoutMs: 10_000, allowFailure: true });
  if (r.code !== 0 && !allowFailure && !c.optional) {
    throw new FerryError("FERRY_ERR_COMMAND", `${c.file} ${c.args.join(" ")}: ${r.stderr.trim() || `exit ${r.code}`}`, { details: { args: c.args } });
  }
  return r;
}

/** The root namespace's IPv4 addresses (with prefix): the lab's subnets keep clear of them. */
async function rootAddresses(run: Runner): Promise<string[]> {
  return parseLinks((await run("ip", ["-json", "addr", "show"], { timeoutMs: 10_000 })).stdout).flatMap((l) => l.addresses);
}

/** Plan the lab's hosts and cable them: the fabric (switch namespace) must exist. */
export async function createApartHosts(o: ApartInput & { run?: Runner }): Promise<ApartPlan> {
  const run = o.run ?? defaultRun;
  const plan = planApart({ ...o, taken: await rootAddresses(run) });
  const existing = parseNetnsList((await exec(cmd.netnsList(), run)).stdout);
  const left = plan.hosts.filter((h) => existing.includes(h.netns)).map((h) => h.netns);
  if (left.length > 0) throw new FerryError("FERRY_ERR_STATE", `lab ${o.lab}: namespaces ${left.join(", ")} exist already: run 'ferry lab down --name ${o.lab}' first`);
  for (const c of apartSharedCommands(plan)) await exec(c, run);
  for (const h of plan.hosts) for (const c of apartHostCommands(plan, h)) await exec(c, run);
  return plan;
}

/** How long a host's holder may take to set its namespaces up. */
const HOLDER_READY_MS = 15_000;

/**
 * Start a host's holder in its network namespace; resolves once it is ready,
 * with the holder's pid (the one to nsenter and to read /proc/<pid>/root of)
 * and the pid of the `unshare` that forked it.
 */
export async function startHolder(o: { dir: string; host: ApartHost; hostDir: string; saveDir: string; log: string }): Promise<{ holderPid: number; unsharePid: number }> {
  const fd = openSync(o.log, "a", 0o600);
  let child;
  try {
    child = spawn("ip", ["netns", "exec", o.host.netns, "unshare", "--mount", "--uts", "--propagation", "private", "--kill-child", "--", process.execPath, HOLDER, o.host.name, o.hostDir, o.saveDir], {
      detached: true,
      stdio: ["ignore", "pipe", fd],
    });
  } finally {
    closeSync(fd);
  }
  const unsharePid = child.pid;
  const stdout = child.stdout;
  if (unsharePid === undefined || stdout === null) throw new FerryError("FERRY_ERR_INTERNAL", `could not start the holder of ${o.host.name}`);
  // "ready", or why not: it exited (how), or not ready within the deadline
  const ready = await new Promise<true | string>((resolve) => {
    let out = "";
    systemClock.timeout(HOLDER_READY_MS).addEventListener("abort", () => resolve(`not ready within ${HOLDER_READY_MS / 1000} s`), { once: true });
    stdout.setEncoding("utf8");
    stdout.on("data", (d: string) => {
      out += d;
      if (out.includes("ready\n")) resolve(true);
    });
    child.once("exit", (code, signal) => resolve(`exited (${signal ?? `code ${String(code)}`})`));
    child.once("error", (e) => resolve(`could not start: ${e.message}`));
  });
  stdout.destroy();
  child.unref();
  if (ready !== true) {
    await stopPid(unsharePid, o.dir, "SIGKILL");
    // the holder's own last line says what failed (host-holder.ts writes one)
    const last = (await readFile(o.log, "utf8").catch(() => "")).trim().split("\n").at(-1) ?? "";
    throw new FerryError("FERRY_ERR_TIMEOUT", `the holder of ${o.host.name} ${ready}${last === "" ? "" : `: ${last}`}; see ${o.log}`);
  }
  const children = (await readFile(`/proc/${unsharePid}/task/${unsharePid}/children`, "utf8")).trim().split(/\s+/).map(Number);
  const holderPid = children[0];
  if (holderPid === undefined || !Number.isInteger(holderPid)) throw new FerryError("FERRY_ERR_INTERNAL", `the holder of ${o.host.name}: unshare (pid ${unsharePid}) has no child`);
  return { holderPid, unsharePid };
}

/** The argv prefix that runs a command inside a holder's network, mount and UTS namespaces (nsenter execs it: same pid). */
export function enterHost(holderPid: number): string[] {
  if (!Number.isInteger(holderPid) || holderPid <= 1) throw new FerryError("FERRY_ERR_INTERNAL", `holder pid ${holderPid} is not a process to enter`);
  // --root/--wd: the holder's own root and working directory. Entering a mount namespace resets a process's
  // root to the namespace's; when the lab runs chrooted (npm run test:fresh's clean root) that would be the
  // machine's root, where the agent's binary and files are not.
  return ["nsenter", "--target", String(holderPid), "--net", "--mount", "--uts", "--root", "--wd", "--"];
}

/** `ferry ARGS` inside a holder's network, mount and UTS namespaces, detached; its pid. */
export function spawnInHost(holderPid: number, args: string[], log: string): number {
  return spawnDetached(args, log, enterHost(holderPid));
}

/** A path of a host's own view (its mount namespace), as the root namespace reaches it: through the holder. */
export function holderPath(holderPid: number, path: string): string {
  if (!path.startsWith("/")) throw new FerryError("FERRY_ERR_INVALID", `${path}: a host path must be absolute`);
  return `/proc/${holderPid}/root${path}`;
}

/** The network namespace's identity (`net:[inode]`), as /proc/<pid>/ns/net reads. */
async function netnsId(netns: string): Promise<string | undefined> {
  return stat(`/run/netns/${netns}`).then((s) => `net:[${s.ino}]`, () => undefined);
}

/** Every process inside a host's namespace (holder, agent, QEMU: the lab put them all there), by pid, checked against the namespace. */
async function pidsIn(netns: string, run: Runner): Promise<number[]> {
  const id = await netnsId(netns);
  if (id === undefined) return [];
  const pids = (await exec(cmd.netnsPids(netns), run, true)).stdout.split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number);
  const inside: number[] = [];
  for (const pid of pids) if ((await readlink(`/proc/${pid}/ns/net`).catch(() => "")) === id) inside.push(pid);
  return inside;
}

/**
 * Remove an apart lab's hosts: every process in their namespaces (SIGKILL,
 * by pid), the namespaces, the root namespace's management bridge and veths.
 * Works from the names alone (after a crash too); harmless when there is
 * nothing. The switch namespace (and the migration bridge in it) is the fabric's.
 */
export async function destroyApartHosts(
  lab: string,
  o: { run?: Runner; log?: (line: string) => void; holders?: readonly number[]; marker?: string; prefix?: NetnsPrefix; hosts?: RegExp } = {},
): Promise<{ stopped: number }> {
  const run = o.run ?? defaultRun;
  const log = o.log ?? (() => undefined);
  let stopped = 0;
  // holders first, by recorded pid: unshare --kill-child takes the holder along
  for (const pid of o.holders ?? []) {
    if (o.marker !== undefined && (await ownedAlive(pid, o.marker))) {
      await stopPid(pid, o.marker, "SIGTERM");
      stopped++;
    }
  }
  const names = labHostNetns(parseNetnsList((await exec(cmd.netnsList(), run)).stdout), lab, { ...(o.prefix ? { prefix: o.prefix } : {}), ...(o.hosts ? { hosts: o.hosts } : {}) });
  for (const netns of names) {
    for (const pid of await pidsIn(netns, run)) {
      try {
        process.kill(pid, "SIGKILL");
        stopped++;
      } catch {
        // gone
      }
    }
    await pollUntil(systemClock, { timeoutMs: 5_000, everyMs: 50 }, async () => ((await pidsIn(netns, run)).length === 0 ? true : undefined));
    await exec(cmd.netnsDel(netns), run, true);
    log(`removed network namespace ${netns}`);
  }
  const links = parseLinks((await run("ip", ["-json", "-details", "addr", "show"], { timeoutMs: 10_000 })).stdout);
  // veths first (a bridge's deletion would leave them), then the bridge
  const mine = labRootLinks(links, lab).sort((a, b) => b.length - a.length);
  for (const ifname of mine) await exec({ file: "ip", args: ["link", "del", "dev", v.ifname("link", ifname)] }, run, true);
  if (mine.length > 0) log(`removed ${mine.join(", ")} from the root namespace`);
  return { stopped };
}
