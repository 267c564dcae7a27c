// Typed QMP commands: argument encoding and validation of QEMU's replies.
import { FerryError } from "../core/errors.ts";
import type { CallOptions, QmpClient } from "./client.ts";

function rec(x: unknown, what: string): Record<string, unknown> {
  if (typeof x !== "object" || x === null || Array.isArray(x)) {
    throw new FerryError("FERRY_ERR_QMP_PROTOCOL", `QMP: unexpected reply to ${what}`, { details: { reply: x } });
  }
  return x as Record<string, unknown>;
}

function num(x: unknown): number | undefined {
  return typeof x === "number" && Number.isFinite(x) ? x : undefined;
}

export interface VmStatus {
  status: string;
  running: boolean;
}

export async function queryStatus(q: QmpClient, o?: CallOptions): Promise<VmStatus> {
  const r = rec(await q.execute("query-status", undefined, o), "query-status");
  return { status: String(r["status"]), running: r["running"] === true };
}

export const MIGRATION_STATUSES = [
  "none", "setup", "cancelling", "cancelled", "active", "postcopy-active", "postcopy-paused",
  "postcopy-recover", "completed", "failed", "colo", "pre-switchover", "device", "wait-unplug",
] as const;
export type MigrationStatus = (typeof MIGRATION_STATUSES)[number];

export interface RamStats {
  transferred: number;
  remaining: number;
  total: number;
  duplicate: number;
  normal: number;
  dirtyPagesRate: number;
  mbps: number;
  /** Passes over guest RAM so far (QEMU's dirty-sync-count: 1 during the first copy). */
  dirtySyncCount: number;
  /** Bytes per page (QEMU's page-size; 4096 when not reported). */
  pageSize: number;
}

export interface MigrationInfo {
  status: MigrationStatus;
  totalTimeMs?: number;
  downtimeMs?: number;
  expectedDowntimeMs?: number;
  setupTimeMs?: number;
  ram?: RamStats;
  errorDesc?: string;
  /** With auto-converge: how much QEMU throttles the vCPUs now (percent). */
  cpuThrottlePercent?: number;
}

export function parseMigrationInfo(x: unknown): MigrationInfo {
  const r = rec(x, "query-migrate");
  const status = (r["status"] ?? "none") as MigrationStatus;
  if (!MIGRATION_STATUSES.includes(status)) {
    throw new FerryError("FERRY_ERR_QMP_PROTOCOL", `QMP: unknown migration status ${JSON.stringify(r["status"])}`);
  }
  const info: MigrationInfo = { status };
  const set = (key: keyof MigrationInfo, v: unknown): void => {
    const n = num(v);
    if (n !== undefined) (info as unknown as Record<string, unknown>)[key] = n;
  };
  set("totalTimeMs", r["total-time"]);
  set("downtimeMs", r["downtime"]);
  set("expectedDowntimeMs", r["expected-downtime"]);
  set("setupTimeMs", r["setup-time"]);
  if (typeof r["error-desc"] === "string") info.errorDesc = r["error-desc"];
  if (r["ram"] !== undefined) {
    const ram = rec(r["ram"], "query-migrate ram");
    info.ram = {
      transferred: num(ram["transferred"]) ?? 0,
      remaining: num(ram["remaining"]) ?? 0,
      total: num(ram["total"]) ?? 0,
      duplicate: num(ram["duplicate"]) ?? 0,
      normal: num(ram["normal"]) ?? 0,
      dirtyPagesRate: num(ram["dirty-pages-rate"]) ?? 0,
      mbps: num(ram["mbps"]) ?? 0,
      dirtySyncCount: num(ram["dirty-sync-count"]) ?? 0,
      pageSize: num(ram["page-size"]) ?? 4096,
    };
  }
  set("cpuThrottlePercent", r["cpu-throttle-percentage"]);
  return info;
}

export async function queryMigrate(q: QmpClient, o?: CallOptions): Promise<MigrationInfo> {
  return parseMigrationInfo(await q.execute("query-migrate", undefined, o));
}

export type MigrationCapability = "events" | "pause-before-switchover" | "x-ignore-shared" | "xbzrle" | "auto-converge" | "postcopy-ram" | "zero-blocks";

export async function setMigrationCapabilities(q: QmpClient, caps: Partial<Record<MigrationCapability, boolean>>, o?: CallOptions): Promise<void> {
  const capabilities = Object.entries(caps).map(([capability, state]) => ({ capability, state }));
  if (capabilities.length > 0) await q.execute("migrate-set-capabilities", { capabilities }, o);
}

export interface MigrationParameters {
  /** Bytes per second. */
  maxBandwidth?: number;
  /** Milliseconds. */
  downtimeLimit?: number;
  /** auto-converge: the first throttle (percent) and the step added each pass that still dirties too much. */
  cpuThrottleInitial?: number;
  cpuThrottleIncrement?: number;
  /** Id of a tls-creds object: the migration stream is TLS; "" turns TLS off. */
  tlsCreds?: string;
  /** Source: the name the destination's certificate must carry; "" means the host of the migration URI. */
  tlsHostname?: string;
  /** Destination: id of an authz object the source's certificate DN must pass; "" means any certificate of the CA. */
  tlsAuthz?: string;
}

export async function setMigrationParameters(q: QmpClient, p: MigrationParameters, o?: CallOptions): Promise<void> {
  const args: Record<string, unknown> = {};
  if (p.maxBandwidth !== undefined) args["max-bandwidth"] = p.maxBandwidth;
  if (p.downtimeLimit !== undefined) args["downtime-limit"] = p.downtimeLimit;
  if (p.cpuThrottleInitial !== undefined) args["cpu-throttle-initial"] = p.cpuThrottleInitial;
  if (p.cpuThrottleIncrement !== undefined) args["cpu-throttle-increment"] = p.cpuThrottleIncrement;
  if (p.tlsCreds !== undefined) args["tls-creds"] = p.tlsCreds;
  if (p.tlsHostname !== undefined) args["tls-hostname"] = p.tlsHostname;
  if (p.tlsAuthz !== undefined) args["tls-authz"] = p.tlsAuthz;
  if (Object.keys(args).length > 0) await q.execute("migrate-set-parameters", args, o);
}

export interface MigrationTlsParameters {
  tlsCreds: string;
  tlsHostname: string;
  tlsAuthz: string;
}

/** The bandwidth cap (bytes/s) and downtime limit (ms) an instance holds now. */
export async function queryMigrationLimits(q: QmpClient, o?: CallOptions): Promise<{ maxBandwidth: number; downtimeLimit: number }> {
  const r = rec(await q.execute("query-migrate-parameters", undefined, o), "query-migrate-parameters");
  return { maxBandwidth: num(r["max-bandwidth"]) ?? 0, downtimeLimit: num(r["downtime-limit"]) ?? 0 };
}

/** The TLS migration parameters an instance holds now ("" when unset). */
export async function queryMigrationTlsParameters(q: QmpClient, o?: CallOptions): Promise<MigrationTlsParameters> {
  const r = rec(await q.execute("query-migrate-parameters", undefined, o), "query-migrate-parameters");
  const str = (v: unknown): string => (typeof v === "string" ? v : "");
  return { tlsCreds: str(r["tls-creds"]), tlsHostname: str(r["tls-hostname"]), tlsAuthz: str(r["tls-authz"]) };
}

/** `object-add` (QEMU 6.0+ takes the properties flat, beside qom-type and id). */
export async function objectAdd(q: QmpClient, qomType: string, id: string, props: Record<string, string | number | boolean>, o?: CallOptions): Promise<void> {
  await q.execute("object-add", { ...props, "qom-type": qomType, id }, o);
}

export async function objectDel(q: QmpClient, id: string, o?: CallOptions): Promise<void> {
  await q.execute("object-del", { id }, o);
}

export async function migrate(q: QmpClient, uri: string, o?: CallOptions): Promise<void> {
  await q.execute("migrate", { uri }, o);
}

export async function migrateIncoming(q: QmpClient, uri: string, o?: CallOptions): Promise<void> {
  await q.execute("migrate-incoming", { uri }, o);
}

export async function migrateContinue(q: QmpClient, o?: CallOptions): Promise<void> {
  await q.execute("migrate-continue", { state: "pre-switchover" }, o);
}

export async function migrateCancel(q: QmpClient, o?: CallOptions): Promise<void> {
  await q.execute("migrate_cancel", undefined, o);
}

export async function cont(q: QmpClient, o?: CallOptions): Promise<void> {
  await q.execute("cont", undefined, o);
}

export async function stop(q: QmpClient, o?: CallOptions): Promise<void> {
  await q.execute("stop", undefined, o);
}

export async function quit(q: QmpClient, o?: CallOptions): Promise<void> {
  await q.execute("quit", undefined, o);
}

export async function deviceAdd(q: QmpClient, props: Record<string, string | number | boolean>, o?: CallOptions): Promise<void> {
  await q.execute("device_add", props, o);
}

export async function deviceDel(q: QmpClient, id: string, o?: CallOptions): Promise<void> {
  await q.execute("device_del", { id }, o);
}

export async function netdevAdd(q: QmpClient, props: Record<string, string | number | boolean>, o?: CallOptions): Promise<void> {
  await q.execute("netdev_add", props, o);
}

export async function netdevDel(q: QmpClient, id: string, o?: CallOptions): Promise<void> {
  await q.execute("netdev_del", { id }, o);
}

/**
 * Ids of the guest devices that exist now (`qom-list /machine/peripheral`).
 * Unlike query-pci this does not depend on firmware or the guest having
 * numbered the buses, and a failover primary QEMU still hides is absent.
 */
export async function listDeviceIds(q: QmpClient, o?: CallOptions): Promise<string[]> {
  const r = await q.execute("qom-list", { path: "/machine/peripheral" }, o);
  if (!Array.isArray(r)) throw new FerryError("FERRY_ERR_QMP_PROTOCOL", "QMP: unexpected reply to qom-list", { details: { reply: r } });
  return r
    .map((x) => rec(x, "qom-list entry"))
    .filter((e) => typeof e["type"] === "string" && e["type"].startsWith("child<") && typeof e["name"] === "string")
    .map((e) => String(e["name"]))
    .sort();
}

export interface DirtyRate {
  status: "unstarted" | "measuring" | "measured";
  /** MiB/s dirtied (QEMU's "MB/s": dirty pages × page size / 2^20 per second); only once measured. */
  dirtyRateMiBps?: number;
  calcSeconds: number;
  mode: string;
  /** When the measurement started (QEMU's clock, seconds). */
  startTime?: number;
}

/**
 * Start measuring the guest's dirty rate for `seconds` (QEMU ≥ 5.2; 7.2: whole
 * seconds, page-sampling by default). It runs in QEMU's background; read it
 * with queryDirtyRate.
 */
export async function calcDirtyRate(q: QmpClient, seconds: number, o?: CallOptions): Promise<void> {
  await q.execute("calc-dirty-rate", { "calc-time": seconds }, o);
}

export async function queryDirtyRate(q: QmpClient, o?: CallOptions): Promise<DirtyRate> {
  const r = rec(await q.execute("query-dirty-rate", undefined, o), "query-dirty-rate");
  const status = r["status"];
  if (status !== "unstarted" && status !== "measuring" && status !== "measured") throw new FerryError("FERRY_ERR_QMP_PROTOCOL", `QMP: query-dirty-rate status ${JSON.stringify(status)}`, { details: { reply: r } });
  const rate = num(r["dirty-rate"]);
  const start = num(r["start-time"]);
  return {
    status,
    ...(status === "measured" && rate !== undefined ? { dirtyRateMiBps: rate } : {}),
    calcSeconds: num(r["calc-time"]) ?? 0,
    mode: typeof r["mode"] === "string" ? r["mode"] : "page-sampling",
    ...(start === undefined ? {} : { startTime: start }),
  };
}
