// Migrations for the CLI: the one-object summary of `ferry migrate --json`,
// the final report, the plan, the list (the live stream: migration-progress.ts).
import { stableText } from "../../api/connectivity-text.ts";
import type { PlanReply } from "../../wire/controller-api.ts";
import type { Cleanup, Connectivity, MigrationRecord, Phase, RecordKind, VfRef } from "../../migration/types.ts";
import { phaseTimes } from "../../wire/migration-stream.ts";
import { downtimeOf } from "../../migration/types.ts";
import { breakdownText } from "../../migration/timeline.ts";
import type { GapBreakdown } from "../../migration/timeline.ts";
import { renderTable } from "./table.ts";

export interface NicSummary {
  name: string;
  network: string;
  mode: string;
  policy: string;
  before: VfRef | null;
  after: VfRef | null;
  /** The NIC's longest time without a reply through the migration (lab probes), when measured. */
  gapMs: number | null;
  connectivity?: Connectivity;
}

/** The one JSON shape of a record, whatever its kind (docs/records.md). */
export interface MigrationSummary {
  id: string | null;
  /** migration (between hosts), local, save, restore. */
  kind: RecordKind;
  vm: string;
  outcome: string;
  source: string;
  destination: string | null;
  runsOn: { host: string; instanceId: string } | null;
  reason: string | null;
  code?: string | null;
  timings: { totalMs: number | null; downtimeMs: number | null; phases: Partial<Record<Phase, number>> };
  /** Every phase in order: its start (epoch ms) and duration (null while it runs). */
  timeline: { phase: Phase; startedAt: number; ms: number | null }[];
  /** Bytes moved (RAM sent; a save: the state file's size), null when unknown. */
  dataMovedBytes: number | null;
  /** The switch-over's breakdown from the agents' moments (the record's switchoverTimeline); null when there is none (every kind has the key). */
  switchover: GapBreakdown | null;
  /** save / restore: the state file in the host's saveDir. */
  file?: string;
  /** local: the new instance's QEMU binary. */
  qemuBinary?: string;
  nics: NicSummary[];
  /** Things the operator should know (a pause above the downtime limit, cleanup left to the background). */
  warnings: string[];
  cleanup?: Cleanup;
  rejections?: { host: string; code: string; message: string }[];
  /** Lab: the NICs are still watched (connectivity comes once each answers steadily). */
  measuring?: boolean;
}

export function migrationSummary(r: MigrationRecord & { measuring?: boolean; dataMovedBytes?: number }): MigrationSummary {
  const phases: Partial<Record<Phase, number>> = {};
  for (const [p, t] of Object.entries(r.timings) as [Phase, { ms?: number } | undefined][]) if (t?.ms !== undefined) phases[p] = t.ms;
  const done = r.phase === "done";
  return {
    id: r.id,
    kind: r.plan.kind ?? "migration",
    vm: r.plan.vm.name,
    outcome: r.outcome ?? `in progress (${r.phase})`,
    source: r.plan.source.host,
    destination: r.plan.destination.host,
    runsOn: r.runsOn,
    reason: r.reason,
    code: r.code,
    timings: { totalMs: done ? r.updatedAt - r.createdAt : null, downtimeMs: downtimeOf(r), phases },
    timeline: phaseTimes(r).map((p) => ({ phase: p.phase, startedAt: p.startedAt, ms: p.ms ?? null })),
    dataMovedBytes: r.dataMovedBytes ?? null,
    switchover: r.switchoverTimeline?.breakdown ?? null,
    ...(r.plan.file === undefined ? {} : { file: r.plan.file }),
    ...(r.plan.qemuBinary === undefined ? {} : { qemuBinary: r.plan.qemuBinary }),
    nics: r.plan.nics.map((n) => {
      const now = r.nics.find((x) => x.name === n.name);
      const c = r.connectivity?.[n.name];
      return { name: n.name, network: n.network, mode: n.mode, policy: n.policy, before: n.before, after: done ? (now?.vf ?? null) : n.after, gapMs: c?.longestGapMs ?? null, ...(c ? { connectivity: c } : {}) };
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

function switchoverLine(s: MigrationSummary): string[] {
  const text = breakdownText(s.switchover ?? undefined);
  return text === null ? [] : [`  switch-over: ${text}`];
}

const vfText = (v: VfRef | null): string => (v === null ? "(none)" : `${v.vf} on ${v.host} (PF ${v.pf})`);

const KIND_TEXT: Record<RecordKind, string> = { migration: "migration", local: "local migration", save: "save", restore: "restore" };

function whereText(s: MigrationSummary): string {
  const runs = s.runsOn ? `runs on ${s.runsOn.host} (${s.runsOn.instanceId})` : s.kind === "save" && s.outcome === "succeeded" ? "not running: saved" : s.kind === "restore" ? "not running: still saved" : "runs on UNKNOWN: an operator must look";
  switch (s.kind) {
    case "local":
      return `  on ${s.source}, to a new instance${s.qemuBinary ? ` of QEMU ${s.qemuBinary}` : ""}; ${runs}`;
    case "save":
      return `  ${s.source} → ${s.file ?? "?"} in its saveDir; ${runs}`;
    case "restore":
      return `  ${s.file ?? "?"} → ${s.destination ?? "-"}; ${runs}`;
    case "migration":
      return `  from ${s.source} to ${s.destination ?? "-"}; ${runs}`;
  }
}

export function renderSummary(s: MigrationSummary): string {
  const out = [
    `${KIND_TEXT[s.kind]} ${s.id ?? "-"} of ${s.vm}: ${s.outcome}${s.code ? ` (${s.code})` : ""}`,
    ...(s.reason ? [`  reason:   ${s.reason}`] : []),
    whereText(s),
    `  total ${s.timings.totalMs === null ? "-" : `${s.timings.totalMs} ms`}, downtime ${s.timings.downtimeMs === null ? "-" : `${s.timings.downtimeMs} ms`}, data moved ${s.dataMovedBytes === null ? "-" : `${(s.dataMovedBytes / 2 ** 20).toFixed(1)} MiB`}`,
    ...switchoverLine(s),
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

const secs = (ms: number): string => (ms >= 10_000 ? `${(ms / 1000).toFixed(0)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`);

/** The dirty rate, a row per destination (bandwidth and its source, predicted RAM time and downtime), then what each bandwidth and the model rest on. */
function predictionText(p: PlanReply): string[] {
  if (!p.predictions || p.predictions.length === 0) return [];
  const d = p.dirtyRate;
  const rows = p.predictions.map((x) => [
    x.host, `${(x.bandwidth.bytesPerSec / 2 ** 20).toFixed(0)} MiB/s (${x.bandwidth.source})`, `${x.downtimeLimitMs} ms`,
    x.converges ? secs(x.durationMs ?? 0) : "does not converge", x.converges ? secs(x.downtimeMs ?? 0) : `~${secs(x.forcedDowntimeMs ?? 0)} if forced`, x.passes,
  ]);
  return [
    `PREDICTION (dirty rate ${d === undefined ? "-" : d.measured ? `${d.MiBps} MiB/s: ${d.detail}` : `not measured: ${d.detail}`})`,
    renderTable(["HOST", "BANDWIDTH", "DOWNTIME LIMIT", "RAM TIME", "DOWNTIME", "PASSES"], rows).trimEnd(),
    ...p.predictions.map((x) => `  ${x.host}: bandwidth ${x.bandwidth.detail}`),
    `  ${p.predictions[0]!.note}`,
  ];
}

export function renderPlan(p: PlanReply): string {
  const out = [`plan for ${p.vm} (now on ${p.source})`];
  if (p.destinations.length === 0) out.push(`no destination: ${p.message ?? "?"}`);
  else {
    out.push("DESTINATIONS");
    out.push(renderTable(["RANK", "HOST", "SCORE", "COMPLETE", "NICS"], p.destinations.map((d) => [d.rank, d.host, d.score, d.complete, d.nics.map((n) => `${n.nic} → ${n.note}`).join("; ")])));
  }
  if (p.checks && p.checks.length > 0) out.push("CHECKS", renderTable(["HOST", "CHECK", "STATUS", "WHY"], p.checks.map((c) => [c.host, c.check, c.status, c.message])).trimEnd());
  if (p.blockers && p.blockers.length > 0) out.push("BLOCKED DESTINATIONS (a migration there is refused or would fail)", renderTable(["HOST", "CHECK", "WHY"], p.blockers.map((b) => [b.host, b.check, b.message])).trimEnd());
  if (p.warnings && p.warnings.length > 0) out.push("WARNINGS", renderTable(["HOST", "WHAT"], p.warnings.map((w) => [w.host, w.message])).trimEnd());
  out.push(...predictionText(p));
  out.push("REJECTED HOSTS");
  out.push(p.rejections.length === 0 ? "(none)\n" : renderTable(["HOST", "CODE", "WHY"], p.rejections.map((r) => [r.host, r.code, r.message])));
  return out.join("\n");
}

export function renderMigrations(list: readonly MigrationSummary[]): string {
  if (list.length === 0) return "(no migrations)\n";
  return renderTable(
    ["ID", "KIND", "VM", "FROM", "TO", "OUTCOME", "RUNS ON", "DOWNTIME", "DATA MOVED", "STARTED"],
    list.map((s) => [s.id, s.kind, s.vm, s.source, s.destination, s.outcome, s.runsOn?.host, s.timings.downtimeMs === null ? null : `${s.timings.downtimeMs} ms`, s.dataMovedBytes === null ? null : `${(s.dataMovedBytes / 2 ** 20).toFixed(1)} MiB`, s.timeline[0] ? new Date(s.timeline[0].startedAt).toISOString() : null]),
  );
}
