// The holder of an apart lab host (the pod-infra pattern): a tiny long-lived
// process that owns the host's mount and UTS namespaces, started by the lab as
//   ip netns exec ferry-lab-<lab>-<host> unshare --mount --uts --propagation private --kill-child -- node host-holder.ts HOST HOSTDIR SAVEDIR
// It gives the host its own view of the machine, then sleeps until killed:
// - a fresh tmpfs on /dev/shm and on /run (the machine's mounts under /run,
//   e.g. /run/netns, are detached first: the host neither sees them nor keeps
//   the machine's namespaces alive);
// - a fresh tmpfs on /var/lib (the host's own /var/lib, empty but for Ferry),
//   HOSTDIR (the lab dir's <host>/) bind-mounted on /var/lib/ferry and
//   SAVEDIR (the lab's shared save dir, like NFS) on /var/lib/ferry/saves;
// - its hostname set to HOST.
// Then it writes "ready" on stdout. The host's agent enters these namespaces
// with `nsenter --target <holder pid> --net --mount --uts`; the lab reads the
// host's files through /proc/<holder pid>/root.
// Standalone on purpose (no project imports): it runs as its own process.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";

const [host, hostDir, saveDir] = process.argv.slice(2);
if (host === undefined || hostDir === undefined || saveDir === undefined) {
  process.stderr.write("usage: host-holder.ts HOST HOSTDIR SAVEDIR\n");
  process.exit(2);
}

const sh = (file: string, args: string[]): void => void execFileSync(file, args, { stdio: ["ignore", "ignore", "inherit"] });

/** Mount points at or under `dir` in this mount namespace, deepest first. */
function mountsUnder(dir: string): string[] {
  const points = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/**
 * Detach a mount from this (private) namespace. One that is gone already is
 * not an error: unlinking a mountpoint file detaches its mounts in every
 * namespace (Linux >= 3.18), so another lab deleting its network namespace
 * (/run/netns/<name>) between our mountinfo read and this umount takes our
 * copy away (two labs set up side by side met exactly that).
 */
function detach(point: string): void {
  try {
    execFileSync("umount", ["--lazy", point], { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    if (!mountsUnder(point).includes(point)) return; // gone already: nothing to detach
    const { stderr } = err as { stderr?: Buffer };
    if (stderr !== undefined) process.stderr.write(stderr);
    throw err;
  }
}

try {
  // the machine's mounts under /run and /dev/shm: detached from this (private) namespace only
  for (const p of [...mountsUnder("/run"), ...mountsUnder("/dev/shm")]) detach(p);
  sh("mount", ["-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", "/dev/shm"]);
  sh("mount", ["-t", "tmpfs", "-o", "mode=755,nosuid,nodev", "tmpfs", "/run"]);
  sh("mount", ["-t", "tmpfs", "-o", "mode=755", "tmpfs", "/var/lib"]);
  mkdirSync("/var/lib/ferry", { mode: 0o755 });
  sh("mount", ["--bind", hostDir, "/var/lib/ferry"]);
  mkdirSync("/var/lib/ferry/saves", { recursive: true, mode: 0o700 });
  sh("mount", ["--bind", saveDir, "/var/lib/ferry/saves"]);
  sh("hostname", [host]);
} catch (err) {
  // one line the lab can quote in its error (the command's own stderr is above it in the log)
  process.stderr.write(`ferry host holder ${host}: ${(err as Error).message.split("\n")[0]}\n`);
  process.exit(1);
}

process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
process.stdout.write("ready\n");
// sleep until killed
setInterval(() => undefined, 1 << 30);
