// Migration primitives over QMP: capabilities and parameters, incoming
// setup, start, progress, continue at pre-switchover, best-effort cancel.
import { systemClock } from "../core/clock.ts";
import type { Clock } from "../core/clock.ts";
import { abortError, deadline } from "../core/deadline.ts";
import { FerryError } from "../core/errors.ts";
import type { QmpClient } from "../qmp/client.ts";
import type { MigrationCapability, MigrationInfo, MigrationParameters, MigrationStatus } from "../qmp/commands.ts";
import {
  migrate, migrateCancel, migrateContinue, migrateIncoming, queryMigrate, setMigrationCapabilities, setMigrationParameters,
} from "../qmp/commands.ts";

export interface MigrationSetup {
  capabilities?: Partial<Record<MigrationCapability, boolean>>;
  parameters?: MigrationParameters;
}

/**
 * Destination side: capabilities, then `migrate-incoming` on `uri`. With a
 * tcp port of 0 QEMU picks a free port; the returned uri has the real one.
 */
export async function prepareIncoming(qmp: QmpClient, uri: string, setup: MigrationSetup = {}, signal?: AbortSignal): Promise<string> {
  await setMigrationCapabilities(qmp, { events: true, ...setup.capabilities }, { signal });
  await migrateIncoming(qmp, uri, { signal });
  const m = /^tcp:([^:]+):0$/.exec(uri);
  if (!m) return uri;
  const r = (await qmp.execute("query-migrate", undefined, { signal })) as { "socket-address"?: { host?: string; port?: string | number }[] };
  const port = r["socket-address"]?.[0]?.port;
  if (port === undefined) throw new FerryError("FERRY_ERR_MIGRATION", "destination did not report its listening port");
  return `tcp:${m[1]}:${port}`;
}

/** Source side: capabilities and parameters, then `migrate`. */
/**
 * Capabilities a migration sets explicitly off unless asked for: QEMU keeps
 * them on an instance between migrations, and a stale x-ignore-shared (from a
 * local migration) would leave guest RAM out of the next, copying, one.
 */
const RESET_CAPABILITIES: Partial<Record<MigrationCapability, boolean>> = { "x-ignore-shared": false, "pause-before-switchover": false, "auto-converge": false };

/**
 * The bandwidth of a migration nobody capped: 1 TiB/s, i.e. none. QEMU's own
 * default is a 128 MiB/s throttle (a 512 MiB random-data guest: 4.7 s instead
 * of 0.9 s here), and a cap set for one migration stays on the instance.
 */
export const UNCAPPED_BYTES_PER_S = 2 ** 40;

/** QEMU statuses of an instance with no outgoing migration under way (never started, or ended). */
const IDLE_STATUSES: readonly MigrationStatus[] = ["none", "completed", "failed", "cancelled"];

/** Whether an outgoing migration is under way (streaming, paused at pre-switchover, cancelling…). */
export function migrationUnderWay(status: MigrationStatus): boolean {
  return !IDLE_STATUSES.includes(status);
}

/** `beforeMigrate`: called just before `migrate` is sent (a moment to note: no I/O there). */
export async function startMigration(qmp: QmpClient, uri: string, setup: MigrationSetup = {}, signal?: AbortSignal, beforeMigrate?: () => void): Promise<void> {
  await setMigrationCapabilities(qmp, { events: true, ...RESET_CAPABILITIES, ...setup.capabilities }, { signal });
  await setMigrationParameters(qmp, { ...setup.parameters, maxBandwidth: setup.parameters?.maxBandwidth ?? UNCAPPED_BYTES_PER_S }, { signal });
  beforeMigrate?.();
  await migrate(qmp, uri, { signal });
}

export interface WaitOptions {
  /** Statuses that end the wait successfully. */
  until: readonly MigrationStatus[];
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called with each polled status (progress display, journal). */
  onProgress?: (info: MigrationInfo) => void;
  pollMs?: number;
  clock?: Clock;
}

/**
 * Wait for the source's migration to reach one of `until`. Rejects with
 * FERRY_ERR_MIGRATION when it fails or is cancelled, FERRY_ERR_TIMEOUT at the deadline.
 * Wakes on MIGRATION events and polls query-migrate for progress.
 */
export async function waitMigration(qmp: QmpClient, o: WaitOptions): Promise<MigrationInfo> {
  const clock = o.clock ?? systemClock;
  const signal = deadline(o.timeoutMs, o.signal, clock);
  let wake: (() => void) | undefined;
  // an event that arrives while query-migrate is in flight must not be lost: it ends the next sleep at once
  let woke = false;
  const off = qmp.onEvent((e) => {
    if (e.event === "MIGRATION" || e.event === "STOP" || e.event === "UNPLUG_PRIMARY") {
      woke = true;
      wake?.();
    }
  });
  try {
    for (;;) {
      if (signal.aborted) throw abortError(signal, `migration did not reach ${o.until.join("/")}`);
      woke = false;
      const info = await queryMigrate(qmp, { signal });
      o.onProgress?.(info);
      if (o.until.includes(info.status)) return info;
      if (info.status === "failed" || info.status === "cancelled") {
        throw new FerryError("FERRY_ERR_MIGRATION", `migration ${info.status}${info.errorDesc ? `: ${info.errorDesc}` : ""}`, { details: { status: info.status } });
      }
      await new Promise<void>((resolve) => {
        if (woke) {
          resolve();
          return;
        }
        wake = resolve;
        const t = clock.sleep(o.pollMs ?? 100, signal).then(resolve, resolve);
        void t;
      });
      wake = undefined;
    }
  } finally {
    off();
  }
}

/** `migrate-continue` at pre-switchover, then wait for completion. */
export async function continueMigration(qmp: QmpClient, o: Omit<WaitOptions, "until">): Promise<MigrationInfo> {
  await migrateContinue(qmp, { signal: o.signal });
  return completedInfo(qmp, await waitMigration(qmp, { ...o, until: ["completed"] }), o.signal, o.clock);
}

/**
 * QEMU may report total-time=0 and downtime=0 for a moment after it
 * completes (FINDINGS.md): re-query, briefly, until the numbers are in.
 */
export async function completedInfo(qmp: QmpClient, info: MigrationInfo, signal?: AbortSignal, clock: Clock = systemClock): Promise<MigrationInfo> {
  let current = info;
  for (let i = 0; i < 25 && current.status === "completed" && (current.totalTimeMs ?? 0) === 0; i++) {
    await clock.sleep(20, signal);
    current = await queryMigrate(qmp, { signal }).catch(() => current);
  }
  return current;
}

export type CancelResult = "cancelled" | "completed" | "failed" | "not-running";

/**
 * Best-effort cancel: reports what really happened (cancelled, completed
 * anyway, failed), like Cloud Hypervisor's cancel.
 */
export async function cancelMigration(qmp: QmpClient, o: { timeoutMs?: number; signal?: AbortSignal; clock?: Clock } = {}): Promise<CancelResult> {
  const before = await queryMigrate(qmp, { signal: o.signal });
  if (before.status === "none") return "not-running";
  if (before.status === "completed") return "completed";
  if (before.status === "failed") return "failed";
  if (before.status === "cancelled") return "cancelled";
  await migrateCancel(qmp, { signal: o.signal });
  try {
    const info = await waitMigration(qmp, { until: ["cancelled", "completed", "failed"], timeoutMs: o.timeoutMs ?? 10_000, signal: o.signal, pollMs: 20, clock: o.clock });
    return info.status === "completed" ? "completed" : info.status === "failed" ? "failed" : "cancelled";
  } catch (e) {
    if (e instanceof FerryError && e.code === "FERRY_ERR_MIGRATION") return e.details["status"] === "failed" ? "failed" : "cancelled";
    throw e;
  }
}
