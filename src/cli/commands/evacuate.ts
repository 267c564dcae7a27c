// `ferry evacuate HOST [--parallel N] [--max-bandwidth MiB/s] [--plan] [--json]`:
// drain a host and live-migrate all its VMs elsewhere, planned together (no VF
// promised twice; a VM that fits nowhere is reported with the reason), at most
// N at a time (default 2), the bandwidth cap split evenly over the migrations
// in flight. A line per change (overall and per VM), then a table of outcomes.
// --plan: the plan only; nothing changes, not even draining. --json: one
// object (the plan and the outcomes) at the end. `ferry host undrain HOST`
// reverses the drain.
// Exit: 0 every VM left the host (or --plan: every VM has a destination),
// 3 --plan with VMs that fit nowhere, 1 otherwise (some VM stayed).
import { systemClock } from "../../core/clock.ts";
import { isFerryError } from "../../core/errors.ts";
import type { EvacuationItem, EvacuationView } from "../../wire/evacuation.ts";
import { moved } from "../../controller/evacuation.ts";
import { DEFAULT_PARALLEL, MAX_BANDWIDTH_MIBPS, MAX_PARALLEL } from "../../wire/evacuation.ts";
import { rejectExtra, UsageError, wholeNumber } from "../args.ts";
import { command } from "../command.ts";
import { EXIT } from "../exit-codes.ts";
import { renderTable } from "../render/table.ts";
import { CONNECT_HELP, CONNECT_OPTIONS, connect, printJson } from "./connect.ts";

export const USAGE = `usage: ferry evacuate HOST [--parallel N] [--max-bandwidth MiB/s] [--plan] [--json]
  --parallel N         migrations at once (default ${DEFAULT_PARALLEL}, at most ${MAX_PARALLEL})
  --max-bandwidth M    total migration bandwidth in MiB/s, split evenly over the migrations in flight
  --plan               only show the plan (destinations, VMs that fit nowhere and why); nothing changes
  --json               print one JSON object (the plan and the outcomes)
The host is drained first (never chosen as a destination); 'ferry host undrain HOST' reverses it.
exit codes: 0 every VM left the host, 1 some VM stayed, 3 (--plan) some VM fits nowhere
${CONNECT_HELP}
`;
const OPTIONS = {
  ...CONNECT_OPTIONS,
  parallel: { type: "string" },
  "max-bandwidth": { type: "string" },
  plan: { type: "boolean" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export function itemLine(i: EvacuationItem): string {
  const where = `${i.vm}: ${i.from} → ${i.to ?? "(nowhere)"}`;
  if (i.status === "pending") return `${where}: pending`;
  if (i.status === "migrating") return `${where}: migrating${i.migrationId === null ? "" : ` (${i.migrationId}, ${i.phase ?? "?"})`}`;
  return `${where}: ${i.outcome ?? "?"}${i.reason === null ? "" : ` — ${i.reason}`}`;
}

export function overallLine(e: EvacuationView): string {
  const c = e.counts;
  return `[${e.host}] ${c.moved + c.stayed}/${c.total} done (${c.moved} moved, ${c.stayed} stayed), ${c.migrating} migrating, ${c.pending} pending`;
}

export function renderPlanText(e: EvacuationView): string {
  const bw = e.maxBandwidthMiBps === null ? "uncapped" : `${e.maxBandwidthMiBps} MiB/s total, ${Math.round(((e.perMigrationBytes ?? 0) / 1024 / 1024) * 10) / 10} MiB/s per migration`;
  const head = `evacuation plan for ${e.host} (${e.plan.kind}; ${e.plan.order}); ${e.parallel} at a time, bandwidth ${bw}\n`;
  const rows = e.items.map((i) => [i.order, i.vm, i.from, i.to, i.vfs.map((v) => `${v.nic}=${v.vf ?? "none"}`).join(" "), i.outcome === null ? "planned" : i.outcome, i.reason]);
  let out = head + renderTable(["#", "VM", "FROM", "TO", "VFS", "STATUS", "REASON"], rows);
  for (const i of e.items.filter((x) => x.rejections !== undefined && x.rejections.length > 0)) {
    out += `\n${i.vm} fits nowhere:\n${i.rejections!.map((r) => `  ${r.host}: ${r.code} ${r.message}`).join("\n")}\n`;
  }
  return out;
}

export function renderOutcomes(e: EvacuationView): string {
  const rows = e.items.map((i) => [i.vm, i.from, i.runsOn !== null && i.runsOn !== i.from ? i.runsOn : (i.to ?? null), i.outcome ?? i.status, i.reason ?? (i.runsOn !== null && i.runsOn !== i.to ? `runs on ${i.runsOn}` : null)]);
  return renderTable(["VM", "FROM", "TO", "OUTCOME", "REASON"], rows) + `${overallLine(e)}\n`;
}

export const run = command("evacuate", USAGE, OPTIONS, async ({ values, positionals }) => {
  const [host, ...extra] = positionals;
  if (host === undefined) throw new UsageError("evacuate", "missing HOST");
  rejectExtra("evacuate", extra);
  const parallel = wholeNumber("evacuate", "--parallel", values.parallel, MAX_PARALLEL, "migrations at a time");
  const bw = wholeNumber("evacuate", "--max-bandwidth", values["max-bandwidth"], MAX_BANDWIDTH_MIBPS, "MiB/s");
  const client = await connect("evacuate", values);
  const body = { ...(parallel === undefined ? {} : { parallel }), ...(bw === undefined ? {} : { maxBandwidthMiBps: bw }) };

  if (values.plan) {
    const e = await client.evacuate(host, { ...body, plan: true });
    if (values.json) printJson(e);
    else process.stdout.write(renderPlanText(e));
    return e.items.some((i) => i.outcome === "unplaced") ? EXIT.refused : EXIT.ok;
  }

  let e = await client.evacuate(host, body);
  if (!values.json) process.stdout.write(`evacuation ${e.id}: ${host} is draining\n${renderPlanText(e)}\n`);
  const seen = new Map<string, string>();
  let lastOverall = "";
  for (;;) {
    if (!values.json) {
      for (const i of e.items) {
        const line = itemLine(i);
        if (seen.get(i.uuid) !== line) process.stdout.write(`  ${line}\n`);
        seen.set(i.uuid, line);
      }
      const o = overallLine(e);
      if (o !== lastOverall) process.stdout.write(`${o}\n`);
      lastOverall = o;
    }
    if (e.state === "done") break;
    await systemClock.sleep(500);
    try {
      e = await client.evacuation(e.id, { timeoutMs: 10_000 });
    } catch (err) {
      if (!isFerryError(err, "FERRY_ERR_CONTROLLER")) throw err;
    }
  }
  if (values.json) printJson(e);
  else process.stdout.write(`\n${renderOutcomes(e)}`);
  return e.items.every((i) => moved(i)) ? EXIT.ok : EXIT.failed;
});
