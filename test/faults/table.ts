// The fault matrix as a table: phase × fault → outcome per duration, and each point's checks and figures.
import type { PointResult } from "./points.ts";
import { FAULT_KINDS, PHASES, pointKey } from "./plan.ts";

const SHORT: Record<string, string> = { succeeded: "ok", degraded: "degraded", recovered: "recovered", "rolled-back": "rolled-back", failed: "failed", refused: "refused" };
const DURATION_TAG = { short: "s", medium: "m", long: "l" } as const;

/** One result: outcome (/down when the guest was lost), ✓ or ✗ and the number of violations; with its duration's initial when `tagged`. */
export function cell(r: PointResult | undefined, tagged = false): string {
  if (!r) return "—";
  const o = SHORT[r.outcome] ?? r.outcome;
  const tag = tagged && r.duration !== null ? `${DURATION_TAG[r.duration]}:` : "";
  return `${tag}${o}${r.down ? "/down" : ""} ${r.violations.length === 0 ? "✓" : `✗${r.violations.length}`}`;
}

export function renderMatrix(results: readonly PointResult[], form: "short" | "long" = "short"): string {
  const head = ["phase \\ fault", ...FAULT_KINDS];
  const tagged = form === "long" || results.some((r) => r.duration !== null && r.duration !== "short");
  const rows = PHASES.map((p) => [p.label, ...FAULT_KINDS.map((f) => {
    const rs = results.filter((r) => r.phase === p.id && r.fault === f);
    return rs.length === 0 ? "—" : rs.map((r) => cell(r, tagged)).join(", ");
  })]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cols: readonly string[]): string => cols.map((x, i) => x.padEnd(widths[i]!)).join(" | ");
  const out = [line(head), widths.map((w) => "-".repeat(w)).join("-|-"), ...rows.map(line)];
  if (tagged) out.push("", "s / m / l: the fault held short / medium / past the step deadline (SIGKILLed QEMUs have no duration)");
  out.push("", "✓: every check held (one QEMU process of the VM in /proc, the instance the store names — or none, and the store says down; no left-over instance; every lease held by a running instance; terminal outcome; no pause past its deadline; a downtime over its limit warned; the real guest's heartbeat went on)");
  const failed = results.filter((r) => r.violations.length > 0).length;
  out.push("", `${results.length - failed} of ${results.length} points held every check`);
  out.push("", "points (time, outcome, where it runs, longest pause / its deadline, QEMU downtime, the real guest's longest NIC silence):");
  for (const r of results) {
    const pause = r.pauseMs === null ? "pause -" : `pause ${r.pauseMs} / ${r.pauseBudgetMs} ms`;
    out.push(`  ${pointKey(r)} [${r.kind}] ${(r.ms / 1000).toFixed(1)} s: ${r.outcome}${r.down ? " (guest lost: down expected)" : ""}, runs on ${r.runsOn}, ${pause}, downtime ${r.downtimeMs ?? "-"} ms${r.nicGapMs === null ? "" : `, NIC silent ${r.nicGapMs} ms`} — ${r.reason.slice(0, 160)}`);
    for (const v of r.violations) out.push(`      ✗ ${v}`);
  }
  return out.join("\n");
}
