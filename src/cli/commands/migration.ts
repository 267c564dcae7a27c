// `ferry migration show ID [--json]`: one migration's summary (or its full record with --json).
// `ferry migration cancel ID [--json]`: best-effort cancel; prints what really happened.
import { rejectExtra, UsageError } from "../args.ts";
import { command } from "../command.ts";
import { EXIT } from "../exit-codes.ts";
import { migrationSummary, renderSummary } from "../render/migration.ts";
import { CONNECT_HELP, CONNECT_OPTIONS, connect, printJson } from "./connect.ts";

export const USAGE = `usage:
  ferry migration show ID [--json]     a migration: plan, phase, timings, outcome, NICs before and after
  ferry migration cancel ID [--json]   cancel it (before the switch-over); reports cancelled, completed, failed or already-done
exit codes (cancel): 4 cancelled (rolled back: the VM runs on the source), 3 too late (it completed or had ended: the cancel changed nothing), 1 failed
${CONNECT_HELP}
`;
const OPTIONS = { ...CONNECT_OPTIONS, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export const run = command("migration", USAGE, OPTIONS, async ({ values, positionals }) => {
  const [sub, id, ...extra] = positionals;
  if (sub !== "show" && sub !== "cancel") throw new UsageError("migration", sub === undefined ? "missing subcommand (show, cancel)" : `unknown subcommand ${JSON.stringify(sub)} (expected: show, cancel)`);
  if (id === undefined) throw new UsageError("migration", "missing migration ID");
  rejectExtra("migration", extra);
  const client = await connect("migration", values);
  if (sub === "show") {
    const r = await client.migration(id);
    if (values.json) printJson({ ...r, summary: migrationSummary(r) });
    else process.stdout.write(`${renderSummary(migrationSummary(r))}${r.warnings.length > 0 ? `warnings:\n${r.warnings.map((w) => `  ${w}`).join("\n")}\n` : ""}`);
    return EXIT.ok;
  }
  const report = await client.cancelMigration(id);
  if (values.json) printJson({ result: report.result, message: report.message, migration: migrationSummary(report.record) });
  else process.stdout.write(`cancel ${id}: ${report.result}: ${report.message}\n${renderSummary(migrationSummary(report.record))}`);
  return cancelExit(report.result);
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
