// Convergence against the guest's dirty rate: a lab of two hosts (lab "cv"),
// one test guest per dirty rate (its ferry.dirty: it keeps rewriting that many
// MiB/s of a RAM region), migrated host1 → host2 with Ferry's policy
// (convergence "auto": the source measures the dirty rate and turns
// auto-converge on when it is ≥ 25 % of the bandwidth) and with QEMU's
// defaults (convergence "off"), and the same guest under libvirt's defaults
// (`virsh migrate --live` between two libvirt daemons on this machine,
// bench/lib/libvirt.ts: no auto-converge, QEMU's downtime limit; when libvirt
// is installed: FERRY_SETUP_BENCH=1 scripts/setup.sh), on a link capped at
// LINK MiB/s for all three (`--bandwidth` for libvirt), with a converge
// deadline (libvirt has none of its own: the bench aborts its job then with
// `virsh domjobabort`). Per row: the measured dirty rate, the policy chosen,
// converged or not, total time (request → outcome), QEMU's downtime, passes
// over RAM. Interleaved: auto, off, libvirt, auto, off, libvirt … per rate.
//   scripts/rt node bench/convergence.ts [--quick]     --quick: 0 and 50 MiB/s, 1 round
//   FERRY_BENCH_RATES=0,50,200,800 (MiB/s; a guest of 512 MiB, more where its dirty region needs it)  FERRY_BENCH_ROUNDS=N (default 2)  FERRY_BENCH_CONVERGE_MS (default 30000)  FERRY_BENCH_LINK_MIBPS (default 100)
//   FERRY_BENCH_LIBVIRT=0 skips libvirt.
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ControllerClient } from "../src/api/client.ts";
import { labClient, labDown, labSpec, labUp } from "../src/lab/lab.ts";
import { vmSerialLog } from "../src/lab/lab-memcheck.ts";
import { follow } from "../src/lab/lab-demo.ts";
import type { MigrationRecord } from "../src/migration/types.ts";
import { detectAccel } from "../src/qemu/accel.ts";
import { waitForConsole } from "../src/qemu/console.ts";
import { run } from "../src/core/run.ts";
import { dirtyRamMiB, guestCmdline, guestMemoryFor } from "../src/model/guest.ts";
import { guestImagePaths } from "../src/model/guest-image.ts";
import type { LibvirtDaemon } from "./lib/libvirt.ts";
import { benchLibvirtPair, domainXml, stopLibvirtPair } from "./lib/libvirt.ts";
import { benchRounds, machine, median, table, writeResult } from "./lib/report.ts";

const LAB = "cv";
const quick = process.argv.includes("--quick");
const RATES = process.env["FERRY_BENCH_RATES"] ? process.env["FERRY_BENCH_RATES"].split(",").map(Number) : quick ? [0, 50] : [0, 50, 200, 800];
if (RATES.some((r) => !Number.isInteger(r) || r < 0 || r > 4096)) throw new Error(`FERRY_BENCH_RATES=${process.env["FERRY_BENCH_RATES"]}: expected MiB/s from 0 to 4096, comma-separated`);
const ROUNDS = benchRounds(2, 1);
const envInt = (k: string, d: number): number => {
  const s = process.env[k];
  if (s === undefined || s === "") return d;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${k}=${s}: expected a whole number ≥ 1`);
  return n;
};
const CONVERGE_MS = envInt("FERRY_BENCH_CONVERGE_MS", 30_000);
const LINK_MIBPS = envInt("FERRY_BENCH_LINK_MIBPS", 100);
// room on the guest's RAM disk (half its RAM) for the dirty region: one second of writes
const MEMORY_MIB = 512;
/** The guest for a rate: 512 MiB, or more when its dirty region (model/guest.ts dirtyRamMiB) does not fit its RAM disk (half its RAM minus its reserve: model/guest.ts guestRamDiskRoom). */
const memoryFor = (rate: number): number => Math.max(MEMORY_MIB, guestMemoryFor(dirtyRamMiB(rate)));
const POLICIES = ["auto", "off", "libvirt"] as const;
const POLICY_LABEL = { auto: "Ferry (auto)", off: "QEMU defaults", libvirt: "libvirt defaults" } as const;
const MiB = 1024 * 1024;

interface Row {
  dirtyMiBps: number;
  /** What the guest wrote over its last ~5 s before the migration (its ferry-dirty line). */
  guestMiBps: number | null;
  policy: (typeof POLICIES)[number];
  chosen: string;
  measuredDirtyMiBps: number | null;
  converged: boolean;
  outcome: string;
  reason: string | null;
  totalMs: number;
  downtimeMs: number | null;
  iterations: number | null;
  runsOn: string | null;
  vmState: string;
}

/** The guest's last reported dirty rate (MiB/s) in its serial log, after waiting for a fresh report. */
async function guestRate(log: string): Promise<number | null> {
  const count = async (): Promise<number> => ((await readFile(log, "utf8")).match(/ferry-dirty \d+/g) ?? []).length;
  const before = await count();
  // a report every ~5 s: wait for the next one, so the rate is the one right before the migration
  const deadline = Date.now() + 20_000;
  while ((await count()) <= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
  const all = [...(await readFile(log, "utf8")).matchAll(/ferry-dirty (\d+)/g)];
  return all.length > 0 ? Number(all.at(-1)![1]) : null;
}

/** Migrate `name` to `to` with a policy; follow QEMU's passes over RAM from the migration's event stream. */
async function once(client: ControllerClient, name: string, to: string, policy: "auto" | "off", dirtyMiBps: number, guestMiBps: number | null): Promise<Row> {
  const t0 = performance.now();
  const started = await client.migrate({ vm: name, to, convergence: policy, maxBandwidthMiBps: LINK_MIBPS, deadlines: { convergeMs: CONVERGE_MS } });
  if (started.kind !== "started") throw new Error("plan instead of a migration");
  const id = started.migration.id;
  let iterations: number | null = null;
  const stop = new AbortController();
  const events = client.migrationEvents(id, (e) => {
    if (e.type === "progress" && typeof e.iterations === "number") iterations = Math.max(iterations ?? 0, e.iterations);
  }, { signal: stop.signal }).catch(() => undefined);
  let rec: MigrationRecord;
  try {
    rec = await follow(client, id, () => undefined, 50, CONVERGE_MS + 120_000);
  } finally {
    stop.abort();
    await events;
  }
  const totalMs = performance.now() - t0;
  const vm = await client.vm(name);
  return {
    dirtyMiBps, guestMiBps, policy,
    // a migration that did not converge has no perform answer: its reason names the policy and the measured rate
    chosen: rec.convergence !== undefined ? (rec.convergence.autoConverge ? "auto-converge" : "none") : (/\(policy: (auto-converge|no auto-converge)/.exec(rec.reason ?? "")?.[1]?.replace("no auto-converge", "none") ?? "?"),
    measuredDirtyMiBps: rec.convergence?.dirtyBytesPerS !== undefined ? Math.round(rec.convergence.dirtyBytesPerS / MiB) : ((m) => (m ? Number(m[1]) : null))(/chosen at a measured (\d+(?:\.\d)?) MiB\/s/.exec(rec.reason ?? "")),
    converged: rec.outcome === "succeeded",
    outcome: rec.outcome ?? "?",
    reason: rec.reason,
    totalMs,
    downtimeMs: rec.switchover?.downtimeMs ?? null,
    iterations,
    runsOn: rec.runsOn?.host ?? null,
    vmState: `${vm.state} on ${vm.host}`,
  };
}

/** `Key: value unit` lines of `virsh domjobinfo`, as numbers. */
function jobFigure(text: string, key: string): number | null {
  const m = new RegExp(`^${key}:\\s+([0-9.]+)`, "m").exec(text);
  return m ? Number(m[1]) : null;
}

/** The same migration under libvirt's defaults: virsh migrate --live, the link cap as --bandwidth, aborted (domjobabort) at the converge deadline. */
async function onceLibvirt(name: string, from: LibvirtDaemon, to: LibvirtDaemon, dirtyMiBps: number, guestMiBps: number | null): Promise<Row> {
  const t0 = performance.now();
  let aborted = false;
  const timer = setTimeout(() => {
    aborted = true;
    void run("virsh", ["-c", from.uri, "domjobabort", name], { allowFailure: true, timeoutMs: 30_000 });
  }, CONVERGE_MS);
  let r: Awaited<ReturnType<typeof run>>;
  try {
    r = await run("virsh", ["-c", from.uri, "migrate", "--live", "--bandwidth", String(LINK_MIBPS), name, to.uri, "--migrateuri", "tcp://127.0.0.1", "--listen-address", "127.0.0.1"], { allowFailure: true, timeoutMs: CONVERGE_MS + 120_000 });
  } finally {
    clearTimeout(timer);
  }
  const totalMs = performance.now() - t0;
  const converged = r.code === 0;
  // the completed job's statistics, kept by the daemon that runs the guest now
  const info = converged ? (await run("virsh", ["-c", to.uri, "domjobinfo", name, "--completed"], { allowFailure: true, timeoutMs: 30_000 })).stdout : "";
  const state = (await run("virsh", ["-c", (converged ? to : from).uri, "domstate", name], { allowFailure: true, timeoutMs: 30_000 })).stdout.trim();
  return {
    dirtyMiBps, guestMiBps, policy: "libvirt", chosen: "none", measuredDirtyMiBps: null, converged,
    outcome: converged ? "succeeded" : aborted ? "aborted at the deadline" : "failed",
    reason: converged ? null : (r.stderr.trim().split("\n").at(-1) ?? null),
    totalMs, downtimeMs: jobFigure(info, "Total downtime"), iterations: jobFigure(info, "Iteration"),
    runsOn: converged ? to.name : from.name, vmState: `${state || "?"} on ${converged ? to.name : from.name}`,
  };
}

async function main(): Promise<void> {
  process.env["FERRY_CONTEXT"] = join(tmpdir(), `ferry-bench-cv-context-${process.pid}.json`);
  const { accel } = await detectAccel();
  await labDown(LAB).catch(() => undefined);
  const state = await labUp(labSpec({ name: LAB, hosts: 2, configText: "networks: [physnet1]\nvfs: { physnet1: 4 }\n" }));
  const client = await labClient(state);
  const rows: Row[] = [];
  const runDir = await mkdtemp(join(tmpdir(), "ferry-cv-"));
  const { pair: lv, note: libvirtNote } = await benchLibvirtPair(runDir);
  const img = await guestImagePaths();
  try {
    for (const rate of RATES) {
      const name = `cv${rate}`;
      const ready = rate > 0 ? /ferry-dirty \d+/ : /ferry-ready/;
      // no NIC: what is measured is RAM convergence, not the failover's unplug
      const created = await client.createVm({ name, host: "host1", memoryMiB: memoryFor(rate), nics: [], ...(rate > 0 ? { guestDirtyMiBps: rate } : {}) });
      // the guest's dirty writer starts after boot and after making its region: wait for its first report
      await waitForConsole(await vmSerialLog(state, client, created.name), ready, { timeoutMs: 300_000 });
      // libvirt's guest: the same one, a transient domain on the first daemon
      const lvSerial = join(runDir, `${name}.serial.log`);
      let lvOn: LibvirtDaemon | undefined;
      if (lv) {
        const xml = join(runDir, `${name}.xml`);
        await writeFile(xml, domainXml({ name, uuid: randomUUID(), memoryMiB: memoryFor(rate), kernel: img.kernel, initrd: img.initrd, cmdline: guestCmdline(name, [], { dirtyMiBps: rate }), serialLog: lvSerial }));
        await run("virsh", ["-c", lv.a.uri, "create", xml], { timeoutMs: 120_000 });
        lvOn = lv.a;
        await waitForConsole(lvSerial, ready, { timeoutMs: 300_000 });
      }
      for (let i = 0; i < ROUNDS; i++) {
        for (const policy of POLICIES) {
          let row: Row;
          if (policy === "libvirt") {
            if (!lv || !lvOn) continue;
            const to = lvOn === lv.a ? lv.b : lv.a;
            row = await onceLibvirt(name, lvOn, to, rate, rate > 0 ? await guestRate(lvSerial) : 0);
            if (row.converged) lvOn = to;
          } else {
            const vm = await client.vm(name);
            const to = vm.host === "host1" ? "host2" : "host1";
            row = await once(client, name, to, policy, rate, rate > 0 ? await guestRate(await vmSerialLog(state, client, name)) : 0);
          }
          rows.push(row);
          console.log(`  ${rate} MiB/s, ${policy}: ${row.outcome} in ${row.totalMs.toFixed(0)} ms${row.converged ? `, downtime ${row.downtimeMs} ms` : ` (${row.reason ?? ""}); VM ${row.vmState}`}`);
        }
      }
      await client.deleteVm(name);
      if (lvOn) await run("virsh", ["-c", lvOn.uri, "destroy", name], { allowFailure: true, timeoutMs: 30_000 });
    }
  } finally {
    await labDown(LAB);
    if (lv) await stopLibvirtPair(lv);
    await rm(runDir, { recursive: true, force: true });
  }
  const f = (x: number | null): string => (x === null ? "-" : x.toFixed(0));
  console.log(`\nConvergence against dirty rate (${accel}; ${RATES.map((r) => `${memoryFor(r)} MiB guest at ${r} MiB/s`).join(", ")}, no NIC; link capped at ${LINK_MIBPS} MiB/s; converge deadline ${CONVERGE_MS} ms; ${ROUNDS} round(s), interleaved)\n`);
  console.log(table(["dirty MiB/s", "guest wrote MiB/s", "policy", "measured MiB/s", "chosen", "converged", "total ms", "downtime ms", "iterations", "VM after"], rows.map((r) => [
    r.dirtyMiBps, f(r.guestMiBps), POLICY_LABEL[r.policy], f(r.measuredDirtyMiBps), r.chosen, r.converged ? "yes" : `no (${r.outcome})`, f(r.totalMs), f(r.downtimeMs), f(r.iterations), r.vmState,
  ])));
  const summary = RATES.flatMap((rate) => POLICIES.map((policy) => {
    const rs = rows.filter((r) => r.dirtyMiBps === rate && r.policy === policy);
    const ok = rs.filter((r) => r.converged);
    return { dirtyMiBps: rate, policy, runs: rs.length, converged: ok.length, medianTotalMs: ok.length > 0 ? median(ok.map((r) => r.totalMs)) : null, medianDowntimeMs: ok.length > 0 ? median(ok.map((r) => r.downtimeMs ?? 0)) : null };
  }));
  if (libvirtNote !== undefined) console.log(`libvirt not measured: ${libvirtNote}`);
  for (const r of rows.filter((x) => !x.converged)) console.log(`\nnot converged (${r.dirtyMiBps} MiB/s, ${r.policy}): ${r.reason ?? ""}`);
  console.log(`wrote ${writeResult("convergence", { machine: machine(accel), libvirt: libvirtNote ?? "measured", memoryMiB: Object.fromEntries(RATES.map((r) => [r, memoryFor(r)])), linkMiBps: LINK_MIBPS, convergeMs: CONVERGE_MS, rounds: ROUNDS, rates: RATES, rows, summary })}`);
}

await main();
