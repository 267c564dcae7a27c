// Orchestration overhead, like with like: the same kind of guest migrated
// between two apart lab hosts (each its own network namespace, the migration
// stream over the lab's migration network) (a) by `ferry migrate` through the
// controller and the two agents, and (b) by the floor, a minimal raw-QMP
// sequence doing only what any migration needs: start the destination QEMU
// in the destination host's namespace with -incoming defer, migrate-incoming
// on its migration address, migrate, wait for completed (the destination
// resumes by itself), quit the source. Both once with TLS on the migration
// stream (Ferry's default: the lab's agents' certificates; the floor: QEMU's
// tls-creds-x509 with a certificate of its own CA and the same authz on the
// source's identity) and once plain (a lab with `tls: false`; the floor
// without TLS), so Ferry on TLS is divided by the floor on TLS and plain by
// plain. (c) libvirt, `virsh migrate --live` between two libvirt daemons on
// this machine over loopback, plain (bench/lib/libvirt.ts), for scale.
// Two guests: RAM mostly zero pages, and 512 MiB of random data (the guest's
// ferry.fill, asked through the API). Interleaved rounds (the order of TLS and
// plain alternates); medians and spread.
//   scripts/rt node bench/overhead.ts [--quick]    FERRY_BENCH_ROUNDS=N (default 8; --quick 3)
//   FERRY_BENCH_LIBVIRT=0 skips libvirt.
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initCa, issueCert } from "../src/core/ca.ts";
import { run } from "../src/core/run.ts";
import { follow } from "../src/lab/lab-demo.ts";
import type { LabState } from "../src/lab/lab.ts";
import { labClient, labDown, labSpec, labUp } from "../src/lab/lab.ts";
import { vmSerialLog } from "../src/lab/lab-memcheck.ts";
import { guestCmdline } from "../src/model/guest.ts";
import { guestImagePaths } from "../src/model/guest-image.ts";
import type { Phase } from "../src/migration/types.ts";
import { detectAccel } from "../src/qemu/accel.ts";
import { waitForConsole } from "../src/qemu/console.ts";
import type { Instance } from "../src/qemu/instance.ts";
import { startInstance } from "../src/qemu/instance.ts";
import { prepareIncoming, startMigration, waitMigration } from "../src/qemu/migration.ts";
import { issuedFiles, layoutMigrationTlsDir } from "../src/qemu/migration-tls-dir.ts";
import { enableIncomingTls, enableOutgoingTls, identityForName } from "../src/qemu/migration-tls.ts";
import { quit } from "../src/qmp/commands.ts";
import { benchLibvirtPair, domainXml, stopLibvirtPair } from "./lib/libvirt.ts";
import { benchRounds, machine, median, table, writeResult } from "./lib/report.ts";

const ROUNDS = benchRounds(8, 3);
const TARGET = 1.1;
// 512 MiB of random data needs a 1152 MiB guest: the guest's RAM disk holds at most half its RAM
const GUESTS = [
  { label: "256 MiB, mostly zero pages", memoryMiB: 256, fill: 0 },
  { label: "1152 MiB, 512 MiB random data", memoryMiB: 1152, fill: 512 },
];
const STREAMS = ["tls", "plain"] as const;
type Stream = (typeof STREAMS)[number];
const LABS: Record<Stream, string> = { tls: "bovtls", plain: "bovplain" };

/** An apart lab host as the floor uses it: its network namespace and its migration address (from its agent's config). */
interface FloorHost { name: string; netns: string; migIp: string }
function floorHosts(state: LabState): FloorHost[] {
  return state.hosts.map((h) => {
    if (h.netns === undefined || h.migIp === undefined) throw new Error(`lab ${state.name}: host ${h.name} is not an apart host with a migration address (netns ${h.netns ?? "none"})`);
    return { name: h.name, netns: h.netns, migIp: h.migIp };
  });
}

/** The floor's own CA and one certificate (server and client use) naming both hosts' migration addresses, laid out as QEMU reads it. */
async function floorTls(dir: string, hosts: FloorHost[]): Promise<string> {
  const ca = join(dir, "ca");
  await initCa(ca);
  await issueCert(ca, { name: "floor", ips: hosts.map((h) => h.migIp) });
  const qemuDir = join(dir, "qemu-tls");
  await layoutMigrationTlsDir(qemuDir, issuedFiles(ca, "floor"));
  return qemuDir;
}

interface Row { guest: string; stream: Stream; ferryMs: number[]; floorMs: number[]; phases: Record<string, number[]> }

async function main(): Promise<void> {
  process.env["FERRY_CONTEXT"] = join(tmpdir(), `ferry-bench-context-${process.pid}.json`);
  const { accel } = await detectAccel();
  const img = await guestImagePaths();
  for (const s of STREAMS) await labDown(LABS[s]).catch(() => undefined);
  const cfg = "networks: [physnet1]\nvfs: { physnet1: 2 }\n";
  const states = {} as Record<Stream, LabState>;
  for (const s of STREAMS) states[s] = await labUp(labSpec({ name: LABS[s], hosts: 2, configText: cfg, tls: s === "tls" }), (l) => console.log(`  ${s}: ${l}`));
  const runDir = await mkdtemp(join(tmpdir(), "ferry-floor-"));
  const rows: Row[] = [];
  /** The floor's QEMUs still running: stopped by the finally below if the bench fails half-way. */
  const live = new Set<Instance>();
  const libvirtMs: Record<string, number[]> = {};
  const { pair: lv, note: libvirtNote } = await benchLibvirtPair(runDir);
  try {
    const clients = { tls: await labClient(states.tls), plain: await labClient(states.plain) };
    const hosts = { tls: floorHosts(states.tls), plain: floorHosts(states.plain) };
    const tlsDir = await floorTls(runDir, hosts.tls);
    const floorIdentity = identityForName("floor");
    for (const g of GUESTS) {
      const name = `ov${g.memoryMiB}`;
      const fill = g.fill > 0 ? { fillMiB: g.fill } : {};
      const ready = g.fill > 0 ? /ferry-filled/ : /ferry-ready/;
      const floor = {} as Record<Stream, { src: Instance; on: number; spec: Parameters<typeof startInstance>[0]["spec"] }>;
      for (const s of STREAMS) {
        // Ferry's VM has no NIC, like the floor's: both move the same devices, and the difference is orchestration
        const vm = await clients[s].createVm({ name, host: "host1", memoryMiB: g.memoryMiB, nics: [], ...(g.fill > 0 ? { guestFillMiB: g.fill } : {}) });
        // the floor's VM: the same guest, started directly in host1's namespace
        const spec = { uuid: randomUUID(), name: `floor${g.memoryMiB}${s}`, memoryMiB: g.memoryMiB, vcpus: 1, kernel: img.kernel, initrd: img.initrd, cmdline: guestCmdline(`floor${g.memoryMiB}`, [], fill), nics: [] };
        floor[s] = { src: await startInstance({ runDir, spec, accel, netns: hosts[s][0]!.netns }), on: 0, spec };
        live.add(floor[s].src);
        await waitForConsole(await vmSerialLog(states[s], clients[s], vm.name), ready, { timeoutMs: 600_000 });
        await waitForConsole(floor[s].src.paths.serialLog, ready, { timeoutMs: 600_000 });
      }
      // libvirt's VM: the same guest again, a transient domain on the first daemon
      const lvName = `lv${g.memoryMiB}`;
      if (lv) {
        const xml = join(runDir, `${lvName}.xml`);
        const lvSerial = join(runDir, `${lvName}.serial.log`);
        await writeFile(xml, domainXml({ name: lvName, uuid: randomUUID(), memoryMiB: g.memoryMiB, kernel: img.kernel, initrd: img.initrd, cmdline: guestCmdline(lvName, [], fill), serialLog: lvSerial }));
        await run("virsh", ["-c", lv.a.uri, "create", xml], { timeoutMs: 120_000 });
        await waitForConsole(lvSerial, ready, { timeoutMs: 600_000 });
      }
      const newRow = (s: Stream): Row => ({ guest: g.label, stream: s, ferryMs: [], floorMs: [], phases: {} });
      const byStream: Record<Stream, Row> = { tls: newRow("tls"), plain: newRow("plain") };
      const lvRow: number[] = (libvirtMs[g.label] = []);
      for (let i = 0; i < ROUNDS; i++) {
        for (const s of i % 2 === 0 ? STREAMS : [...STREAMS].reverse()) {
          const row = byStream[s];
          // Ferry
          const c = clients[s];
          const to = (await c.vm(name)).host === "host1" ? "host2" : "host1";
          const t0 = performance.now();
          const started = await c.migrate({ vm: name, to });
          if (started.kind !== "started") throw new Error("plan instead of a migration");
          const rec = await follow(c, started.migration.id, () => undefined, 20);
          row.ferryMs.push(performance.now() - t0);
          if (rec.outcome !== "succeeded") throw new Error(`ferry migration ${rec.id} (${s}): ${rec.outcome} ${rec.reason ?? ""}`);
          for (const [p, t] of Object.entries(rec.timings) as [Phase, { ms?: number } | undefined][]) if (t?.ms !== undefined) (row.phases[p] ??= []).push(t.ms);
          // the floor, between the same two namespaces over the same migration network
          const f = floor[s];
          const dstHost = hosts[s][1 - f.on]!;
          const t1 = performance.now();
          const dst = await startInstance({ runDir, spec: f.spec, accel, incoming: true, netns: dstHost.netns });
          live.add(dst);
          if (s === "tls") await enableIncomingTls(dst.qmp, { dir: tlsDir, sourceIdentity: floorIdentity });
          const uri = await prepareIncoming(dst.qmp, `tcp:${dstHost.migIp}:0`);
          if (s === "tls") await enableOutgoingTls(f.src.qmp, { dir: tlsDir, hostname: dstHost.migIp });
          await startMigration(f.src.qmp, uri);
          const info = await waitMigration(f.src.qmp, { until: ["completed", "failed", "cancelled"], timeoutMs: 600_000, pollMs: 10 });
          if (info.status !== "completed") throw new Error(`floor migration (${s}): ${info.status}`);
          await quit(f.src.qmp).catch(() => undefined);
          row.floorMs.push(performance.now() - t1);
          await f.src.waitExit(5_000);
          live.delete(f.src);
          f.src.qmp.close();
          await f.src.remove();
          f.src = dst;
          f.on = 1 - f.on;
          console.log(`  ${g.label}, ${s}, round ${i + 1}: Ferry ${row.ferryMs.at(-1)!.toFixed(0)} ms, floor ${row.floorMs.at(-1)!.toFixed(0)} ms`);
        }
        // libvirt: client-driven live migration between the two daemons, migration data over loopback
        if (lv) {
          const [from, to] = i % 2 === 0 ? [lv.a, lv.b] : [lv.b, lv.a];
          const t2 = performance.now();
          await run("virsh", ["-c", from.uri, "migrate", "--live", lvName, to.uri, "--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1"], { timeoutMs: 600_000 });
          lvRow.push(performance.now() - t2);
        }
      }
      if (lv) {
        const on = ROUNDS % 2 === 0 ? lv.a : lv.b;
        await run("virsh", ["-c", on.uri, "destroy", lvName], { allowFailure: true, timeoutMs: 30_000 });
      }
      for (const s of STREAMS) {
        const f = floor[s];
        f.src.kill();
        await f.src.waitExit(5_000);
        live.delete(f.src);
        f.src.qmp.close();
        await clients[s].deleteVm(name);
        rows.push(byStream[s]);
      }
    }
  } finally {
    for (const i of live) {
      i.kill();
      await i.waitExit(5_000).catch(() => undefined);
      i.qmp.close();
    }
    for (const s of STREAMS) await labDown(LABS[s]).catch(() => undefined);
    if (lv) await stopLibvirtPair(lv);
    await rm(runDir, { recursive: true, force: true });
  }
  const f0 = (x: number): string => x.toFixed(0);
  const spread = (xs: number[]): string => `${f0(Math.min(...xs))}–${f0(Math.max(...xs))}`;
  const ratio = (r: Row): number => median(r.ferryMs) / median(r.floorMs);
  console.log(`\nOrchestration overhead, apart hosts (${accel}, ${ROUNDS} interleaved rounds each)\n`);
  console.log(table(["guest", "stream", "Ferry median ms", "Ferry min–max", "floor median ms", "floor min–max", "Ferry ÷ floor"], rows.map((r) => [
    r.guest, r.stream, f0(median(r.ferryMs)), spread(r.ferryMs), f0(median(r.floorMs)), spread(r.floorMs), ratio(r).toFixed(2),
  ])));
  if (libvirtNote === undefined) {
    console.log("\nlibvirt (virsh migrate --live, plain, loopback) for scale:");
    console.log(table(["guest", "libvirt median ms", "libvirt min–max", "Ferry plain ÷ libvirt"], GUESTS.map((g) => {
      const xs = libvirtMs[g.label] ?? [];
      const plain = rows.find((r) => r.guest === g.label && r.stream === "plain")!;
      return [g.label, f0(median(xs)), spread(xs), (median(plain.ferryMs) / median(xs)).toFixed(2)];
    })));
  } else console.log(`libvirt not measured: ${libvirtNote}`);
  console.log("\nFerry per-phase medians (ms, from the journal):");
  const phaseNames = Object.keys(rows[0]?.phases ?? {});
  console.log(table(["guest", "stream", ...phaseNames], rows.map((r) => [r.guest, r.stream, ...phaseNames.map((p) => f0(median(r.phases[p] ?? [NaN])))])));
  console.log(`\ntarget: Ferry ≤ ${TARGET} × floor, like with like — ${rows.every((r) => ratio(r) <= TARGET) ? "met" : "NOT met"}`);
  console.log(`wrote ${writeResult("overhead", { machine: machine(accel), rounds: ROUNDS, target: TARGET, libvirt: libvirtNote ?? "measured", rows, libvirtMs })}`);
}

await main();
