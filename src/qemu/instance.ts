// A QEMU instance: one process of one VM, with its own id and runtime dir
// `<runDir>/<vm-uuid>/<instance-id>/` (QMP socket, pidfile, serial log,
// meta.json). VM identity (uuid) and instance identity are separate, so two
// instances of one VM coexist during a local migration. Instances are
// detached from the process that started them: a restarted agent reconnects.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, constants, openSync } from "node:fs";
import { chmod, lstat, mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { systemClock } from "../core/clock.ts";
import type { Clock } from "../core/clock.ts";
import { FerryError, isFerryError } from "../core/errors.ts";
import type { VmSpec } from "../model/vm.ts";
import { QmpClient } from "../qmp/client.ts";
import { quit } from "../qmp/commands.ts";
import type { Accel } from "./accel.ts";
import { buildArgv } from "./argv.ts";

export const INSTANCE_ID_RE = /^i-[0-9a-f]{8}$/;
/** INSTANCE_ID_RE in words, for messages. */
export const INSTANCE_ID_RULE = "an instance id is 'i-' and 8 lower-case hex digits, e.g. i-0a1b2c3d ('ferry vm show NAME' shows a VM's)";
const MAX_UNIX_PATH = 107;

export function newInstanceId(): string {
  return `i-${randomBytes(4).toString("hex")}`;
}

export interface InstanceMeta {
  instanceId: string;
  vmUuid: string;
  vmName: string;
  pid: number;
  startedAt: number;
  qemuBinary: string;
  incoming: boolean;
  netns: string | undefined;
  accel: Accel;
  spec: VmSpec;
  /** The file guest RAM is mapped from (spec.sharedMemory), chosen by the agent; shared with the next instance by a local migration. */
  ramFile?: string;
}

export interface InstancePaths {
  dir: string;
  qmpSocket: string;
  pidfile: string;
  serialLog: string;
  /** The guest serial console's socket (input; output also goes to serialLog). */
  serialSocket: string;
  qemuLog: string;
  meta: string;
}

export function instancePaths(runDir: string, vmUuid: string, instanceId: string): InstancePaths {
  return pathsIn(join(runDir, vmUuid, instanceId));
}

/** The files of the instance whose runtime dir is `dir`. */
export function pathsIn(dir: string): InstancePaths {
  return {
    dir,
    qmpSocket: join(dir, "qmp.sock"),
    pidfile: join(dir, "qemu.pid"),
    serialLog: join(dir, "serial.log"),
    serialSocket: join(dir, "serial.sock"),
    qemuLog: join(dir, "qemu.log"),
    meta: join(dir, "meta.json"),
  };
}

export interface StartOptions {
  runDir: string;
  spec: VmSpec;
  accel: Accel;
  instanceId?: string;
  incoming?: boolean;
  qemuBinary?: string;
  /** Run QEMU inside this network namespace (`ip netns exec NS qemu …`). */
  netns?: string;
  signal?: AbortSignal;
  /** Time allowed for QEMU to come up with its QMP socket (default 20 s). */
  timeoutMs?: number;
  clock?: Clock;
  /**
   * Guest RAM file (required when spec.sharedMemory): `create` makes it,
   * owner-only, before QEMU maps it; otherwise it must exist already (a local
   * migration's new instance maps its predecessor's file).
   */
  ram?: { file: string; create: boolean };
}

/**
 * The RAM file an instance creates under the agent's memory dir: named after
 * the VM and that instance, so a VM that comes back to a host never maps an
 * earlier instance's file (an incoming migration skips zero pages: a reused
 * file would keep stale memory in them).
 */
export function ramFilePath(memoryDir: string, vmUuid: string, instanceId: string): string {
  return join(memoryDir, `${vmUuid}.${instanceId}.ram`);
}

const uid = (): number => process.getuid?.() ?? 0;

/**
 * Make `dir` (if missing) an owner-only directory of this process's user.
 * Refuses a symlink or a directory of another user: it may sit in a
 * world-writable place (/dev/shm), where anyone can create names first.
 */
export async function ownerOnlyDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== uid()) {
    throw new FerryError("FERRY_ERR_CONFIG", `${dir} is ${st.isSymbolicLink() ? "a symbolic link" : !st.isDirectory() ? "not a directory" : `owned by uid ${st.uid}`}, not a directory of this agent's user: remove it, or set memoryDir in the host config to another directory`, { details: { dir } });
  }
  if ((st.mode & 0o077) !== 0) await chmod(dir, 0o700);
}

/** Create an empty owner-only RAM file (QEMU sizes it); never through a symlink. */
async function createRamFile(file: string): Promise<void> {
  await ownerOnlyDir(dirname(file));
  const flags = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW;
  const h = await open(file, flags, 0o600).catch(async (e: unknown) => {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    await rm(file, { force: true }); // a leftover of this agent's own (the dir is owner-only)
    return open(file, flags, 0o600);
  });
  try {
    await h.chmod(0o600); // whatever the umask
  } finally {
    await h.close();
  }
}

/** An existing RAM file to map again: a regular owner-only file of this user. */
async function checkRamFile(file: string): Promise<void> {
  const st = await lstat(file).catch((e: unknown) => {
    throw new FerryError("FERRY_ERR_STATE", `the guest RAM file ${file} is gone: the VM's RAM cannot be shared with a new instance; migrate it to another host instead`, { cause: e, details: { file } });
  });
  if (!st.isFile() || st.uid !== uid() || (st.mode & 0o077) !== 0) {
    throw new FerryError("FERRY_ERR_STATE", `the guest RAM file ${file} is not an owner-only regular file of this agent's user: refusing to map it`, { details: { file } });
  }
}

/** True when the pid is a live (non-zombie) process whose command line mentions `marker`. */
/** The process exists, is no zombie, and has no command line left: it is in the middle of exiting. */
export async function processExiting(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if (state === "Z" || state === "X") return false;
    return (await readFile(`/proc/${pid}/cmdline`, "utf8")) === "";
  } catch {
    return false;
  }
}

export async function processAlive(pid: number, marker?: string): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    if (state === "Z" || state === "X") return false;
    if (marker !== undefined) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
      if (!cmdline.includes(marker)) return false;
    }
  } catch {
    return false;
  }
  return true;
}

export class Instance {
  readonly meta: InstanceMeta;
  readonly paths: InstancePaths;
  readonly qmp: QmpClient;
  readonly #clock: Clock;
  /** An operator changed the outgoing migration's limits while it streamed (the agent's parameters route): Ferry's downtime steps leave them alone. A migration's perform clears it. */
  limitsSetLive = false;
  /**
   * When the guest's kernel panicked (QEMU's GUEST_PANICKED, epoch ms, QEMU's
   * timestamp), first time only; undefined while it has not since this agent
   * connected to the QEMU (a panic before an agent restart is not seen).
   */
  guestPanickedAt: number | undefined;

  constructor(meta: InstanceMeta, paths: InstancePaths, qmp: QmpClient, clock: Clock) {
    this.meta = meta;
    this.paths = paths;
    this.qmp = qmp;
    this.#clock = clock;
    qmp.onEvent((e) => {
      if (e.event === "GUEST_PANICKED") this.guestPanickedAt ??= e.timestampUs > 0 ? Math.round(e.timestampUs / 1000) : clock.now();
    });
  }

  get id(): string {
    return this.meta.instanceId;
  }

  get pid(): number {
    return this.meta.pid;
  }

  alive(): Promise<boolean> {
    return processAlive(this.meta.pid, this.paths.qmpSocket);
  }

  /**
   * Wait until the process is gone; false if still alive at the deadline. A
   * process that is exiting has already lost its command line (its memory is
   * being torn down: a 1 GiB guest takes a while), so alive() says no while
   * it still holds the guest's RAM: wait for that too.
   */
  async waitExit(timeoutMs: number): Promise<boolean> {
    const until = this.#clock.monotonic() + timeoutMs;
    while ((await this.alive()) || (await processExiting(this.meta.pid))) {
      if (this.#clock.monotonic() >= until) return false;
      await this.#clock.sleep(20);
    }
    return true;
  }

  /** Stop the instance: QMP `quit`, then SIGKILL by pid if it lingers. Idempotent. */
  async stop(options: { timeoutMs?: number } = {}): Promise<void> {
    if (!this.qmp.closed) {
      await quit(this.qmp, { timeoutMs: 2_000 }).catch(() => undefined);
    }
    if (!(await this.waitExit(options.timeoutMs ?? 5_000))) this.kill();
    await this.waitExit(5_000);
    this.qmp.close();
  }

  /** SIGKILL by recorded pid (only if the pid is still this instance). */
  kill(): void {
    try {
      process.kill(this.meta.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }

  /** Persist meta.json after the instance's devices changed (hot-plug), so a reconnecting agent sees them. */
  async saveMeta(): Promise<void> {
    await writeFile(this.paths.meta, JSON.stringify(this.meta, null, 2), { mode: 0o600 });
  }

  /** Remove the runtime dir (after stop), keeping its logs (see removeInstanceDir). */
  async remove(): Promise<void> {
    await removeInstanceDir(this.paths.dir);
  }
}

/** How many stopped instances' logs an agent keeps under `<runDir>/logs/`. */
export const KEPT_LOGS = 32;
const LOGS_DIR = "logs";

/**
 * Remove an instance's runtime dir `<runDir>/<vm-uuid>/<instance-id>/`, but
 * first move its logs (qemu.log, serial.log, meta.json) to
 * `<runDir>/logs/<instance-id>/`: when a guest or QEMU dies, the operator's
 * first question is what it printed. Only the newest KEPT_LOGS are kept.
 */
export async function removeInstanceDir(dir: string): Promise<void> {
  const id = basename(dir);
  if (INSTANCE_ID_RE.test(id)) {
    const logs = join(dirname(dirname(dir)), LOGS_DIR);
    const keep = join(logs, id);
    try {
      await mkdir(keep, { recursive: true, mode: 0o700 });
      const p = pathsIn(dir);
      for (const f of [p.qemuLog, p.serialLog, p.meta]) await rename(f, join(keep, basename(f))).catch(() => undefined);
      await pruneLogs(logs);
    } catch {
      // keeping logs is best effort: never block removing a dead instance
    }
  }
  await rm(dir, { recursive: true, force: true });
}

async function pruneLogs(logs: string): Promise<void> {
  const entries = await readdir(logs);
  if (entries.length <= KEPT_LOGS) return;
  const aged = await Promise.all(entries.map(async (e) => ({ e, t: (await stat(join(logs, e)).catch(() => null))?.mtimeMs ?? 0 })));
  aged.sort((a, b) => a.t - b.t);
  for (const { e } of aged.slice(0, aged.length - KEPT_LOGS)) await rm(join(logs, e), { recursive: true, force: true });
}

async function qemuLogTail(path: string): Promise<string> {
  const text = await readFile(path, "utf8").catch(() => "");
  return text.trim().split("\n").slice(-10).join("\n");
}

export async function startInstance(o: StartOptions): Promise<Instance> {
  const clock = o.clock ?? systemClock;
  const instanceId = o.instanceId ?? newInstanceId();
  if (!INSTANCE_ID_RE.test(instanceId)) {
    throw new FerryError("FERRY_ERR_INVALID", `instanceId: ${INSTANCE_ID_RULE} (got ${JSON.stringify(instanceId)})`);
  }
  const paths = instancePaths(o.runDir, o.spec.uuid, instanceId);
  if (Buffer.byteLength(paths.qmpSocket) > MAX_UNIX_PATH) {
    throw new FerryError("FERRY_ERR_CONFIG", `runtime dir too deep: QMP socket path ${paths.qmpSocket} exceeds ${MAX_UNIX_PATH} bytes; choose a shorter runDir`);
  }
  if (Buffer.byteLength(paths.serialSocket) > MAX_UNIX_PATH) {
    throw new FerryError("FERRY_ERR_CONFIG", `runtime dir too deep: serial console socket path ${paths.serialSocket} exceeds ${MAX_UNIX_PATH} bytes; choose a shorter runDir`);
  }
  if ((o.spec.sharedMemory === true) !== (o.ram !== undefined)) {
    throw new FerryError("FERRY_ERR_INTERNAL", `VM ${o.spec.name}: a RAM file ${o.ram ? "given for a VM without" : "missing for a VM with"} shared memory`);
  }
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  if (o.ram?.create === true) await createRamFile(o.ram.file);
  else if (o.ram) await checkRamFile(o.ram.file);
  try {
    return await launch(o, clock, instanceId, paths);
  } catch (e) {
    if (o.ram?.create === true) await rm(o.ram.file, { force: true });
    throw e;
  }
}

async function launch(o: StartOptions, clock: Clock, instanceId: string, paths: InstancePaths): Promise<Instance> {
  const qemuBinary = o.qemuBinary ?? "qemu-system-x86_64";
  const argv = buildArgv(o.spec, { accel: o.accel, qmpSocket: paths.qmpSocket, pidfile: paths.pidfile, serialLog: paths.serialLog, serialSocket: paths.serialSocket, incoming: o.incoming ?? false, ...(o.ram ? { ramFile: o.ram.file } : {}) });
  const [file, args] = o.netns ? ["ip", ["netns", "exec", o.netns, qemuBinary, ...argv]] : [qemuBinary, argv];
  const logFd = openSync(paths.qemuLog, "a", 0o600);
  closeSync(openSync(paths.serialLog, "a", 0o600)); // QEMU keeps an existing file's mode; it would create it 0644
  let exited: { code: number | null; signal: string | null } | undefined;
  let spawnError: Error | undefined;
  let pid: number | undefined;
  try {
    const child = spawn(file, args, { detached: true, stdio: ["ignore", logFd, logFd] });
    child.on("error", (e) => (spawnError = e));
    child.on("exit", (code, signal) => (exited = { code, signal }));
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(logFd);
  }
  if (pid === undefined) {
    await clock.sleep(0);
    throw new FerryError("FERRY_ERR_QEMU_START", `cannot run ${qemuBinary}: ${spawnError?.message ?? "spawn failed"}`, { cause: spawnError });
  }
  const meta: InstanceMeta = {
    instanceId, vmUuid: o.spec.uuid, vmName: o.spec.name, pid, startedAt: clock.now(), qemuBinary,
    incoming: o.incoming ?? false, netns: o.netns, accel: o.accel, spec: o.spec, ...(o.ram ? { ramFile: o.ram.file } : {}),
  };
  await writeFile(paths.meta, JSON.stringify(meta, null, 2), { mode: 0o600 });

  const until = clock.monotonic() + (o.timeoutMs ?? 20_000);
  for (;;) {
    if (exited || spawnError) {
      const why = spawnError ? spawnError.message : `exited (${exited?.code ?? exited?.signal})`;
      throw new FerryError("FERRY_ERR_QEMU_START", `QEMU for ${o.spec.name} ${why}: ${await qemuLogTail(paths.qemuLog)}`, {
        details: { instanceId, log: paths.qemuLog },
      });
    }
    try {
      const qmp = await QmpClient.connect(paths.qmpSocket, { timeoutMs: 5_000, signal: o.signal, clock });
      return new Instance(meta, paths, qmp, clock);
    } catch (e) {
      if (o.signal?.aborted) {
        try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
        throw e;
      }
      if (!(isFerryError(e, "FERRY_ERR_QMP_CLOSED") && e.retryable)) throw e;
    }
    if (clock.monotonic() > until) {
      try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
      throw new FerryError("FERRY_ERR_QEMU_START", `QEMU for ${o.spec.name} did not open its QMP socket in time: ${await qemuLogTail(paths.qemuLog)}`);
    }
    await clock.sleep(20);
  }
}

/** Reconnect to an instance started earlier (possibly by another process). */
export async function reconnectInstance(dir: string, options: { clock?: Clock; signal?: AbortSignal } = {}): Promise<Instance> {
  const clock = options.clock ?? systemClock;
  let meta: InstanceMeta;
  try {
    meta = JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as InstanceMeta;
  } catch (e) {
    throw new FerryError("FERRY_ERR_NOT_FOUND", `no readable instance metadata in ${dir}`, { cause: e });
  }
  upgradeMeta(meta);
  const paths = pathsIn(dir);
  if (!(await processAlive(meta.pid, paths.qmpSocket))) {
    throw new FerryError("FERRY_ERR_NOT_FOUND", `instance ${meta.instanceId} of ${meta.vmName}: process ${meta.pid} is gone`, {
      details: { instanceId: meta.instanceId, vmUuid: meta.vmUuid },
    });
  }
  const qmp = await QmpClient.connect(paths.qmpSocket, { timeoutMs: 5_000, signal: options.signal, clock });
  return new Instance(meta, paths, qmp, clock);
}

/** meta.json of an instance started by an older agent named its RAM file in the spec. */
function upgradeMeta(meta: InstanceMeta): void {
  const spec = meta.spec as VmSpec & { sharedMemoryPath?: unknown };
  if (typeof spec.sharedMemoryPath === "string") {
    meta.ramFile ??= spec.sharedMemoryPath;
    spec.sharedMemory = true;
    delete spec.sharedMemoryPath;
  }
}

/** Instance dirs under a run dir: `<runDir>/<uuid>/<instanceId>`. */
export async function listInstanceDirs(runDir: string): Promise<string[]> {
  const out: string[] = [];
  for (const vm of await readdir(runDir).catch(() => [])) {
    if (vm === LOGS_DIR) continue;
    for (const inst of await readdir(join(runDir, vm)).catch(() => [])) {
      if (INSTANCE_ID_RE.test(inst)) out.push(join(runDir, vm, inst));
    }
  }
  return out.sort();
}
