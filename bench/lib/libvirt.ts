// Two libvirt daemons on this machine, for the libvirt row of
// bench/overhead.ts: Debian's libvirtd (installed by `FERRY_SETUP_BENCH=1
// scripts/setup.sh`), each in its own mount and UTS namespace (a held
// `unshare` process; every command is an argv, entered with nsenter) with its
// own /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and
// /var/log/libvirt bound from a temporary dir, its own hostname and
// host_uuid (libvirt refuses to migrate to "the same host"), /etc/passwd
// and /etc/group copies naming the libvirt-qemu user the QEMU driver resolves
// at start (libvirt-daemon-system would create it on the host), the QEMU driver
// with security_driver = "none", no cgroups and no QEMU namespaces. Only the
// daemons and holders started here are stopped, by pid.
import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { access, mkdir, readFile, rm, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../src/core/run.ts";

export interface LibvirtDaemon {
  name: string;
  uri: string;
  holder: ChildProcess;
  daemon: ChildProcess;
  dir: string;
}

export interface LibvirtPair {
  a: LibvirtDaemon;
  b: LibvirtDaemon;
  /** Host dirs this module created as mount points (removed again at stop). */
  created: string[];
  dir: string;
}

const TARGETS = { etc: "/etc/libvirt", run: "/run/libvirt", lib: "/var/lib/libvirt", cache: "/var/cache/libvirt", log: "/var/log/libvirt" } as const;

/** Why libvirt cannot run here, or undefined. */
export async function libvirtMissing(): Promise<string | undefined> {
  for (const bin of ["/usr/sbin/libvirtd", "/usr/bin/virsh", "/usr/bin/unshare", "/usr/bin/nsenter"]) {
    try {
      await access(bin);
    } catch {
      return `${bin} is missing: run FERRY_SETUP_BENCH=1 scripts/setup.sh (installs libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients)`;
    }
  }
  if (process.getuid?.() !== 0) return "not root: the libvirt daemons need mount namespaces";
  return undefined;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} within ${timeoutMs} ms`);
}

async function startOne(root: string, name: string, ports: [number, number], log: string): Promise<LibvirtDaemon> {
  const dir = join(root, name);
  for (const k of Object.keys(TARGETS)) await mkdir(join(dir, k), { recursive: true, mode: 0o700 });
  await mkdir(join(dir, "etc", "qemu"), { recursive: true });
  await writeFile(join(dir, "etc", "libvirtd.conf"), [
    `host_uuid = "${randomUUID()}"`,
    `unix_sock_rw_perms = "0700"`,
    `auth_unix_rw = "none"`,
    `auth_unix_ro = "none"`,
    `log_outputs = "3:file:${join(dir, "log", "libvirtd.log")}"`,
    "",
  ].join("\n"));
  await writeFile(join(dir, "etc", "qemu.conf"), [
    `security_driver = "none"`,
    `user = "root"`,
    `group = "root"`,
    `dynamic_ownership = 0`,
    `remember_owner = 0`,
    `namespaces = [ ]`,
    `cgroup_controllers = [ ]`,
    `stdio_handler = "file"`,
    `migration_port_min = ${ports[0]}`,
    `migration_port_max = ${ports[1]}`,
    "",
  ].join("\n"));
  const holder = spawn("unshare", ["--mount", "--uts", "--propagation", "private", "--", "sleep", "86400"], { stdio: "ignore" });
  const pid = holder.pid;
  if (pid === undefined) throw new Error("could not start unshare");
  const ns = ["-t", String(pid), "-m", "-u", "--"];
  await waitFor(async () => (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).startsWith("sleep"), 5_000, "unshare did not exec sleep");
  for (const f of ["passwd", "group"]) {
    const text = await readFile(`/etc/${f}`, "utf8");
    const line = f === "passwd" ? "libvirt-qemu:x:64055:64055:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin" : "libvirt-qemu:x:64055:";
    await writeFile(join(dir, f), /^libvirt-qemu:/m.test(text) ? text : `${text.trimEnd()}\n${line}\n`);
  }
  const binds: [string, string][] = [...Object.entries(TARGETS).map(([k, t]): [string, string] => [join(dir, k), t]), [join(dir, "passwd"), "/etc/passwd"], [join(dir, "group"), "/etc/group"]];
  for (const [from, target] of binds) await run("nsenter", [...ns, "mount", "--bind", from, target], { timeoutMs: 5_000 });
  await run("nsenter", [...ns, "hostname", `ferry-bench-${name}`], { timeoutMs: 5_000 });
  const out = openSync(log, "a");
  const daemon = spawn("nsenter", [...ns, "/usr/sbin/libvirtd", "--config", "/etc/libvirt/libvirtd.conf", "--pid-file", "/run/libvirt/libvirtd.pid"], { stdio: ["ignore", out, out] });
  const uri = `qemu:///system?socket=${join(dir, "run", "libvirt-sock")}`;
  closeSync(out);
  const d: LibvirtDaemon = { name, uri, holder, daemon, dir };
  try {
    // the first connection waits for the QEMU driver to probe QEMU's capabilities (seconds under TCG)
    await waitFor(async () => (await run("virsh", ["-c", uri, "version"], { allowFailure: true, timeoutMs: 30_000 }).catch(() => ({ code: 1 }))).code === 0, 120_000, `libvirtd ${name} did not answer (see ${log})`);
  } catch (e) {
    const tail = (await readFile(join(dir, "log", "libvirtd.log"), "utf8").catch(() => "")).split("\n").filter((l) => / error : /.test(l)).slice(-3).join("; ");
    await stopOne(d);
    throw new Error(`${e instanceof Error ? e.message : String(e)}; libvirtd errors: ${tail || "none logged"}`);
  }
  return d;
}

async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return;
  const exited = new Promise<void>((r) => c.once("exit", () => r()));
  c.kill("SIGTERM");
  const t = setTimeout(() => c.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(t);
}

async function stopOne(d: LibvirtDaemon): Promise<void> {
  // domains still running under this daemon: destroy them through it
  const list = await run("virsh", ["-c", d.uri, "list", "--name"], { allowFailure: true, timeoutMs: 10_000 }).catch(() => ({ code: 1, stdout: "" }));
  for (const dom of list.code === 0 ? list.stdout.split("\n").map((s) => s.trim()).filter(Boolean) : []) {
    await run("virsh", ["-c", d.uri, "destroy", dom], { allowFailure: true, timeoutMs: 10_000 }).catch(() => undefined);
  }
  await stopChild(d.daemon);
  await stopChild(d.holder); // the namespace (and its bind mounts) goes with its last process
}

/** Start both daemons; `log` collects their stdout/stderr. */
export async function startLibvirtPair(root: string, log: string): Promise<LibvirtPair> {
  const created: string[] = [];
  for (const target of Object.values(TARGETS)) {
    try {
      await access(target);
    } catch {
      await mkdir(target, { recursive: true });
      created.push(target);
    }
  }
  const pair: Partial<LibvirtPair> = { created, dir: root };
  try {
    pair.a = await startOne(root, "lv1", [49152, 49171], log);
    pair.b = await startOne(root, "lv2", [49172, 49191], log);
    return pair as LibvirtPair;
  } catch (e) {
    await stopLibvirtPair(pair);
    throw e;
  }
}

export async function stopLibvirtPair(p: Partial<LibvirtPair>): Promise<void> {
  if (p.a) await stopOne(p.a);
  if (p.b) await stopOne(p.b);
  for (const d of (p.created ?? []).reverse()) await rmdir(d).catch(() => undefined);
  if (p.dir) await rm(p.dir, { recursive: true, force: true });
}

/** A transient TCG domain running the test guest (direct kernel boot, no disk, no NIC). */
export function domainXml(o: { name: string; uuid: string; memoryMiB: number; kernel: string; initrd: string; cmdline: string; serialLog: string }): string {
  const esc = (s: string): string => s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll("'", "&apos;");
  return `<domain type='qemu'>
  <name>${esc(o.name)}</name>
  <uuid>${o.uuid}</uuid>
  <memory unit='MiB'>${o.memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>${esc(o.kernel)}</kernel>
    <initrd>${esc(o.initrd)}</initrd>
    <cmdline>${esc(o.cmdline)}</cmdline>
  </os>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='${esc(o.serialLog)}' append='on'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

/**
 * A bench's libvirt pair under `runDir`, or the note why there is none
 * (FERRY_BENCH_LIBVIRT=0, libvirt not installed, or it did not start),
 * printed once.
 */
export async function benchLibvirtPair(runDir: string): Promise<{ pair?: LibvirtPair; note?: string }> {
  let note = process.env["FERRY_BENCH_LIBVIRT"] === "0" ? "skipped (FERRY_BENCH_LIBVIRT=0)" : await libvirtMissing();
  if (note === undefined) {
    try {
      return { pair: await startLibvirtPair(join(runDir, "libvirt"), join(runDir, "libvirtd.out")) };
    } catch (e) {
      note = `libvirt could not start: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
  console.log(`libvirt: ${note}`);
  return { note };
}
