// Fetching what the guest image is built from: the kernel package behind
// linux-image-amd64 (apt's answer cached until apt's lists change), its .deb
// (downloaded once into <cache>/debs/), and the installed busybox's version.
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { FerryError } from "../core/errors.ts";
import { run } from "../core/run.ts";
import { pruneStaleTemps, runOpts, tempName, writeAtomic } from "./guest-build-io.ts";
import type { GuestImageOptions } from "./guest-build-io.ts";

const KERNEL_META_PACKAGE = "linux-image-amd64";
const BUSYBOX_PACKAGE = "busybox-static";
const APT_LISTS = "/var/lib/apt/lists";
const APT_CONFIG_PATHS = ["/etc/apt/sources.list", "/etc/apt/sources.list.d", "/etc/apt/preferences", "/etc/apt/preferences.d"];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
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
  return createHash("sha256").update(lines.join("\n")).digest("hex");
}

export interface KernelPackage {
  name: string;
  version: string;
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
export async function resolveKernelPackage(cacheDir: string, opts: GuestImageOptions): Promise<KernelPackage> {
  const file = join(cacheDir, "guest", "apt-resolution.json");
  const stamp = await aptStamp();
  const cached = await readFile(file, "utf8").then((t): unknown => JSON.parse(t)).catch(() => undefined);
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

export async function busyboxVersion(opts: GuestImageOptions): Promise<string> {
  const r = await run("dpkg-query", ["-W", "-f=${Status}\t${Version}", BUSYBOX_PACKAGE], runOpts(opts, { allowFailure: true, timeoutMs: 30_000 }));
  const [status, version] = r.stdout.split("\t");
  if (r.code !== 0 || !status?.endsWith(" installed") || !version) {
    throw new FerryError("FERRY_ERR_GUEST_IMAGE", `${BUSYBOX_PACKAGE} is not installed; run 'npm run setup' (as root)`);
  }
  return version;
}

/** The kernel .deb, from <cache>/debs/ or downloaded there (atomically). */
export async function kernelDeb(cacheDir: string, pkg: KernelPackage, opts: GuestImageOptions): Promise<string> {
  const debs = join(cacheDir, "debs");
  await mkdir(debs, { recursive: true });
  const prefix = `${pkg.name}_${pkg.version.replace(/:/g, "%3a")}_`;
  const find = async (dir: string): Promise<string | undefined> => (await readdir(dir)).find((f) => f.startsWith(prefix) && f.endsWith(".deb"));
  const have = await find(debs);
  if (have) return join(debs, have);

  await pruneStaleTemps(debs);
  const partial = tempName(debs, "partial");
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
