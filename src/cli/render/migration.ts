// Migrations for the CLI: the one-object summary of `ferry migrate --json`,
// the final report, the plan, the list (the live stream: migration-progress.ts).
import { stableText } from "../../api/connectivity-text.ts";
import type { PlanReply } from "../../wire/controller-api.ts";
import type { Cleanup, Connectivity, MigrationRecord, Phase, VfRef } from "../../migration/types.ts";
import { downtimeOf } from "../../migration/types.ts";
import { renderTable } from "./table.ts";

export interface NicSummary {
  name: string;
  network: string;
  mode: string;
  policy: string;
  before: VfRef | null;
  after: VfRef | null;
  connectivity?: Connectivity;
}

export interface MigrationSummary {
  id: string | null;
  vm: string;
  outcome: string;
  source: string;
  destination: string | null;
  runsOn: { host: string; instanceId: string } | null;
  reason: string | null;
  code?: string | null;
  timings: { totalMs: number | null; downtimeMs: number | null; phases: Partial<Record<Phase, number>> };
  nics: NicSummary[];
  /** Things the operator should know (a pause above the downtime limit, cleanup left to the background). */
  warnings: string[];
  cleanup?: Cleanup;
  rejections?: { host: string; code: string; message: string }[];
  /** Lab: the NICs are still watched (connectivity comes once each answers steadily). */
  measuring?: boolean;
}

export function migrationSummary(r: MigrationRecord & { measuring?: boolean }): MigrationSummary {
  const phases: Partial<Record<Phase, number>> = {};
  for (const [p, t] of Object.entries(r.timings) as [Phase, { ms?: number } | undefined][]) if (t?.ms !== undefined) phases[p] = t.ms;
  const done = r.phase === "done";
  return {
    id: r.id,
    vm: r.plan.vm.name,
    outcome: r.outcome ?? `in progress (${r.phase})`,
    source: r.plan.source.host,
    destination: r.plan.destination.host,
    runsOn: r.runsOn,
    reason: r.reason,
    code: r.code,
    timings: { totalMs: done ? r.updatedAt - r.createdAt : null, downtimeMs: downtimeOf(r), phases },
    nics: r.plan.nics.map((n) => {
      const now = r.nics.find((x) => x.name === n.name);
      const c = r.connectivity?.[n.name];
      return { name: n.name, network: n.network, mode: n.mode, policy: n.policy, before: n.before, after: done ? (now?.vf ?? null) : n.after, ...(c ? { connectivity: c } : {}) };
    }),
    warnings: [...r.warnings],
    ...(r.cleanup ? { cleanup: r.cleanup } : {}),
    ...(r.measuring === true ? { measuring: true } : {}),
  };
}

function connectivityNote(s: MigrationSummary): string[] {
  if (s.measuring === true) return ["  connectivity: still measuring, until every NIC answers steadily past the end"];
  const c = s.nics.map((n) => n.connectivity).find((x) => x?.settleMs !== undefined);
  if (!c) return [];
  return [`  connectivity: probes every 10 ms from the start until each NIC answered steadily for ${c.settleMs} ms past the end (outage: no reply for more than ${c.outageMs ?? "?"} ms); STABLE AFTER counts from the start, the migration took ${c.endMs ?? "?"} ms`];
}

const vfText = (v: VfRef | null): string => (v === null ? "(none)" : `${v.vf} on ${v.host} (PF ${v.pf})`);

export function renderSummary(s: MigrationSummary): string {
  const out = [
    `migration ${s.id ?? "-"} of ${s.vm}: ${s.outcome}${s.code ? ` (${s.code})` : ""}`,
    ...(s.reason ? [`  reason:   ${s.reason}`] : []),
    `  from ${s.source} to ${s.destination ?? "-"}; runs on ${s.runsOn ? `${s.runsOn.host} (${s.runsOn.instanceId})` : "UNKNOWN: an operator must look"}`,
    `  total ${s.timings.totalMs === null ? "-" : `${s.timings.totalMs} ms`}, downtime ${s.timings.downtimeMs === null ? "-" : `${s.timings.downtimeMs} ms`}`,
    ...s.warnings.map((w) => `  warning:  ${w}`),
    ...(s.cleanup?.state === "pending" ? [`  cleanup:  destination ${s.cleanup.host} pending (retried in the background; 'ferry migration show ${s.id ?? ""}' tells when it is done)`] : []),
    `  phases:   ${Object.entries(s.timings.phases).map(([p, ms]) => `${p} ${ms} ms`).join(", ") || "-"}`,
    ...connectivityNote(s),
    "",
    renderTable(["NIC", "NETWORK", "MODE", "POLICY", "BEFORE", "AFTER", "PROBES LOST", "LONGEST GAP", "STABLE AFTER"], s.nics.map((n) => [n.name, n.network, n.mode, n.policy, vfText(n.before), vfText(n.after), n.connectivity ? `${n.connectivity.lost}/${n.connectivity.probes}` : "-", n.connectivity ? `${n.connectivity.longestGapMs} ms` : "-", stableText(n.connectivity)])),
  ];
  if (s.rejections && s.rejections.length > 0) out.push("REJECTED HOSTS", renderTable(["HOST", "CODE", "WHY"], s.rejections.map((r) => [r.host, r.code, r.message])));
  return out.join("\n");
}

export function renderPlan(p: PlanReply): string {
  const out = [`plan for ${p.vm} (now on ${p.source})`];
  if (p.destinations.length === 0) out.push(`no destination: ${p.message ?? "?"}`);
  else {
    out.push("DESTINATIONS");
    out.push(renderTable(["RANK", "HOST", "SCORE", "COMPLETE", "NICS"], p.destinations.map((d) => [d.rank, d.host, d.score, d.complete, d.nics.map((n) => `${n.nic} → ${n.note}`).join("; ")])));
  }
  out.push("REJECTED HOSTS");
  out.push(p.rejections.length === 0 ? "(none)\n" : renderTable(["HOST", "CODE", "WHY"], p.rejections.map((r) => [r.host, r.code, r.message])));
  return out.join("\n");
}

export function renderMigrations(list: readonly MigrationRecord[]): string {
  if (list.length === 0) return "(no migrations)\n";
  return renderTable(
    ["ID", "VM", "FROM", "TO", "PHASE", "OUTCOME", "RUNS ON", "DOWNTIME", "CREATED"],
    list.map((r) => [r.id, r.plan.vm.name, r.plan.source.host, r.plan.destination.host, r.phase, r.outcome, r.runsOn?.host, downtimeOf(r) === null ? null : `${downtimeOf(r)} ms`, new Date(r.createdAt).toISOString()]),
  );
}
