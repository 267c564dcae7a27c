import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { systemClock } from "../core/clock.ts";
import { run } from "../core/run.ts";
import { guestCmdline } from "../model/guest.ts";
import type { GuestNet } from "../model/guest.ts";
import { guestImagePaths } from "../model/guest-image.ts";
import type { GuestImage } from "../model/guest-image.ts";
import { ensureGuestImage } from "./guest-image.ts";

/** The console without its heartbeats (but the last one), for failure messages. */
function summary(lines: string[]): string {
  const other = lines.filter((l) => !l.startsWith("ferry-heartbeat "));
  const last = lines.findLast((l) => l.startsWith("ferry-heartbeat "));
  return [...other.slice(-40), ...(last ? [`(last) ${last}`] : [])].join("\n");
}

interface BootResult {
  readyMs: number;
  beats: number[];
  /** Console lines up to the second heartbeat. */
  lines: string[];
}

/**
 * Boot the image under TCG until `ferry-ready`, two heartbeats and every line
 * matching `expect` have been printed; the QEMU started here is killed (by pid) in all cases.
 */
async function bootCheck(image: GuestImage, opts: { name: string; nets?: GuestNet[]; qemuArgs?: string[]; expect?: RegExp[]; deadlineMs: number }): Promise<BootResult> {
  const deadlineMs = opts.deadlineMs;
  const expect = opts.expect ?? [];
  const dir = await mkdtemp(join(tmpdir(), "ferry-guest-boot-"));
  const serial = join(dir, "serial.log");
  const pidfile = join(dir, "qemu.pid");
  const ac = new AbortController();
  const argv = [
    ...["-machine", "q35,accel=tcg", "-cpu", "qemu64", "-m", "256", "-smp", "1"],
    ...["-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none"],
    ...["-serial", `file:${serial}`, "-pidfile", pidfile],
    ...(opts.qemuArgs ?? []),
    ...["-kernel", image.kernel, "-initrd", image.initrd, "-append", guestCmdline(opts.name, opts.nets ?? [])],
  ];
  const start = systemClock.monotonic();
  let exited: string | undefined;
  const qemu = run("qemu-system-x86_64", argv, { signal: ac.signal, timeoutMs: deadlineMs + 5_000 }).then(
    (r) => {
      exited = `exit ${r.code}: ${r.stderr}`;
    },
    (e: unknown) => {
      exited = String(e);
    },
  );
  try {
    let readyMs: number | undefined;
    for (;;) {
      const elapsed = systemClock.monotonic() - start;
      const log = await readFile(serial, "utf8").catch(() => "");
      const lines = log.split(/\r?\n/);
      const readyAt = lines.indexOf(`ferry-ready ${opts.name}`);
      if (readyAt >= 0) {
        readyMs ??= elapsed;
        // Complete lines after ferry-ready only (the last line may be half written).
        const beats = lines
          .slice(readyAt + 1, -1)
          .map((l) => /^ferry-heartbeat (\d+)$/.exec(l)?.[1])
          .filter((n) => n !== undefined)
          .map(Number);
        const complete = lines.slice(0, -1);
        if (beats.length >= 2 && expect.every((re) => complete.some((l) => re.test(l)))) return { readyMs, beats, lines: complete };
      }
      if (exited !== undefined) assert.fail(`QEMU exited before the guest was ready (${exited}); serial:\n${summary(lines)}`);
      if (elapsed > deadlineMs) assert.fail(`guest not ready (two heartbeats, ${expect.join(" ")}) within ${deadlineMs} ms; serial:\n${summary(lines)}`);
      await systemClock.sleep(50);
    }
  } finally {
    const pid = Number((await readFile(pidfile, "utf8").catch(() => "")).trim());
    if (Number.isInteger(pid) && pid > 0 && exited === undefined) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    ac.abort();
    await qemu;
    await rm(dir, { recursive: true, force: true });
  }
}

test("the guest image builds, is cached, and boots to ferry-ready and a heartbeat under TCG", { timeout: 20 * 60_000 }, async (t) => {
  const image = await ensureGuestImage({ signal: AbortSignal.timeout(15 * 60_000) });
  const manifest = JSON.parse(await readFile(join(image.dir, "manifest.json"), "utf8")) as { moduleOrder: string[] };
  const order = manifest.moduleOrder;
  assert.ok(order.indexOf("virtio_ring") < order.indexOf("virtio_net"));
  assert.ok(order.indexOf("net_failover") < order.indexOf("virtio_net"));
  assert.ok(order.includes("mii") && order.indexOf("mii") < order.indexOf("8139cp"), "8139cp's dependency mii is added");

  const t0 = systemClock.monotonic();
  const again = await ensureGuestImage();
  const cachedMs = systemClock.monotonic() - t0;
  assert.deepEqual(again, image);
  assert.ok(cachedMs < 500, `cached ensureGuestImage took ${cachedMs} ms`);
  assert.deepEqual(await guestImagePaths(), image);

  const { readyMs, beats } = await bootCheck(image, { name: "t", deadlineMs: 60_000 });
  assert.ok(beats[1]! > beats[0]!, `heartbeats increase: ${beats.join(",")}`);
  assert.equal(beats[0], 1, "the first heartbeat after ferry-ready is 1");
  t.diagnostic(`guest ${image.kernelVersion}: ferry-ready after ${Math.round(readyMs)} ms (QEMU start included)`);
});

test("the guest bonds a failover pair (virtio standby + vmxnet3 primary) and puts the address on the master", { timeout: 20 * 60_000 }, async () => {
  const image = await ensureGuestImage({ signal: AbortSignal.timeout(15 * 60_000) });
  const mac = "52:54:00:12:34:56";
  // Hub ports: NICs with a backend but no host networking at all.
  const qemuArgs = [
    ...["-device", "pcie-root-port,id=rp1,chassis=1,slot=1,bus=pcie.0,addr=0x3"],
    ...["-device", "pcie-root-port,id=rp2,chassis=2,slot=2,bus=pcie.0,addr=0x4"],
    ...["-netdev", "hubport,id=hs0,hubid=0", "-device", `virtio-net-pci,netdev=hs0,id=standby0,mac=${mac},failover=on,bus=rp1`],
    ...["-netdev", "hubport,id=hp0,hubid=1", "-device", `vmxnet3,netdev=hp0,id=primary0,mac=${mac},failover_pair_id=standby0,bus=rp2,romfile=`],
  ];
  const { lines } = await bootCheck(image, {
    name: "fo",
    nets: [{ mac, cidr: "10.90.1.10/24" }],
    qemuArgs,
    expect: [/^ferry-net \S+ 52:54:00:12:34:56 10\.90\.1\.10 up$/, /^ferry-lower \S+ \S+ \S+$/],
    deadlineMs: 60_000,
  });
  const net = lines.find((l) => l.startsWith("ferry-net "))!.split(" ");
  const lower = lines.filter((l) => l.startsWith("ferry-lower ")).at(-1)!.split(" ");
  assert.equal(lower[1], net[1], "the address is on the failover master");
  assert.equal(lower.length, 4, `master has two slaves: ${lower.join(" ")}`);
  assert.ok(!lower.slice(2).includes(net[1]!));
});
