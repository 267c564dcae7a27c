// The lab's test guest: Debian's kernel (the uncompressed vmlinux, for PVH
// boot with `qemu -kernel`) and a busybox initramfs whose /init (guest/init.sh)
// loads the NIC drivers, bonds failover pairs via net_failover, configures the
// addresses given on the kernel command line and prints a heartbeat.
//
// Built from Debian packages into <cache>/guest/<hash>/, where the hash covers
// every input; built in a temp dir and renamed into place, so a crash never
// leaves half an image. Downloaded .debs stay in <cache>/debs/.
//
//   node src/lab/guest-image.ts build    build if needed, print the paths (scripts/setup.sh)
//   node src/lab/guest-image.ts paths    print the paths of the built image, or fail
import { createHash, randomBytes } from "node:crypto";
import { lstat, mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { abortError } from "../core/deadline.ts";
import { FerryError, invalid, toFerryError } from "../core/errors.ts";
import { run } from "../core/run.ts";
import type { RunOptions } from "../core/run.ts";
import { cpioArchive } from "./cpio.ts";
import type { CpioEntry } from "./cpio.ts";

/** Base kernel command line for Ferry's guests (see FINDINGS.md for ipv6.disable). */
export const GUEST_BASE_CMDLINE = "console=ttyS0 ipv6.disable=1 quiet";

/** Modules the guest loads (their dependencies are added, all in dependency order). */
export const GUEST_MODULES = [
  "virtio_pci_modern_dev",
  "virtio_pci_legacy_dev",
  "virtio_ring",
  "virtio",
  "virtio_pci",
  "failover",
  "net_failover",
  "virtio_net",
  "e1000e",
  "e1000",
  "vmxnet3",
  "8139cp",
] as const;

/** Bump when the builder's output changes for the same inputs. */
const FORMAT_VERSION = 1;
/** Older images kept after a build (a running lab may still use one). */
const KEEP_IMAGES = 3;
const KERNEL_META_PACKAGE = "linux-image-amd64";
const BUSYBOX_PACKAGE = "busybox-static";
const BUSYBOX = "/bin/busybox";
const INIT_SCRIPT = new URL("./guest/init.sh", import.meta.url);
const APT_LISTS = "/var/lib/apt/lists";
const APT_CONFIG_PATHS = ["/etc/apt/sources.list", "/etc/apt/sources.list.d", "/etc/apt/preferences", "/etc/apt/preferences.d"];

export interface GuestImage {
  /** Uncompressed ELF kernel (PVH entry point): `qemu -kernel`. */
  kernel: string;
  /** Uncompressed newc cpio: `qemu -initrd`. */
  initrd: string;
  kernelVersion: string;
  dir: string;
}

export interface GuestNet {
  mac: string;
  /** Guest address with prefix, e.g. "10.90.1.10/24". */
  cidr: string;
}

export interface GuestImageOptions {
  cacheDir?: string;
  signal?: AbortSignal;
  log?: (msg: string) => void;
}

interface Inputs {
  format: number;
  kernelPackage: string;
  kernelVersion: string;
  busyboxVersion: string;
  initSha256: string;
  modules: readonly string[];
}

interface Manifest {
  hash: string;
  inputs: Inputs;
  kernelVersion: string;
  /** Modules as loaded by /init, dependencies first. */
  moduleOrder: string[];
  builtAt: string;
}

export function defaultCacheDir(): string {
  return process.env["FERRY_CACHE_DIR"] ?? "/var/cache/ferry";
}

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** The full guest kernel command line: base + `ferry.name` + one `ferry.net` per NIC (+ `ferry.fill`: MiB of random data in guest RAM). */
export function guestCmdline(name: string, nets: readonly GuestNet[], o: { fillMiB?: number } = {}): string {
  if (!NAME_RE.test(name)) throw invalid("guest name", name, "must be 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit");
  const parts = [GUEST_BASE_CMDLINE, `ferry.name=${name}`];
  for (const [i, net] of nets.entries()) {
    if (!MAC_RE.test(net.mac)) throw invalid(`nets[${i}].mac`, net.mac, "must be a MAC address like 52:54:00:12:34:56");
    const m = CIDR_RE.exec(net.cidr);
    const octetsOk = m !== null && m.slice(1, 5).every((o) => Number(o) <= 255) && Number(m[5]) <= 32;
    if (!octetsOk) throw invalid(`nets[${i}].cidr`, net.cidr, "must be an IPv4 address with prefix like 10.90.1.10/24");
    parts.push(`ferry.net=${net.mac.toLowerCase()},${net.cidr}`);
  }
  if (o.fillMiB !== undefined) {
    if (!Number.isInteger(o.fillMiB) || o.fillMiB < 0 || o.fillMiB > 1024 * 1024) throw invalid("fillMiB", o.fillMiB, "must be a whole number of MiB");
    parts.push(`ferry.fill=${o.fillMiB}`);
  }
  return parts.join(" ");
}

// ---------------------------------------------------------------------------
// Kernel modules: dependency order from the .modinfo section of each .ko

/**
 * Load order for `wanted` (and everything they depend on): dependencies first,
 * otherwise the order asked for. `deps(name)` gives a module's direct
 * dependencies; built-in modules are dropped.
 */
export function moduleLoadOrder(wanted: readonly string[], deps: (name: string) => readonly string[], builtin: ReadonlySet<string> = new Set()): string[] {
  const order: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string, path: readonly string[]): void => {
    if (builtin.has(name) || state.get(name) === "done") return;
    if (state.get(name) === "visiting") throw new FerryError("FERRY_ERR_GUEST_IMAGE", `module dependency cycle: ${[...path, name].join(" -> ")}`);
    state.set(name, "visiting");
    for (const d of deps(name)) visit(d, [...path, name]);
    state.set(name, "done");
    order.push(name);
  };
  for (const w of wanted) visit(w, []);
  return order;
}

/** The `depends=` entry of an ELF64 kernel module's .modinfo section. */
export function moduleDepends(ko: Buffer): string[] {
  const bad = (why: string): FerryError => new FerryError("FERRY_ERR_GUEST_IMAGE", `not a usable kernel module: ${why}`);
  if (ko.length < 64 || ko.readUInt32BE(0) !== 0x7f454c46) throw bad("no ELF magic");
  if (ko[4] !== 2 || ko[5] !== 1) throw bad("not a little-endian ELF64 file");
  const shoff = Number(ko.readBigUInt64LE(0x28));
  const shentsize = ko.readUInt16LE(0x3a);
  const shnum = ko.readUInt16LE(0x3c);
  const shstrndx = ko.readUInt16LE(0x3e);
  if (shentsize < 64 || shoff + shnum * shentsize > ko.length || shstrndx >= shnum) throw bad("section headers out of range");
  const section = (i: number): { name: number; offset: number; size: number } => {
    const at = shoff + i * shentsize;
    return { name: ko.readUInt32LE(at), offset: Number(ko.readBigUInt64LE(at + 0x18)), size: Number(ko.readBigUInt64LE(at + 0x20)) };
  };
  const strtab = section(shstrndx);
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameStart = strtab.offset + s.name;
    const nameEnd = ko.indexOf(0, nameStart);
    if (nameEnd < 0 || ko.toString("latin1", nameStart, nameEnd) !== ".modinfo") continue;
    if (s.offset + s.size > ko.length) throw bad(".modinfo out of range");
    for (const entry of ko.toString("latin1", s.offset, s.offset + s.size).split("\0")) {
      if (entry.startsWith("depends=")) {
        return entry
          .slice("depends=".length)
          .split(",")
          .filter((d) => d !== "")
          .map((d) => d.replace(/-/g, "_"));
      }
    }
    return [];
  }
  throw bad("no .modinfo section");
}

const moduleName = (file: string): string => file.replace(/\.ko(\.xz)?$/, "").replace(/-/g, "_");

// ---------------------------------------------------------------------------
// Inputs: what the image is built from

function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function imageHash(inputs: Inputs): string {
  return sha256(JSON.stringify(inputs)).slice(0, 16);
}

async function readInitScript(): Promise<string> {
  return readFile(INIT_SCRIPT, "utf8");
}

/** Cheap fingerprint of what apt's answers depend on (lists and configuration). */
async function aptStamp(): Promise<string> {
  const lines: string[] = [];
  const add = async (path: string): Promise<void> => {
    const st = await stat(path).catch(() => undefined);
    if (!st) return;
    if (st.isDirectory()) {
      for (const name of (await readdir(path)).sort()) await add(join(path, name));
    } else {
      lines.push(`${path} ${st.size} ${st.mtimeMs}`);
    }
  };
  for (const p of [APT_LISTS, ...APT_CONFIG_PATHS]) await add(p);
  return sha256(lines.join("\n"));
}

interface KernelPackage {
  name: string;
  version: string;
}

function runOpts(opts: GuestImageOptions, extra: RunOptions = {}): RunOptions {
  return opts.signal ? { ...extra, signal: opts.signal } : extra;
}

async function aptCacheKernel(opts: GuestImageOptions): Promise<KernelPackage | undefined> {
  const show = await run("apt-cache", ["show", "--no-all-versions", KERNEL_META_PACKAGE], runOpts(opts, { allowFailure: true, timeoutMs: 120_000 }));
  const depends = /^Depends:\s*(.*)$/m.exec(show.stdout)?.[1];
  if (show.code !== 0 || depends === undefined) return undefined;
  for (const alt of depends.split(/[,|]/)) {
    const m = /^\s*(linux-image-\d\S*)\s*(?:\(\s*=\s*([^)\s]+)\s*\))?/.exec(alt);
    if (!m?.[1]) continue;
    let version = m[2];
    if (version === undefined) {
      const policy = await run("apt-cache", ["policy", m[1]], runOpts(opts, { timeoutMs: 120_000 }));
      version = /^\s*Candidate:\s*(\S+)/m.exec(policy.stdout)?.[1];
      if (version === undefined || version === "(none)") return undefined;
    }
    return { name: m[1], version };
  }
  return undefined;
}

/** The real package behind linux-image-amd64; apt's answer is cached until apt's lists change. */
async function resolveKernelPackage(cacheDir: string, opts: GuestImageOptions): Promise<KernelPackage> {
  const file = join(cacheDir, "guest", "apt-resolution.json");
  const stamp = await aptStamp();
  const cached = await readJson(file);
  if (isRecord(cached) && cached["stamp"] === stamp && typeof cached["name"] === "string" && typeof cached["version"] === "string") {
    return { name: cached["name"], version: cached["version"] };
  }
  opts.log?.(`resolving ${KERNEL_META_PACKAGE} with apt-cache`);
  let pkg = await aptCacheKernel(opts);
  if (!pkg) {
    if (process.getuid?.() !== 0) {
      throw new FerryError("FERRY_ERR_GUEST_IMAGE", `apt knows no ${KERNEL_META_PACKAGE}; run 'apt-get update' as root, then 'npm run setup'`);
    }
    opts.log?.("apt-cache knows no kernel package: running apt-get update");
    await run("apt-get", ["update", "-qq"], runOpts(opts, { timeoutMs: 600_000 }));
    pkg = await aptCacheKernel(opts);
    if (!pkg) throw new FerryError("FERRY_ERR_GUEST_IMAGE", `apt has no installable ${KERNEL_META_PACKAGE} even after apt-get update`);
  }
  await writeAtomic(file, JSON.stringify({ stamp: await aptStamp(), ...pkg }) + "\n");
  return pkg;
}

async function busyboxVersion(opts: GuestImageOptions): Promise<string> {
  const r = await run("dpkg-query", ["-W", "-f=${Status}\t${Version}", BUSYBOX_PACKAGE], runOpts(opts, { allowFailure: true, timeoutMs: 30_000 }));
  const [status, version] = r.stdout.split("\t");
  if (r.code !== 0 || !status?.endsWith(" installed") || !version) {
    throw new FerryError("FERRY_ERR_GUEST_IMAGE", `${BUSYBOX_PACKAGE} is not installed; run 'npm run setup' (as root)`);
  }
  return version;
}

/** The inputs that need no apt: enough to tell that a built image is stale. */
async function localInputs(): Promise<Pick<Inputs, "format" | "initSha256" | "modules">> {
  return { format: FORMAT_VERSION, initSha256: sha256(await readInitScript()), modules: [...GUEST_MODULES] };
}

// ---------------------------------------------------------------------------
// Small file helpers

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as unknown;
  } catch {
    return undefined;
  }
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

async function writeAtomic(path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new FerryError("FERRY_ERR_ABORTED", "guest image build aborted", { cause: signal.reason });
}

// ---------------------------------------------------------------------------
// Build steps

/** The kernel .deb, from <cache>/debs/ or downloaded there (atomically). */
async function kernelDeb(cacheDir: string, pkg: KernelPackage, opts: GuestImageOptions): Promise<string> {
  const debs = join(cacheDir, "debs");
  await mkdir(debs, { recursive: true });
  const prefix = `${pkg.name}_${pkg.version.replace(/:/g, "%3a")}_`;
  const find = async (dir: string): Promise<string | undefined> => (await readdir(dir)).find((f) => f.startsWith(prefix) && f.endsWith(".deb"));
  const have = await find(debs);
  if (have) return join(debs, have);

  await pruneStaleTemps(debs);
  const partial = join(debs, `.partial-${process.pid}-${randomBytes(4).toString("hex")}`);
  await mkdir(partial);
  try {
    opts.log?.(`downloading ${pkg.name}=${pkg.version}`);
    const sandbox = process.getuid?.() === 0 ? ["-o", "APT::Sandbox::User=root"] : [];
    await run("apt-get", [...sandbox, "download", "-qq", `${pkg.name}=${pkg.version}`], runOpts(opts, { cwd: partial, timeoutMs: 900_000 }));
    const got = await find(partial);
    if (!got) throw new FerryError("FERRY_ERR_GUEST_IMAGE", `apt-get download ${pkg.name}=${pkg.version} produced no ${prefix}*.deb`);
    await rename(join(partial, got), join(debs, got));
    return join(debs, got);
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
}

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

/** Extract the ELF kernel from a bzImage: the xz payload inside it, decompressed. */
async function extractVmlinux(vmlinuz: string, out: string, tmp: string, opts: GuestImageOptions): Promise<void> {
  const image = await readFile(vmlinuz);
  const payload = join(tmp, "payload");
  let tried = 0;
  for (let at = image.indexOf(XZ_MAGIC); at >= 0 && tried < 8; at = image.indexOf(XZ_MAGIC, at + 1), tried++) {
    await writeFile(`${payload}.xz`, image.subarray(at));
    // --single-stream: ignore what follows the payload in the bzImage.
    const r = await run("xz", ["-d", "-f", "--single-stream", `${payload}.xz`], runOpts(opts, { allowFailure: true, timeoutMs: 300_000 }));
    await rm(`${payload}.xz`, { force: true });
    if (r.code !== 0) continue;
    const fh = await open(payload, "r");
    const head = Buffer.alloc(4);
    try {
      await fh.read(head, 0, 4, 0);
    } finally {
      await fh.close();
    }
    if (head.readUInt32BE(0) === 0x7f454c46) {
      await rename(payload, out);
      return;
    }
    await rm(payload, { force: true });
  }
  throw new FerryError("FERRY_ERR_GUEST_IMAGE", `no xz-compressed ELF kernel found in ${vmlinuz} (tried ${tried} candidate offsets)`);
}

/** Module name -> file under lib/modules/<kver>/kernel, and the built-in set. */
async function moduleIndex(modRoot: string): Promise<{ files: Map<string, string>; builtin: Set<string> }> {
  const files = new Map<string, string>();
  for (const rel of await readdir(join(modRoot, "kernel"), { recursive: true })) {
    if (/\.ko(\.xz)?$/.test(rel)) files.set(moduleName(rel.split("/").pop() ?? rel), join(modRoot, "kernel", rel));
  }
  const builtinText = await readFile(join(modRoot, "modules.builtin"), "utf8").catch(() => "");
  const builtin = new Set(
    builtinText
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => moduleName(l.split("/").pop() ?? l)),
  );
  return { files, builtin };
}

async function moduleBytes(file: string, opts: GuestImageOptions): Promise<Buffer> {
  if (!file.endsWith(".xz")) return readFile(file);
  await run("xz", ["-d", "-f", "-k", file], runOpts(opts, { timeoutMs: 60_000 }));
  return readFile(file.slice(0, -".xz".length));
}

async function busyboxApplets(opts: GuestImageOptions): Promise<string[]> {
  const { stdout } = await run(BUSYBOX, ["--list-full"], runOpts(opts, { timeoutMs: 30_000 }));
  return stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !/(^|\/)busybox$/.test(l) && l !== "init");
}

async function buildImage(tmp: string, inputs: Inputs, hash: string, cacheDir: string, opts: GuestImageOptions): Promise<void> {
  const pkg = { name: inputs.kernelPackage, version: inputs.kernelVersion };
  let deb = await kernelDeb(cacheDir, pkg, opts);
  checkAborted(opts.signal);

  const root = join(tmp, "deb");
  opts.log?.(`unpacking ${deb}`);
  const unpack = (): Promise<unknown> => run("dpkg", ["-x", deb, root], runOpts(opts, { timeoutMs: 600_000 }));
  try {
    await unpack();
  } catch (e) {
    // A cached .deb may be damaged: fetch it again, once.
    opts.log?.(`unpacking failed (${toFerryError(e).message}); downloading again`);
    await rm(deb, { force: true });
    await rm(root, { recursive: true, force: true });
    deb = await kernelDeb(cacheDir, pkg, opts);
    await unpack();
  }
  checkAborted(opts.signal);

  const versions = await readdir(join(root, "lib", "modules")).catch(() => []);
  const kver = versions[0];
  if (versions.length !== 1 || kver === undefined) {
    throw new FerryError("FERRY_ERR_GUEST_IMAGE", `${deb}: expected one lib/modules/<version>, found ${JSON.stringify(versions)}`);
  }
  opts.log?.(`extracting vmlinux from vmlinuz-${kver}`);
  await extractVmlinux(join(root, "boot", `vmlinuz-${kver}`), join(tmp, "vmlinux"), tmp, opts);
  checkAborted(opts.signal);

  const modRoot = join(root, "lib", "modules", kver);
  const { files, builtin } = await moduleIndex(modRoot);
  const bytes = new Map<string, Buffer>();
  const load = async (name: string): Promise<Buffer> => {
    const cached = bytes.get(name);
    if (cached) return cached;
    const file = files.get(name);
    if (!file) throw new FerryError("FERRY_ERR_GUEST_IMAGE", `kernel ${kver} has no module ${name} (and it is not built in)`);
    const b = await moduleBytes(file, opts);
    bytes.set(name, b);
    return b;
  };
  // Read every module that can appear (wanted + transitive deps) first; the ordering itself is pure.
  const pending: string[] = GUEST_MODULES.filter((m) => !builtin.has(m));
  const deps = new Map<string, string[]>();
  while (pending.length > 0) {
    const name = pending.pop();
    if (name === undefined || deps.has(name)) continue;
    const d = moduleDepends(await load(name)).filter((x) => !builtin.has(x));
    deps.set(name, d);
    pending.push(...d);
  }
  const order = moduleLoadOrder(GUEST_MODULES, (n) => deps.get(n) ?? [], builtin);
  opts.log?.(`modules: ${order.join(" ")}`);

  const busybox = await readFile(BUSYBOX);
  const entries: CpioEntry[] = [];
  for (const d of ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "root", "lib/modules"]) entries.push({ type: "dir", path: d });
  entries.push({ type: "dir", path: "tmp", mode: 0o1777 });
  entries.push({ type: "char", path: "dev/console", major: 5, minor: 1 });
  entries.push({ type: "char", path: "dev/null", major: 1, minor: 3, mode: 0o666 });
  entries.push({ type: "char", path: "dev/ttyS0", major: 4, minor: 64 });
  entries.push({ type: "file", path: "bin/busybox", data: busybox, mode: 0o755 });
  for (const applet of await busyboxApplets(opts)) entries.push({ type: "symlink", path: applet, target: "/bin/busybox" });
  for (const m of order) entries.push({ type: "file", path: `lib/modules/${m}.ko`, data: await load(m) });
  entries.push({ type: "file", path: "lib/modules/order", data: order.join("\n") + "\n" });
  entries.push({ type: "file", path: "etc/ferry-image", data: `${hash} ${kver}\n` });
  entries.push({ type: "file", path: "init", data: await readInitScript(), mode: 0o755 });
  await writeFile(join(tmp, "initrd"), cpioArchive(entries));

  const manifest: Manifest = { hash, inputs, kernelVersion: kver, moduleOrder: order, builtAt: new Date().toISOString() };
  await writeFile(join(tmp, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  await rm(root, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------
// Public API

function imageOf(dir: string, kernelVersion: string): GuestImage {
  return { kernel: join(dir, "vmlinux"), initrd: join(dir, "initrd"), kernelVersion, dir };
}

async function readManifest(dir: string): Promise<Manifest | undefined> {
  const m = await readJson(join(dir, "manifest.json"));
  if (!isRecord(m) || typeof m["kernelVersion"] !== "string" || typeof m["hash"] !== "string" || !isRecord(m["inputs"])) return undefined;
  if (!(await exists(join(dir, "vmlinux"))) || !(await exists(join(dir, "initrd")))) return undefined;
  return m as unknown as Manifest;
}

/** Remove temp dirs (`.tmp-<pid>-*`, `.partial-<pid>-*`) left by builders that died. */
async function pruneStaleTemps(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [])) {
    const m = /^\.(?:tmp|partial)-(\d+)-/.exec(name);
    if (!m) continue;
    let alive = true;
    try {
      process.kill(Number(m[1]), 0);
    } catch (e) {
      alive = (e as NodeJS.ErrnoException).code === "EPERM";
    }
    if (!alive) await rm(join(dir, name), { recursive: true, force: true });
  }
}

/** Keep the newest `keep` images (a running lab may still use an older one); drop the rest. */
async function pruneOldImages(guestDir: string, keep: number): Promise<void> {
  const images: { dir: string; mtimeMs: number }[] = [];
  for (const name of await readdir(guestDir).catch(() => [])) {
    if (!/^[0-9a-f]{16}$/.test(name)) continue;
    const st = await stat(join(guestDir, name)).catch(() => undefined);
    if (st?.isDirectory()) images.push({ dir: join(guestDir, name), mtimeMs: st.mtimeMs });
  }
  images.sort((a, b) => b.mtimeMs - a.mtimeMs);
  for (const old of images.slice(keep)) await rm(old.dir, { recursive: true, force: true });
}

/** Build the guest image if its inputs changed (or it is missing); return its paths. */
export async function ensureGuestImage(opts: GuestImageOptions = {}): Promise<GuestImage> {
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const guestDir = join(cacheDir, "guest");
  try {
    await mkdir(guestDir, { recursive: true });
    const [kernel, busybox, local] = await Promise.all([resolveKernelPackage(cacheDir, opts), busyboxVersion(opts), localInputs()]);
    const inputs: Inputs = { format: local.format, kernelPackage: kernel.name, kernelVersion: kernel.version, busyboxVersion: busybox, initSha256: local.initSha256, modules: local.modules };
    const hash = imageHash(inputs);
    const dir = join(guestDir, hash);
    const pointer = join(guestDir, "current");

    let manifest = await readManifest(dir);
    if (!manifest) {
      await pruneStaleTemps(guestDir);
      opts.log?.(`building guest image ${hash} (${kernel.name} ${kernel.version}, busybox ${busybox})`);
      const tmp = join(guestDir, `.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
      await mkdir(tmp);
      try {
        await buildImage(tmp, inputs, hash, cacheDir, opts);
        checkAborted(opts.signal);
        try {
          await rename(tmp, dir);
        } catch (e) {
          // Another builder finished the same image first: use theirs.
          const code = (e as NodeJS.ErrnoException).code;
          if (code !== "ENOTEMPTY" && code !== "EEXIST") throw e;
        }
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
      manifest = await readManifest(dir);
      if (!manifest) throw new FerryError("FERRY_ERR_GUEST_IMAGE", `guest image ${dir} is incomplete after the build`);
      opts.log?.(`guest image ready in ${dir}`);
      await pruneOldImages(guestDir, KEEP_IMAGES);
    }
    const current = await readJson(pointer);
    if (!isRecord(current) || current["hash"] !== hash) await writeAtomic(pointer, JSON.stringify({ hash }) + "\n");
    return imageOf(dir, manifest.kernelVersion);
  } catch (e) {
    if (opts.signal?.aborted) throw abortError(opts.signal, "guest image build");
    const err = toFerryError(e, "FERRY_ERR_GUEST_IMAGE");
    if (err.code === "FERRY_ERR_GUEST_IMAGE" || err.code === "FERRY_ERR_ABORTED") throw err;
    const errno = (e as NodeJS.ErrnoException).code;
    const hint = errno === "EACCES" || errno === "EPERM" ? ` (${cacheDir} not writable: run as root or set FERRY_CACHE_DIR)` : "";
    throw new FerryError("FERRY_ERR_GUEST_IMAGE", `cannot build the guest image: ${err.message}${hint}`, { cause: err });
  }
}

/**
 * The paths of the image `ensureGuestImage` last built, without touching apt:
 * throws FERRY_ERR_GUEST_IMAGE if there is none or it is stale (init script,
 * module list or builder changed since).
 */
export async function guestImagePaths(opts: { cacheDir?: string } = {}): Promise<GuestImage> {
  const guestDir = join(opts.cacheDir ?? defaultCacheDir(), "guest");
  const setup = "run 'npm run setup' to build it";
  const current = await readJson(join(guestDir, "current"));
  const hash = isRecord(current) ? current["hash"] : undefined;
  if (typeof hash !== "string" || !/^[0-9a-f]{16}$/.test(hash)) {
    throw new FerryError("FERRY_ERR_GUEST_IMAGE", `no guest image in ${guestDir}; ${setup}`, { details: { guestDir } });
  }
  const dir = join(guestDir, hash);
  const manifest = await readManifest(dir);
  if (!manifest) throw new FerryError("FERRY_ERR_GUEST_IMAGE", `guest image ${dir} is missing or incomplete; ${setup}`, { details: { dir } });
  const local = await localInputs();
  const stale = (Object.keys(local) as (keyof typeof local)[]).filter((k) => JSON.stringify(manifest.inputs[k]) !== JSON.stringify(local[k]));
  if (stale.length > 0) {
    throw new FerryError("FERRY_ERR_GUEST_IMAGE", `guest image ${dir} is out of date (${stale.join(", ")} changed); ${setup}`, { details: { dir, stale } });
  }
  return imageOf(dir, manifest.kernelVersion);
}

async function main(argv: readonly string[]): Promise<number> {
  const cmd = argv[0] ?? "build";
  const log = (msg: string): void => void process.stderr.write(`guest-image: ${msg}\n`);
  let image: GuestImage;
  if (cmd === "build") image = await ensureGuestImage({ log });
  else if (cmd === "paths") image = await guestImagePaths();
  else {
    process.stderr.write("usage: guest-image.ts build|paths\n");
    return 2;
  }
  process.stdout.write(`guest image ${image.kernelVersion}: kernel=${image.kernel} initrd=${image.initrd}\n`);
  return 0;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      const err = toFerryError(e);
      process.stderr.write(`guest-image: ${err.code}: ${err.message}\n`);
      process.exitCode = 1;
    },
  );
}
