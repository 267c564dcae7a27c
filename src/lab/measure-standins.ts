// Stand-in fidelity: how long after hot-plug a stand-in VF model carries the
// guest's traffic. For each model, one guest (the test image, no NIC at boot
// but the stand-in's MAC and address on its command line) on a tap of a lab
// fabric; the peer probes the guest every 10 ms the whole time; then, N times:
// plugPrimary (netdev on the tap + device_add on the NIC's root port), and
// from the moment device_add returns:
//   console: the guest's `ferry-net <if> <mac> <ip> up` line (driver bound,
//            address configured; the guest's init polls sysfs every 150 ms,
//            and the line says nothing about carrier)
//   reply:   the first echo reply from the guest after that moment: the NIC
//            carries traffic (driver + carrier + ARP both ways)
// then unplug (device_del until DEVICE_DELETED) and wait for the next round.
//
//   scripts/rt node src/lab/measure-standins.ts [--runs N] [--models vmxnet3,rtl8139,…] [--json FILE]
//
// A tool, not a test: it prints a Markdown table (docs/stand-ins.md keeps one).
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { systemClock } from "../core/clock.ts";
import { toFerryError } from "../core/errors.ts";
import { pollUntil } from "../core/poll.ts";
import { median } from "../core/stats.ts";
import { STAND_IN_MODELS } from "../model/vm.ts";
import type { NicSpec, PrimaryDevice, StandInModel, VmSpec } from "../model/vm.ts";
import { detectAccel } from "../qemu/accel.ts";
import { readConsole, waitForConsole } from "../qemu/console.ts";
import { plugPrimary, unplugPrimary } from "../qemu/hotplug.ts";
import type { Instance } from "../qemu/instance.ts";
import { startInstance } from "../qemu/instance.ts";
import { addTap, createFabric, deleteTap, destroyFabric, pinPeerNeighbor } from "./fabric.ts";
import type { Fabric } from "./fabric-plan.ts";
import { guestCmdline } from "../model/guest.ts";
import { guestImagePaths } from "../model/guest-image.ts";
import { startProbe } from "./probe.ts";
import type { ProbeResult } from "./probe.ts";

const FABRIC = "standins";
const GUEST_IP = "10.91.1.10";
const MAC = "52:54:00:5a:00:01";

export interface Round {
  /** ms from device_add returning to the `ferry-net … up` console line. */
  consoleMs: number;
  /** ms from device_add returning to the first echo reply. */
  replyMs: number;
  /** device_del → DEVICE_DELETED, ms. */
  unplugMs: number;
}

export interface ModelResult {
  model: StandInModel;
  bootMs: number;
  rounds: Round[];
  probe: ProbeResult;
}

/** Wait (polling every 10 ms) until the console, past `from` bytes, matches `re`; epoch ms of the match. */
async function consoleLine(path: string, from: number, re: RegExp, timeoutMs: number): Promise<number> {
  // Date.now(): a wall-clock stamp, compared with the probe's reply stamps
  const at = await pollUntil(systemClock, { timeoutMs, everyMs: 10 }, async () => (re.test((await readConsole(path)).slice(from)) ? Date.now() : undefined));
  if (at === undefined) throw new Error(`console never showed ${re} within ${timeoutMs} ms`);
  return at;
}

async function measureModel(f: Fabric, model: StandInModel, runs: number, runDir: string, log: (s: string) => void): Promise<ModelResult> {
  const { accel } = await detectAccel();
  const img = await guestImagePaths();
  const tap = `ms-${model.slice(0, 8)}`;
  await addTap(f, "physnet1", tap);
  // the peer knows the guest's MAC (a VF keeps it): replies wait for the NIC, not for the peer's ARP retry timer
  await pinPeerNeighbor(f, "physnet1", GUEST_IP, MAC);
  const nic: NicSpec = { name: "net0", mode: "ephemeral", mac: MAC, network: "physnet1", guestPorts: { primary: 1 } };
  const primary: PrimaryDevice = { kind: "stand-in", model, backend: { kind: "tap", ifname: tap }, vf: "0000:3b:10.0" };
  const spec: VmSpec = {
    uuid: randomUUID(), name: `standin-${model}`, memoryMiB: 256, vcpus: 1, kernel: img.kernel, initrd: img.initrd,
    cmdline: guestCmdline(`standin-${model}`, [{ mac: MAC, cidr: `${GUEST_IP}/24` }]), nics: [nic],
  };
  let inst: Instance | undefined;
  try {
    const t0 = systemClock.monotonic();
    inst = await startInstance({ runDir, spec, accel, netns: f.netns });
    await waitForConsole(inst.paths.serialLog, /ferry-ready/, { timeoutMs: 60_000 });
    const bootMs = systemClock.monotonic() - t0;
    const probe = await startProbe({ netns: f.netns, target: GUEST_IP });
    const rounds: Round[] = [];
    try {
      for (let i = 0; i < runs; i++) {
        const from = (await readConsole(inst.paths.serialLog)).length;
        await plugPrimary(inst.qmp, { ...nic, primary }, primary, { timeoutMs: 10_000 });
        const plugged = Date.now();
        const up = consoleLine(inst.paths.serialLog, from, new RegExp(`ferry-net \\S+ ${MAC} ${GUEST_IP.replaceAll(".", "\\.")} up`), 20_000);
        const reply = probe.waitReply(plugged, { timeoutMs: 20_000 });
        const [upAt, replyAt] = await Promise.all([up, reply]);
        // let it carry traffic a little, then take it away again
        await systemClock.sleep(300);
        const unplugMs = await unplugPrimary(inst.qmp, { ...nic, primary }, { timeoutMs: 10_000 });
        const round = { consoleMs: upAt - plugged, replyMs: Math.round(replyAt - plugged), unplugMs: Math.round(unplugMs) };
        rounds.push(round);
        log(`  ${model} round ${i + 1}: console ${round.consoleMs} ms, first reply ${round.replyMs} ms, unplug ${round.unplugMs} ms`);
        // the guest's init notices the NIC is gone on its next sysfs pass (150 ms)
        await systemClock.sleep(500);
      }
    } catch (e) {
      await probe.stop().catch(() => undefined);
      throw e;
    }
    return { model, bootMs, rounds, probe: await probe.stop() };
  } finally {
    if (inst) {
      inst.kill();
      await inst.waitExit(5_000);
      inst.qmp.close();
    }
    await deleteTap(f, tap);
  }
}

/** Whole milliseconds, as the table shows them. */
const medianMs = (xs: readonly number[]): number => Math.round(median(xs));

export function table(results: readonly ModelResult[]): string {
  const lines = [
    "| model | runs | first reply after device_add, ms (median / min / max) | `ferry-net … up` line, ms (median / min / max) | unplug (DEVICE_DELETED), ms median | all first-reply runs, ms |",
    "|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    const reply = r.rounds.map((x) => x.replyMs);
    const cons = r.rounds.map((x) => x.consoleMs);
    const mmm = (xs: number[]): string => `${medianMs(xs)} / ${Math.min(...xs)} / ${Math.max(...xs)}`;
    lines.push(`| ${r.model} | ${r.rounds.length} | ${mmm(reply)} | ${mmm(cons)} | ${medianMs(r.rounds.map((x) => x.unplugMs))} | ${reply.join(", ")} |`);
  }
  return lines.join("\n");
}

export async function measureStandIns(o: { runs: number; models: readonly StandInModel[]; log?: (s: string) => void }): Promise<ModelResult[]> {
  const log = o.log ?? ((s: string) => console.error(s));
  const runDir = await mkdtemp(join(tmpdir(), "ferry-ms-"));
  const f = await createFabric({ name: FABRIC, networks: [{ name: "physnet1", subnet: "10.91.1.0/24", peerAddress: "10.91.1.1/24" }] });
  log(`fabric ${f.netns}: bridge ${f.networks[0]?.bridge}, peer ${f.networks[0]?.peerAddress}`);
  try {
    const results: ModelResult[] = [];
    for (const model of o.models) results.push(await measureModel(f, model, o.runs, runDir, log));
    return results;
  } finally {
    const d = await destroyFabric(FABRIC);
    if (d.pidsInside.length) log(`warning: processes still in ${d.netns}: ${d.pidsInside.join(" ")}`);
    await rm(runDir, { recursive: true, force: true });
  }
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { runs: { type: "string", default: "5" }, models: { type: "string" }, json: { type: "string" } } });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 100) throw new Error(`--runs: a whole number 1..100 (got ${values.runs})`);
  const models = (values.models?.split(",") ?? [...STAND_IN_MODELS]).map((m) => {
    if (!(STAND_IN_MODELS as readonly string[]).includes(m)) throw new Error(`--models: unknown model ${m} (known: ${STAND_IN_MODELS.join(", ")})`);
    return m as StandInModel;
  });
  const { accel, reason } = await detectAccel();
  console.error(`accelerator ${accel} (${reason}); ${runs} rounds per model`);
  const results = await measureStandIns({ runs, models });
  console.log(table(results));
  if (values.json) await writeFile(values.json, JSON.stringify({ accel, at: new Date().toISOString(), results }, null, 2) + "\n");
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    () => undefined,
    (e: unknown) => {
      const err = toFerryError(e);
      console.error(`measure-standins: ${err.code}: ${err.message}`);
      process.exitCode = 1;
    },
  );
}
