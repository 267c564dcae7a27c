// How a migration's connectivity reads for a person: shared by the clients of
// the controller API that print migrations (cli's renderers, the lab's demo).
import type { Connectivity } from "../migration/types.ts";

/** "3120 ms", "43210 ms (39810 ms after the end)", "not stable", "-" (a record from before settle windows). */
export function stableText(c: Connectivity | undefined): string {
  if (c?.untilStableMs === undefined) return "-";
  if (c.untilStableMs === null) return `not stable (watched ${c.watchedMs ?? "?"} ms)`;
  const out = c.outAfterEndMs !== undefined && c.outAfterEndMs > 0 ? `, out ${c.outAfterEndMs} ms of it` : "";
  const late = c.endMs !== undefined && c.untilStableMs > c.endMs ? ` (${c.untilStableMs - c.endMs} ms after the end${out})` : "";
  return `${c.untilStableMs} ms${late}`;
}
