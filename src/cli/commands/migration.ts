// `ferry migration show ID [--json]`: one record's summary and every phase with its time (--json: the summary of docs/records.md, and the raw record under `record`).
// `ferry migration watch ID [--json]`: follow it live from the controller's stream to its end.
// `ferry migration cancel ID [--json]`: best-effort cancel; prints what really happened.
// `ferry migration set ID [--max-bandwidth MiB/s] [--downtime-limit ms] [--json]`: tune it while RAM streams.
// `ferry migration force-complete ID [--downtime-limit ms] [--json]`: make it converge now (downtime limit raised; says why not post-copy).
import { rejectExtra, UsageError, wholeNumber } from "../args.ts";
import { MIGRATION_MAX_MIBPS } from "../../wire/controller-api.ts";
import { command } from "../command.ts";
import { EXIT } from "../exit-codes.ts";
import { migrationSummary, renderSummary } from "../render/migration.ts";
import { renderPhases } from "../render/migration-progress.ts";
import { CONNECT_HELP, CONNECT_OPTIONS, connect, printJson } from "./connect.ts";
import { exitFor } from "./migrate.ts";
import { watchMigration } from "./migration-watch.ts";

export const USAGE = `usage:
  ferry migration show ID [--json]     a migration: plan, phase, every phase with its time, outcome, NICs before and after
  ferry migration watch ID [--json]    follow it live: a progress bar on a terminal (a line per event otherwise; --json: one JSON event a line), then the outcome
  ferry migration cancel ID [--json]   cancel it (before the switch-over: the VM keeps running on the source, the destination's instance and VFs are released); reports cancelled, completed, failed or already-done
  ferry migration set ID [--max-bandwidth MiB/s] [--downtime-limit ms] [--json]
                                       change its bandwidth cap or downtime limit on the source's QEMU while RAM streams (phase perform)
  ferry migration force-complete ID [--downtime-limit ms] [--json]
                                       make it converge now: raises the downtime limit (default: QEMU's expected downtime + 25 %, at least 2000 ms); post-copy is not possible with failover NICs on QEMU 7.2
exit codes: cancel: 4 cancelled (rolled back: the VM runs on the source), 3 too late (it completed or had ended: the cancel changed nothing), 1 failed; watch: as 'ferry migrate'
${CONNECT_HELP}
`;
const OPTIONS = { ...CONNECT_OPTIONS, json: { type: "boolean" }, "max-bandwidth": { type: "string" }, "downtime-limit": { type: "string" }, help: { type: "boolean", short: "h" } } as const;
const SUBS = ["show", "watch", "cancel", "set", "force-complete"] as const;
type Sub = (typeof SUBS)[number];

function isSub(x: string | undefined): x is Sub {
  return (SUBS as readonly (string | undefined)[]).includes(x);
}

export const run = command("migration", USAGE, OPTIONS, async ({ values, positionals }) => {
  const [sub, id, ...extra] = positionals;
  if (!isSub(sub)) throw new UsageError("migration", sub === undefined ? `missing subcommand (${SUBS.join(", ")})` : `unknown subcommand ${JSON.stringify(sub)} (expected: ${SUBS.join(", ")})`);
  if (id === undefined) throw new UsageError("migration", "missing migration ID");
  rejectExtra("migration", extra);
  const bw = wholeNumber("migration", "--max-bandwidth", values["max-bandwidth"], MIGRATION_MAX_MIBPS, "MiB/s");
  const limit = wholeNumber("migration", "--downtime-limit", values["downtime-limit"], 600_000, "ms");
  if (sub !== "set" && sub !== "force-complete" && (bw !== undefined || limit !== undefined)) throw new UsageError("migration", "--max-bandwidth and --downtime-limit apply to 'ferry migration set' (and --downtime-limit to force-complete) only");
  if (sub === "force-complete" && bw !== undefined) throw new UsageError("migration", "force-complete takes --downtime-limit only; to change the bandwidth use 'ferry migration set ID --max-bandwidth MiB/s'");
  if (sub === "set" && bw === undefined && limit === undefined) throw new UsageError("migration", "set: nothing to set: give --max-bandwidth MiB/s, --downtime-limit ms or both");
  const client = await connect("migration", values);
  switch (sub) {
    case "show": {
      const r = await client.migration(id);
      if (values.json) printJson({ ...migrationSummary(r), record: r });
      else process.stdout.write(`${renderSummary(migrationSummary(r))}PHASES\n${renderPhases(r)}${r.warnings.length > 0 ? `warnings:\n${r.warnings.map((w) => `  ${w}`).join("\n")}\n` : ""}`);
      return EXIT.ok;
    }
    case "watch": {
      const first = await client.migration(id);
      if (!values.json) process.stdout.write(`migration ${first.id}: ${first.plan.vm.name} ${first.plan.source.host} → ${first.plan.destination.host}\n`);
      const r = await watchMigration(client, id, { mode: values.json ? "lines" : process.stdout.isTTY ? "tty" : "plain", createdAt: first.createdAt });
      if (!values.json) process.stdout.write(`${renderSummary(migrationSummary(r))}PHASES\n${renderPhases(r)}`);
      return exitFor(r);
    }
    case "set": {
      const r = await client.setMigrationLimits(id, { ...(bw === undefined ? {} : { maxBandwidthMiBps: bw }), ...(limit === undefined ? {} : { downtimeLimitMs: limit }) });
      if (values.json) printJson(r);
      else process.stdout.write(`migration ${r.migrationId} (${r.phase}, QEMU ${r.status}): max bandwidth ${r.maxBandwidthMiBps} MiB/s, downtime limit ${r.downtimeLimitMs} ms\n`);
      return EXIT.ok;
    }
    case "force-complete": {
      const r = await client.forceCompleteMigration(id, limit === undefined ? {} : { downtimeLimitMs: limit });
      if (values.json) printJson(r);
      else process.stdout.write(`migration ${r.migrationId} (${r.phase}, QEMU ${r.status}): ${r.action}: downtime limit now ${r.downtimeLimitMs} ms (max bandwidth ${r.maxBandwidthMiBps} MiB/s)\n  ${r.why}\n  follow it: ferry migration watch ${r.migrationId}\n`);
      return EXIT.ok;
    }
    case "cancel": {
      const report = await client.cancelMigration(id);
      if (values.json) printJson({ result: report.result, message: report.message, migration: migrationSummary(report.record) });
      else process.stdout.write(`cancel ${id}: ${report.result}: ${report.message}\n${renderSummary(migrationSummary(report.record))}`);
      return cancelExit(report.result);
    }
  }
});

/** A cancel that rolled the migration back is 4; one that came too late changed nothing (3). */
export function cancelExit(result: "cancelled" | "completed" | "failed" | "already-done"): number {
  switch (result) {
    case "cancelled":
      return EXIT.rolledBack;
    case "failed":
      return EXIT.failed;
    case "completed":
    case "already-done":
      return EXIT.refused;
  }
}
