// `ferry migrate VM [--to HOST] [--plan] [--convergence P] [--max-bandwidth MiB/s] [--json]`: live-migrate a VM and
// follow it to its outcome from the controller's stream (a progress bar on a
// TTY, a line per phase and event otherwise: migration-watch.ts), then the
// outcome, every phase with its time, where the VM runs, its NICs before and after,
// downtime and total time; in a lab the outcome line comes first, then (once
// every NIC answered steadily past the end) each NIC's longest gap and time
// until stable. --plan: the ranked destinations and why other hosts
// were rejected; nothing changes. --json: one object at the end.
// Exit: 0 succeeded/degraded, 3 refused (nothing changed), 4 rolled back (or
// recovered: back on the source), 1 failed.
import { systemClock } from "../../core/clock.ts";
import { FerryError, isFerryError } from "../../core/errors.ts";
import { CONVERGENCE_REQUESTS } from "../../migration/convergence.ts";
import type { ConvergenceRequest } from "../../migration/convergence.ts";
import type { MigrationRecord } from "../../migration/types.ts";
import { oneOf, rejectExtra, UsageError, wholeNumber } from "../args.ts";
import { MIGRATION_MAX_MIBPS } from "../../wire/controller-api.ts";
import { command } from "../command.ts";
import { EXIT } from "../exit-codes.ts";
import type { MigrationSummary } from "../render/migration.ts";
import { migrationSummary, renderPlan, renderSummary } from "../render/migration.ts";
import { renderPhases } from "../render/migration-progress.ts";
import { watchMigration } from "./migration-watch.ts";
import { CONNECT_HELP, CONNECT_OPTIONS, connect, printJson } from "./connect.ts";

/** How long `ferry migrate` waits, in all, for a lab's connectivity figures after the outcome (the controller's watch has its own deadline). */
const MEASURE_WAIT_MS = 15 * 60_000;

export const USAGE = `usage: ferry migrate VM [--to HOST] [--plan] [--convergence POLICY] [--max-bandwidth MiB/s] [--json]
  --to HOST   migrate to this host (default: the scheduler's best)
  --plan      only show the ranked destinations, the rejected hosts, the checks per destination
              and the predicted duration and downtime (measures the guest's dirty rate for 1 s)
  --convergence POLICY
              auto (default, or the VM's own: 'ferry vm create --convergence'): auto-converge when the
              guest's measured dirty rate is a large part of the bandwidth; off: QEMU's defaults;
              auto-converge: always throttle the vCPUs while the guest dirties more than is sent
  --max-bandwidth MiB/s
              cap the migration stream; also the bandwidth the convergence policy weighs the dirty rate against
  --json      print one JSON object: the record (docs/records.md; --local too), or the plan
  --local     local migration (QEMU upgrade in place): a new instance on the same host, RAM shared, VFs kept
  --qemu PATH with --local: the new instance's QEMU binary
exit codes: 0 succeeded (or degraded), 1 failed, 3 refused (nothing changed), 4 rolled back
${CONNECT_HELP}
`;
const OPTIONS = { ...CONNECT_OPTIONS, to: { type: "string" }, plan: { type: "boolean" }, convergence: { type: "string" }, "max-bandwidth": { type: "string" }, json: { type: "boolean" }, local: { type: "boolean" }, qemu: { type: "string" }, help: { type: "boolean", short: "h" } } as const;

/** --convergence and --max-bandwidth, checked here (the controller checks them again). */
function migrationPolicy(convergence: string | undefined, maxBandwidth: string | undefined): { convergence?: ConvergenceRequest; maxBandwidthMiBps?: number } {
  const c = oneOf("migrate", "--convergence", convergence, CONVERGENCE_REQUESTS);
  const bw = wholeNumber("migrate", "--max-bandwidth", maxBandwidth, MIGRATION_MAX_MIBPS, "MiB/s");
  return { ...(c === undefined ? {} : { convergence: c }), ...(bw === undefined ? {} : { maxBandwidthMiBps: bw }) };
}

export function exitFor(r: Pick<MigrationRecord, "outcome" | "refused">): number {
  switch (r.outcome) {
    case "succeeded":
    case "degraded":
      return EXIT.ok;
    case "rolled-back":
    case "recovered":
      return EXIT.rolledBack;
    default:
      return r.refused ? EXIT.refused : EXIT.failed;
  }
}

export const run = command("migrate", USAGE, OPTIONS, async ({ values, positionals }) => {
  const [vmName, ...extra] = positionals;
  if (vmName === undefined) throw new UsageError("migrate", "missing VM");
  rejectExtra("migrate", extra);
  const policy = migrationPolicy(values.convergence, values["max-bandwidth"]);
  const client = await connect("migrate", values);
  if (values.qemu !== undefined && !values.local) throw new UsageError("migrate", "--qemu applies to --local only");
  if (values.local) {
    if (values.to !== undefined || values.plan) throw new UsageError("migrate", "--local moves the VM within its host: no --to or --plan");
    if (Object.keys(policy).length > 0) throw new UsageError("migrate", "--convergence and --max-bandwidth apply to migrations between hosts (--local copies no RAM)");
    const t0 = systemClock.monotonic();
    const r = await client.localMigrate(vmName, values.qemu === undefined ? {} : { qemuBinary: values.qemu });
    const res = r.result;
    const endToEndMs = Math.round(systemClock.monotonic() - t0);
    // --json: the one record shape (docs/records.md); an older controller that keeps no record: its reply as before
    if (values.json) printJson(r.migration ? migrationSummary(r.migration) : { vm: r.vm.name, outcome: "succeeded", host: r.vm.host, ...res, endToEndMs });
    else {
      process.stdout.write(`local migration ${r.migration?.id ?? ""} of ${r.vm.name} on ${r.vm.host}: succeeded\n`);
      process.stdout.write(`  instance ${res.oldInstanceId} → ${res.newInstanceId} (QEMU ${res.qemuBinary})\n`);
      process.stdout.write(`  end to end ${endToEndMs} ms, QEMU total ${res.totalMs} ms, downtime ${res.downtimeMs} ms, RAM sent ${(res.transferredBytes / 2 ** 20).toFixed(1)} MiB of ${(res.ramBytes / 2 ** 20).toFixed(0)} MiB (shared, not copied)\n`);
      process.stdout.write(`  VF leases moved to the new instance: ${res.movedVfs.join(", ") || "none"}\n`);
      if (r.migration) process.stdout.write(`  recorded: 'ferry migration show ${r.migration.id}', 'ferry migrations'\n`);
    }
    return EXIT.ok;
  }
  const to = values.to === undefined ? {} : { to: values.to };

  if (values.plan) {
    if (Object.keys(policy).length > 0) throw new UsageError("migrate", "--convergence and --max-bandwidth apply to a migration, not to --plan");
    const r = await client.migrate({ vm: vmName, plan: true, ...to });
    if (r.kind !== "plan") throw new FerryError("FERRY_ERR_CONTROLLER", "the controller started a migration when asked for a plan");
    if (values.json) printJson(r.plan);
    else process.stdout.write(renderPlan(r.plan));
    return r.plan.destinations.length > 0 ? EXIT.ok : EXIT.refused;
  }

  let started: MigrationRecord;
  try {
    const r = await client.migrate({ vm: vmName, ...to, ...policy });
    if (r.kind !== "started") throw new FerryError("FERRY_ERR_CONTROLLER", "the controller answered a plan when asked to migrate");
    started = r.migration;
  } catch (e) {
    if (!isFerryError(e, "FERRY_ERR_NO_VF") && !isFerryError(e, "FERRY_ERR_NO_HOST")) throw e;
    const vm = await client.vm(vmName);
    const pfOf = new Map((await client.devices({ host: vm.host }).catch(() => [])).map((d) => [d.vf, d.pf]));
    const raw = e.details["rejections"];
    const rejections = Array.isArray(raw) ? (raw as MigrationSummary["rejections"]) : [];
    const summary: MigrationSummary = {
      id: null, kind: "migration", vm: vm.name, outcome: "refused", source: vm.host, destination: values.to ?? null,
      runsOn: vm.instanceId === null ? null : { host: vm.host, instanceId: vm.instanceId }, reason: e.message, code: e.code,
      timings: { totalMs: 0, downtimeMs: null, phases: {} }, timeline: [], dataMovedBytes: null, switchover: null, warnings: [],
      nics: vm.nics.map((n) => {
        const here = n.vf === null ? null : { host: vm.host, vf: n.vf, pf: pfOf.get(n.vf) ?? "" };
        return { name: n.name, network: n.network, mode: n.mode, policy: n.policy, before: here, after: here, gapMs: null };
      }),
      rejections,
    };
    if (values.json) printJson(summary);
    else process.stdout.write(`${renderSummary(summary)}\n`);
    return EXIT.refused;
  }

  if (!values.json) process.stdout.write(`migration ${started.id}: ${started.plan.vm.name} ${started.plan.source.host} → ${started.plan.destination.host}\n`);
  let rec = await watchMigration(client, started.id, { mode: values.json ? "quiet" : process.stdout.isTTY ? "tty" : "plain", createdAt: started.createdAt });
  if (rec.measuring === true) {
    // lab: the outcome is in; the NICs are watched on until steady, and their figures follow
    if (!values.json) process.stdout.write(`outcome: ${rec.outcome ?? "?"}, runs on ${rec.runsOn?.host ?? "UNKNOWN"}; measuring connectivity until every NIC answers steadily…\n`);
    const since = systemClock.monotonic();
    while (rec.measuring === true && systemClock.monotonic() - since < MEASURE_WAIT_MS) {
      await systemClock.sleep(500);
      try {
        rec = await client.migration(rec.id, { timeoutMs: 10_000 });
      } catch (e) {
        if (!isFerryError(e, "FERRY_ERR_CONTROLLER")) throw e;
      }
    }
  }
  const summary = migrationSummary(rec);
  if (values.json) printJson(summary);
  else process.stdout.write(`${renderSummary(summary)}PHASES\n${renderPhases(rec)}`);
  return exitFor(rec);
});
