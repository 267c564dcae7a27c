// Building the guest image into a temp dir: the kernel .deb unpacked, its
// vmlinux extracted from the bzImage, and a busybox initramfs with the NIC
// modules (in load order), busybox's applets and /init (guest/init.sh).
import { open, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { FerryError, toFerryError } from "../core/errors.ts";
import { run } from "../core/run.ts";
import { GUEST_MODULES, readInitScript } from "../model/guest-image.ts";
import type { GuestImageInputs, GuestImageManifest } from "../model/guest-image.ts";
import { cpioArchive } from "./cpio.ts";
import type { CpioEntry } from "./cpio.ts";
import { checkAborted, runOpts } from "./guest-build-io.ts";
import type { GuestImageOptions } from "./guest-build-io.ts";
import { kernelDeb } from "./guest-debs.ts";
import { moduleDepends, moduleIndex, moduleLoadOrder } from "./kernel-modules.ts";

const BUSYBOX = "/bin/busybox";
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

export async function buildImage(tmp: string, inputs: GuestImageInputs, hash: string, cacheDir: string, opts: GuestImageOptions): Promise<void> {
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

  const manifest: GuestImageManifest = { hash, inputs, kernelVersion: kver, moduleOrder: order, builtAt: new Date().toISOString() };
  await writeFile(join(tmp, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  await rm(root, { recursive: true, force: true });
}
