// The lab's test guest: Debian's kernel (the uncompressed vmlinux, for PVH
// boot with `qemu -kernel`) and a busybox initramfs whose /init (guest/init.sh)
// loads the NIC drivers, bonds failover pairs via net_failover, configures the
// addresses given on the kernel command line (model/guest.ts) and prints a
// heartbeat.
//
// Built from Debian packages into <cache>/guest/<hash>/, where the hash covers
// every input (model/guest-image.ts, which also reads a built image); built in
// a temp dir (guest-image-build.ts) and renamed into place, so a crash never
// leaves half an image. Downloaded .debs stay in <cache>/debs/ (guest-debs.ts).
//
//   node src/lab/guest-image.ts build    build if needed, print the paths (scripts/setup.sh)
//   node src/lab/guest-image.ts paths    print the paths of the built image, or fail
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { abortError } from "../core/deadline.ts";
import { FerryError, toFerryError } from "../core/errors.ts";
import { defaultCacheDir, guestImagePaths, imageHash, imageOf, localInputs, readCurrentHash, readManifest } from "../model/guest-image.ts";
import type { GuestImage, GuestImageInputs } from "../model/guest-image.ts";
import { checkAborted, pruneStaleTemps, tempName, writeAtomic } from "./guest-build-io.ts";
import type { GuestImageOptions } from "./guest-build-io.ts";
import { busyboxVersion, resolveKernelPackage } from "./guest-debs.ts";
import { buildImage } from "./guest-image-build.ts";

/** Older images kept after a build (a running lab may still use one). */
const KEEP_IMAGES = 3;

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
    const inputs: GuestImageInputs = { format: local.format, kernelPackage: kernel.name, kernelVersion: kernel.version, busyboxVersion: busybox, initSha256: local.initSha256, modules: local.modules };
    const hash = imageHash(inputs);
    const dir = join(guestDir, hash);

    let manifest = await readManifest(dir);
    if (!manifest) {
      await pruneStaleTemps(guestDir);
      opts.log?.(`building guest image ${hash} (${kernel.name} ${kernel.version}, busybox ${busybox})`);
      const tmp = tempName(guestDir, "tmp");
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
    if ((await readCurrentHash(guestDir)) !== hash) await writeAtomic(join(guestDir, "current"), JSON.stringify({ hash }) + "\n");
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
