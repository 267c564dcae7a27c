// The test guest's image as it lies in the cache: <cache>/guest/<hash>/ holds
// `vmlinux` (uncompressed ELF kernel, PVH boot with `qemu -kernel`), `initrd`
// (uncompressed newc cpio) and `manifest.json`; <cache>/guest/current names
// the hash last built. The hash covers every input, so a changed input means
// a new directory. src/lab/guest-image.ts builds it; the controller (and
// tests) only read it here, without touching apt.
import { createHash } from "node:crypto";
import { lstat, readFile } from "node:fs/promises";
import { join } from "node:path";
import { FerryError } from "../core/errors.ts";

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
  // the pvpanic device's driver (QEMU's isa pvpanic, ACPI QEMU0001): a kernel panic becomes QMP GUEST_PANICKED
  "pvpanic_mmio",
] as const;

/** Bump when the builder's output changes for the same inputs. */
export const GUEST_IMAGE_FORMAT = 1;
/** The guest's /init: it reads the command line of model/guest.ts. */
const INIT_SCRIPT = new URL("../lab/guest/init.sh", import.meta.url);

export interface GuestImage {
  /** Uncompressed ELF kernel (PVH entry point): `qemu -kernel`. */
  kernel: string;
  /** Uncompressed newc cpio: `qemu -initrd`. */
  initrd: string;
  kernelVersion: string;
  dir: string;
}

/** What an image is built from; its hash names the image's directory. */
export interface GuestImageInputs {
  format: number;
  kernelPackage: string;
  kernelVersion: string;
  busyboxVersion: string;
  initSha256: string;
  modules: readonly string[];
}

export interface GuestImageManifest {
  hash: string;
  inputs: GuestImageInputs;
  kernelVersion: string;
  /** Modules as loaded by /init, dependencies first. */
  moduleOrder: string[];
  builtAt: string;
}

export function defaultCacheDir(): string {
  return process.env["FERRY_CACHE_DIR"] ?? "/var/cache/ferry";
}

function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

export function imageHash(inputs: GuestImageInputs): string {
  return sha256(JSON.stringify(inputs)).slice(0, 16);
}

export async function readInitScript(): Promise<string> {
  return readFile(INIT_SCRIPT, "utf8");
}

/** The inputs that need no apt: enough to tell that a built image is stale. */
export async function localInputs(): Promise<Pick<GuestImageInputs, "format" | "initSha256" | "modules">> {
  return { format: GUEST_IMAGE_FORMAT, initSha256: sha256(await readInitScript()), modules: [...GUEST_MODULES] };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const readJson = (path: string): Promise<unknown> => readFile(path, "utf8").then((t): unknown => JSON.parse(t)).catch(() => undefined);

const exists = (path: string): Promise<boolean> => lstat(path).then(() => true, () => false);

export function imageOf(dir: string, kernelVersion: string): GuestImage {
  return { kernel: join(dir, "vmlinux"), initrd: join(dir, "initrd"), kernelVersion, dir };
}

/** The manifest of a complete image in `dir`, or undefined. */
export async function readManifest(dir: string): Promise<GuestImageManifest | undefined> {
  const m = await readJson(join(dir, "manifest.json"));
  if (!isRecord(m) || typeof m["kernelVersion"] !== "string" || typeof m["hash"] !== "string" || !isRecord(m["inputs"])) return undefined;
  if (!(await exists(join(dir, "vmlinux"))) || !(await exists(join(dir, "initrd")))) return undefined;
  return m as unknown as GuestImageManifest;
}

/** The `hash` that <guestDir>/current names (unchecked), or undefined. */
export async function readCurrentHash(guestDir: string): Promise<unknown> {
  const current = await readJson(join(guestDir, "current"));
  return isRecord(current) ? current["hash"] : undefined;
}

/**
 * The paths of the image `ensureGuestImage` last built, without touching apt:
 * throws FERRY_ERR_GUEST_IMAGE if there is none or it is stale (init script,
 * module list or builder changed since).
 */
export async function guestImagePaths(opts: { cacheDir?: string } = {}): Promise<GuestImage> {
  const guestDir = join(opts.cacheDir ?? defaultCacheDir(), "guest");
  const setup = "run 'npm run setup' to build it";
  const hash = await readCurrentHash(guestDir);
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
