// The randomized soak: N VMs on M lab hosts with scarce VFs; a fixed number
// of random operations — migrations (to a random host or the scheduler's
// choice), migrations cancelled after a random delay, migrations with a lab
// fault switch armed on the destination — one after the other; after each
// one, the store is checked against the hosts' real state (QEMU processes as
// the agents see them, QMP run state, leases): FaultCluster.checkStore. A VM
// that ended down is started again (that is an operation too). Stops by
// itself after FERRY_SOAK_OPS operations. Prints operations done, outcomes,
// violations (must be 0). One VM (soak-guest) is the real test guest: after
// every operation that leaves it running, its memory checksum must still be
// the one it printed when it (last) booted.
//
//   FERRY_SOAK_OPS=200 FERRY_SOAK_SEED=7 scripts/rt node test/faults/soak.ts     # the long run
//   npm test runs a short one (test/faults/soak.test.ts).
import { isFerryError } from "../../src/core/errors.ts";
import { systemClock } from "../../src/core/clock.ts";
import type { MigrationRecord } from "../../src/migration/types.ts";
import { prng } from "../../src/scheduler/fixtures.ts";
import { bootMemsum } from "../../src/lab/memcheck.ts";
import { FaultCluster, waitFor } from "./cluster.ts";

export interface SoakOptions {
  ops: number;
  seed: number;
  vms?: number;
  hosts?: number;
  vfsPerHost?: number;
  log?: (line: string) => void;
}

export interface SoakReport {
  ops: number;
  outcomes: Record<string, number>;
  violations: string[];
  seconds: number;
  /** The real guest's memory checks: compared with its boot checksum, and how many differed. */
  memchecks: { compared: number; mismatched: number };
}

const SWITCHES = ["precheck-fail", "port-profile-fail", "replug-fail", "qemu-crash-on-destination", "agent-crash-in-prepare"] as const;
const NICS = [
  [{ network: "physnet1", mode: "failover", policy: "optional" }],
  [{ network: "physnet1", mode: "failover", policy: "mandatory" }],
  [{ network: "physnet1", mode: "failover", policy: "requisite" }],
  [{ network: "physnet1", mode: "emulated", policy: "optional" }],
] as const;

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const log = o.log ?? ((): void => undefined);
  const random = prng(o.seed); // seeded: a failing run replays with its seed
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const hosts = Array.from({ length: o.hosts ?? 3 }, (_, i) => ({ name: `host-${String.fromCharCode(97 + i)}`, vfs: o.vfsPerHost ?? 2 }));
  const started = systemClock.monotonic();
  const c = await FaultCluster.start({ hosts, deadlines: "{ unplugMs: 5000, convergeMs: 60000, precheckMs: 2000, primaryBackMs: 300, stepMs: 30000 }" });
  const report: SoakReport = { ops: 0, outcomes: {}, violations: [], seconds: 0, memchecks: c.memchecks };
  const count = (k: string): void => void (report.outcomes[k] = (report.outcomes[k] ?? 0) + 1);
  try {
    const names = Array.from({ length: o.vms ?? 4 }, (_, i) => `soak-${i}`);
    const spec = (i: number) => ({ memoryMiB: 64, nics: [...NICS[i % NICS.length]!].map((n) => ({ ...n })), noOs: true });
    for (const [i, name] of names.entries()) await c.api.createVm({ name, host: hosts[i % hosts.length]!.name, ...spec(i) });
    // the real guest: its memory is checked after every operation that leaves it running
    await c.api.createVm({ name: "soak-guest", host: hosts[0]!.name, memoryMiB: 256, nics: [{ network: "physnet1", mode: "failover", policy: "optional" }] });
    names.push("soak-guest");
    let guestBoot: { instanceId: string; sum: string } | null = null;
    const guestBootSum = async (): Promise<string | null> => {
      const vm = await c.api.vm("soak-guest");
      if (vm.state !== "running" || vm.instanceId === null) return null;
      // a new boot (a start after the guest went down) prints a new checksum; a migrated instance keeps the old one
      if (guestBoot?.instanceId !== vm.instanceId && (guestBoot === null || !(await c.arrivedByMigration(vm.host, vm.instanceId)))) {
        guestBoot = { instanceId: vm.instanceId, sum: await bootMemsum(await c.serialLogOf(vm.host, vm.instanceId), { timeoutMs: 60_000 }) };
      }
      return guestBoot.sum;
    };

    while (report.ops < o.ops) {
      report.ops++;
      const name = pick(names);
      const vm = await c.api.vm(name);
      let what: string;
      let rec: MigrationRecord | null = null;
      if (vm.state !== "running") {
        // down after a fault: start it again
        what = `start ${name}`;
        await c.api.startVm(name).then(() => count("vm started again"), (e: unknown) => count(`start refused: ${isFerryError(e) ? e.code : String(e)}`));
      } else {
        const roll = random();
        const to = random() < 0.7 ? pick(hosts.filter((h) => h.name !== vm.host)).name : undefined;
        const sw = roll < 0.3 && to !== undefined ? pick(SWITCHES) : null;
        const cancelAfter = roll >= 0.3 && roll < 0.5 ? Math.floor(random() * 1500) : null;
        what = `migrate ${name} ${vm.host} → ${to ?? "(scheduler)"}${sw ? ` with ${sw}` : ""}${cancelAfter !== null ? `, cancel after ${cancelAfter} ms` : ""}`;
        log(`${String(report.ops).padStart(4)} … ${what}`);
        if (sw && to) await c.arm(to, sw, { once: true });
        const r = await c.api.migrate({ vm: name, ...(to === undefined ? {} : { to }) }).catch((e: unknown) => e);
        if (r instanceof Error || (typeof r === "object" && r !== null && "kind" in r && r.kind !== "started")) {
          const why = `refused (${isFerryError(r) ? r.code : "plan"})`;
          count(why);
          what += ` → ${why}`;
        } else if (typeof r === "object" && r !== null && "migration" in r) {
          const id = (r as { migration: MigrationRecord }).migration.id;
          if (cancelAfter !== null) {
            await systemClock.sleep(cancelAfter);
            const cr = await c.api.cancelMigration(id).catch((e: unknown) => ({ result: `error ${String(e)}` }));
            what += ` [cancel: ${cr.result}]`;
          }
          if (sw === "agent-crash-in-prepare" && to) {
            const a = c.agent(to).proc.child;
            const crashed = (): boolean => a.exitCode !== null || a.signalCode !== null;
            await waitFor(`${to} crashed or the migration done`, async () => (crashed() || (await c.api.migration(id)).phase === "done" ? true : undefined), 60_000);
            if (crashed()) await c.restartAgent(to); // as its supervisor would
          }
          rec = await c.waitDone(id, 180_000);
          count(rec.outcome ?? "none");
          what += ` → ${rec.outcome ?? "?"}${rec.code ? ` ${rec.code}` : ""}`;
        }
      }
      // restart an agent that crashed (agent-crash-in-prepare), disarm what did not fire
      for (const a of c.agents.values()) {
        if (a.proc.child.exitCode !== null || a.proc.child.signalCode !== null) await c.restartAgent(a.name);
        await waitFor(`${a.name} answering`, async () => {
          await c.clearFaults(a.name);
          return true;
        }, 30_000);
      }
      const v = await settled(c, rec);
      const boot = await guestBootSum().catch((e: unknown) => `no boot checksum: ${e instanceof Error ? e.message : String(e)}`);
      if (boot !== null && v.length === 0) {
        const g = await c.api.vm("soak-guest");
        v.push(...(boot.startsWith("no boot") ? [boot] : (await c.check({ name: "soak-guest", uuid: g.uuid }, null, { bootSum: boot })).filter((x) => /memory/.test(x))));
      }
      log(`${String(report.ops).padStart(4)} ${what}${v.length > 0 ? `\n       ✗ ${v.join("\n       ✗ ")}` : ""}`);
      report.violations.push(...v.map((x) => `op ${report.ops} (${what}): ${x}`));
    }
  } finally {
    report.seconds = Math.round((systemClock.monotonic() - started) / 1000);
    await c.close();
  }
  return report;
}

/** The store against the hosts, given time to converge (an agent reaps a dead QEMU on its own tick, the controller notices). */
async function settled(c: FaultCluster, rec: MigrationRecord | null): Promise<string[]> {
  let v: string[] = [];
  await waitFor("the store to match the hosts", async () => {
    v = await c.checkStore(rec === null ? null : await c.api.migration(rec.id));
    return v.length === 0 ? true : undefined;
  }, 30_000, 500).catch(() => undefined);
  return v;
}

export function renderSoak(r: SoakReport): string {
  const outcomes = Object.entries(r.outcomes).sort((a, b) => b[1] - a[1]).map(([k, n]) => `  ${String(n).padStart(4)}  ${k}`);
  return [`soak: ${r.ops} operations in ${r.seconds} s`, "outcomes:", ...outcomes, `guest memory checked ${r.memchecks.compared} times, ${r.memchecks.mismatched} different from the boot checksum`, `violations: ${r.violations.length}`, ...r.violations.map((v) => `  ✗ ${v}`)].join("\n");
}

if (import.meta.main) {
  const ops = Number(process.env["FERRY_SOAK_OPS"] ?? "50");
  const seed = Number(process.env["FERRY_SOAK_SEED"] ?? String(Date.now() % 100_000));
  process.stdout.write(`soak: ${ops} operations, seed ${seed} (FERRY_SOAK_SEED=${seed} replays it)\n`);
  const r = await runSoak({ ops, seed, log: (l) => process.stdout.write(`${l}\n`) });
  process.stdout.write(`${renderSoak(r)}\n`);
  process.exitCode = r.violations.length === 0 ? 0 : 1;
}
