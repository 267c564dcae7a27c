// `ferry host check` as text: one line per item (status, what, subject,
// message), the fix indented under each warn and fail, then the counts.
import type { HostCheckReport } from "../../host/check.ts";

const MARK = { ok: "ok  ", warn: "WARN", fail: "FAIL" } as const;

export function renderHostCheck(r: HostCheckReport): string {
  const lines = [`host check: ${r.host}`];
  for (const x of r.items) {
    lines.push(`${MARK[x.status]}  ${x.check}${x.subject === null ? "" : ` ${x.subject}`}: ${x.message}`);
    if (x.status !== "ok" && x.fix !== null) lines.push(`      fix: ${x.fix}`);
  }
  lines.push(`${r.counts.ok} ok, ${r.counts.warn} warn, ${r.counts.fail} fail`);
  return lines.join("\n") + "\n";
}
