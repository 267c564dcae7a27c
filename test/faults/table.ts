// The fault matrix as a table: phase × fault → outcome, and each point's invariant checks.
import type { PointResult } from "./points.ts";
import { FAULT_KINDS, PHASES } from "./points.ts";

const SHORT: Record<string, string> = { succeeded: "ok", degraded: "degraded", recovered: "recovered", "rolled-back": "rolled-back", failed: "failed", refused: "refused" };

export function cell(r: PointResult | undefined): string {
  if (!r) return "—";
  const o = SHORT[r.outcome] ?? r.outcome;
  return `${o}${r.down ? "/down" : ""} ${r.violations.length === 0 ? "✓" : `✗${r.violations.length}`}`;
}

export function renderMatrix(results: readonly PointResult[]): string {
  const head = ["phase \\ fault", ...FAULT_KINDS];
  const rows = PHASES.map((p) => [p.label, ...FAULT_KINDS.map((f) => cell(results.find((r) => r.phase === p.id && r.fault === f)))]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cols: readonly string[]): string => cols.map((x, i) => x.padEnd(widths[i]!)).join(" | ");
  const out = [line(head), widths.map((w) => "-".repeat(w)).join("-|-"), ...rows.map(line)];
  out.push("", "✓: every invariant held (one running instance, named by the store, or down and reported so; no left-over instance; no leaked lease; terminal outcome; heartbeat continued on the real guest)");
  out.push("", "points:");
  for (const r of results) {
    out.push(`  ${r.phase} × ${r.fault} [${r.kind}] ${(r.ms / 1000).toFixed(1)} s: ${r.outcome}${r.down ? " (guest lost: down expected)" : ""}, runs on ${r.runsOn} — ${r.reason.slice(0, 160)}`);
    for (const v of r.violations) out.push(`      ✗ ${v}`);
  }
  return out.join("\n");
}
