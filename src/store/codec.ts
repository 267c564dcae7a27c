// Records and journal entries leave the database as unknown JSON and are
// validated here before the coordinator sees them.
import { FerryError, isFerryError } from "../core/errors.ts";
import type { ErrorCode } from "../core/errors.ts";
import { ERROR_CODES } from "../core/errors.ts";
import { NIC_MODES, NIC_POLICIES } from "../model/vm.ts";
import * as v from "../model/validate.ts";
import { CLEANUP_STATES, JOURNAL_KINDS, NIC_STATUSES, OUTCOMES, PHASES, RECORD_KINDS } from "../migration/types.ts";
import { CONVERGENCE_REQUESTS } from "../migration/convergence.ts";
import { checked } from "../core/check.ts";
import { SwitchoverTimeline } from "../migration/timeline.ts";
import type {
  Cleanup,
  ConvergenceRecord,
  Connectivity,
  Deadlines,
  JournalEntry,
  MigrationLink,
  MigrationPlan,
  MigrationRecord,
  NicPlan,
  NicResult,
  PhaseTiming,
  RunsOn,
  VfRef,
  Verdict,
} from "../migration/types.ts";

/** Run a parser over stored data: what it throws becomes FERRY_ERR_INTERNAL "store: corrupt <what>". */
export function decode<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (isFerryError(e, "FERRY_ERR_INTERNAL")) throw e;
    throw new FerryError("FERRY_ERR_INTERNAL", `store: corrupt ${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

function num(field: string, x: unknown): number {
  if (typeof x !== "number" || !Number.isFinite(x)) throw corrupt(field, x);
  return x;
}
function bool(field: string, x: unknown): boolean {
  if (typeof x !== "boolean") throw corrupt(field, x);
  return x;
}
function corrupt(field: string, x: unknown): FerryError {
  return new FerryError("FERRY_ERR_INTERNAL", `store: ${field} is invalid (got ${JSON.stringify(x)?.slice(0, 80)})`, { details: { field } });
}
function opt<T>(x: unknown, f: (x: unknown) => T): T | undefined {
  return x === undefined ? undefined : f(x);
}
function nullable<T>(x: unknown, f: (x: unknown) => T): T | null {
  return x === null || x === undefined ? null : f(x);
}
function code(field: string, x: unknown): ErrorCode {
  if (typeof x !== "string" || !Object.hasOwn(ERROR_CODES, x)) throw corrupt(field, x);
  return x as ErrorCode;
}

function vfRef(field: string, x: unknown): VfRef {
  const o = v.obj(field, x);
  return { host: v.str(`${field}.host`, o["host"]), vf: v.str(`${field}.vf`, o["vf"]), pf: v.str(`${field}.pf`, o["pf"]) };
}

function nicPlan(field: string, x: unknown): NicPlan {
  const o = v.obj(field, x);
  const ports = v.obj(`${field}.guestPorts`, o["guestPorts"]);
  const nic: NicPlan = {
    name: v.str(`${field}.name`, o["name"]),
    network: v.str(`${field}.network`, o["network"]),
    mode: v.oneOf(`${field}.mode`, o["mode"], NIC_MODES),
    policy: v.oneOf(`${field}.policy`, o["policy"], NIC_POLICIES),
    mac: v.str(`${field}.mac`, o["mac"]),
    guestPorts: {},
    before: nullable(o["before"], (b) => vfRef(`${field}.before`, b)),
    after: nullable(o["after"], (a) => vfRef(`${field}.after`, a)),
  };
  const standby = opt(ports["standby"], (p) => num(`${field}.guestPorts.standby`, p));
  const primary = opt(ports["primary"], (p) => num(`${field}.guestPorts.primary`, p));
  if (standby !== undefined) nic.guestPorts.standby = standby;
  if (primary !== undefined) nic.guestPorts.primary = primary;
  return nic;
}

function deadlines(field: string, x: unknown): Deadlines {
  const o = v.obj(field, x);
  return {
    unplugMs: num(`${field}.unplugMs`, o["unplugMs"]),
    convergeMs: num(`${field}.convergeMs`, o["convergeMs"]),
    precheckMs: num(`${field}.precheckMs`, o["precheckMs"]),
    primaryBackMs: num(`${field}.primaryBackMs`, o["primaryBackMs"]),
    stepMs: num(`${field}.stepMs`, o["stepMs"]),
  };
}

function link(field: string, x: unknown): MigrationLink {
  const o = v.obj(field, x);
  const from = v.obj(`${field}.adoptFrom`, o["adoptFrom"]);
  return {
    kind: v.oneOf(`${field}.kind`, o["kind"], ["migrate-back"] as const),
    parentId: v.str(`${field}.parentId`, o["parentId"]),
    adoptFrom: { host: v.str(`${field}.adoptFrom.host`, from["host"]), instanceId: v.str(`${field}.adoptFrom.instanceId`, from["instanceId"]) },
  };
}

export function parsePlan(x: unknown): MigrationPlan {
  const o = v.obj("plan", x);
  const vm = v.obj("plan.vm", o["vm"]);
  const src = v.obj("plan.source", o["source"]);
  const dst = v.obj("plan.destination", o["destination"]);
  const plan: MigrationPlan = {
    id: v.str("plan.id", o["id"]),
    vm: {
      uuid: v.str("plan.vm.uuid", vm["uuid"]),
      name: v.str("plan.vm.name", vm["name"]),
      memoryMiB: num("plan.vm.memoryMiB", vm["memoryMiB"]),
      vcpus: num("plan.vm.vcpus", vm["vcpus"]),
    },
    source: { host: v.str("plan.source.host", src["host"]), instanceId: v.str("plan.source.instanceId", src["instanceId"]) },
    destination: { host: v.str("plan.destination.host", dst["host"]) },
    nics: v.arr("plan.nics", o["nics"]).map((n, i) => nicPlan(`plan.nics[${i}]`, n)),
    deadlines: deadlines("plan.deadlines", o["deadlines"]),
  };
  if (o["maxBandwidthBytes"] !== undefined) plan.maxBandwidthBytes = v.int("plan.maxBandwidthBytes", o["maxBandwidthBytes"], 1, Number.MAX_SAFE_INTEGER);
  if (o["convergence"] !== undefined) plan.convergence = v.oneOf("plan.convergence", o["convergence"], CONVERGENCE_REQUESTS);
  if (o["link"] !== undefined) plan.link = link("plan.link", o["link"]);
  if (o["kind"] !== undefined) plan.kind = v.oneOf("plan.kind", o["kind"], RECORD_KINDS);
  if (o["file"] !== undefined) plan.file = v.str("plan.file", o["file"]);
  if (o["qemuBinary"] !== undefined) plan.qemuBinary = v.str("plan.qemuBinary", o["qemuBinary"]);
  return plan;
}

function runsOn(field: string, x: unknown): RunsOn {
  const o = v.obj(field, x);
  return { host: v.str(`${field}.host`, o["host"]), instanceId: v.str(`${field}.instanceId`, o["instanceId"]) };
}

function nicResult(field: string, x: unknown): NicResult {
  const o = v.obj(field, x);
  const r: NicResult = {
    name: v.str(`${field}.name`, o["name"]),
    policy: v.oneOf(`${field}.policy`, o["policy"], NIC_POLICIES),
    status: v.oneOf(`${field}.status`, o["status"], NIC_STATUSES),
    vf: nullable(o["vf"], (f) => vfRef(`${field}.vf`, f)),
  };
  if (o["error"] !== undefined) r.error = v.str(`${field}.error`, o["error"]);
  return r;
}

function verdict(field: string, x: unknown): Verdict {
  const o = v.obj(field, x);
  const out: Verdict = { outcome: v.oneOf(`${field}.outcome`, o["outcome"], OUTCOMES), reason: v.str(`${field}.reason`, o["reason"]) };
  if (o["code"] !== undefined) out.code = code(`${field}.code`, o["code"]);
  if (o["refused"] !== undefined) out.refused = bool(`${field}.refused`, o["refused"]);
  return out;
}

function timings(field: string, x: unknown): MigrationRecord["timings"] {
  const o = v.obj(field, x);
  const out: MigrationRecord["timings"] = {};
  for (const [k, t] of Object.entries(o)) {
    const phase = v.oneOf(`${field} key`, k, PHASES);
    const to = v.obj(`${field}.${k}`, t);
    const pt: PhaseTiming = { startedAt: num(`${field}.${k}.startedAt`, to["startedAt"]) };
    if (to["endedAt"] !== undefined) pt.endedAt = num(`${field}.${k}.endedAt`, to["endedAt"]);
    if (to["ms"] !== undefined) pt.ms = num(`${field}.${k}.ms`, to["ms"]);
    out[phase] = pt;
  }
  return out;
}

export function parseRecord(x: unknown): MigrationRecord {
  const o = v.obj("record", x);
  const prepared = nullable(o["prepared"], (p) => {
    const po = v.obj("record.prepared", p);
    return { instanceId: v.str("record.prepared.instanceId", po["instanceId"]), uri: v.str("record.prepared.uri", po["uri"]) };
  });
  const sw = nullable(o["switchover"], (s) => {
    const so = v.obj("record.switchover", s);
    return { totalMs: num("record.switchover.totalMs", so["totalMs"]), downtimeMs: num("record.switchover.downtimeMs", so["downtimeMs"]) };
  });
  return {
    id: v.str("record.id", o["id"]),
    plan: parsePlan(o["plan"]),
    version: num("record.version", o["version"]),
    phase: v.oneOf("record.phase", o["phase"], PHASES),
    outcome: nullable(o["outcome"], (x) => v.oneOf("record.outcome", x, OUTCOMES)),
    reason: nullable(o["reason"], (x) => v.str("record.reason", x)),
    code: nullable(o["code"], (x) => code("record.code", x)),
    refused: bool("record.refused", o["refused"]),
    pending: nullable(o["pending"], (x) => verdict("record.pending", x)),
    runsOn: nullable(o["runsOn"], (x) => runsOn("record.runsOn", x)),
    nics: v.arr("record.nics", o["nics"]).map((n, i) => nicResult(`record.nics[${i}]`, n)),
    prepared,
    switchover: sw,
    pastPointOfNoReturn: bool("record.pastPointOfNoReturn", o["pastPointOfNoReturn"]),
    cancelRequested: bool("record.cancelRequested", o["cancelRequested"]),
    childId: nullable(o["childId"], (x) => v.str("record.childId", x)),
    warnings: v.arr("record.warnings", o["warnings"]).map((w, i) => v.str(`record.warnings[${i}]`, w)),
    timings: timings("record.timings", o["timings"]),
    createdAt: num("record.createdAt", o["createdAt"]),
    updatedAt: num("record.updatedAt", o["updatedAt"]),
    ...(o["pausedMs"] === undefined ? {} : { pausedMs: num("record.pausedMs", o["pausedMs"]) }),
    ...(o["cleanup"] === undefined ? {} : { cleanup: cleanup(o["cleanup"]) }),
    ...(o["connectivity"] === undefined ? {} : { connectivity: connectivity(o["connectivity"]) }),
    ...(o["dataMovedBytes"] === undefined ? {} : { dataMovedBytes: num("record.dataMovedBytes", o["dataMovedBytes"]) }),
    ...(o["convergence"] === undefined ? {} : { convergence: convergence(o["convergence"]) }),
    ...(o["switchoverTimeline"] === undefined ? {} : { switchoverTimeline: switchoverTimeline(o["switchoverTimeline"]) }),
  };
}

function switchoverTimeline(x: unknown): SwitchoverTimeline {
  const t = checked(SwitchoverTimeline, x);
  if (t === undefined) throw corrupt("record.switchoverTimeline", x);
  return t;
}

function convergence(x: unknown): ConvergenceRecord {
  const o = v.obj("record.convergence", x);
  const out: ConvergenceRecord = { autoConverge: bool("record.convergence.autoConverge", o["autoConverge"]), reason: v.str("record.convergence.reason", o["reason"]) };
  if (o["dirtyBytesPerS"] !== undefined) out.dirtyBytesPerS = num("record.convergence.dirtyBytesPerS", o["dirtyBytesPerS"]);
  if (o["bandwidthBytesPerS"] !== undefined) out.bandwidthBytesPerS = num("record.convergence.bandwidthBytesPerS", o["bandwidthBytesPerS"]);
  if (o["downtimeLimitMs"] !== undefined) out.downtimeLimitMs = num("record.convergence.downtimeLimitMs", o["downtimeLimitMs"]);
  return out;
}

function cleanup(x: unknown): Cleanup {
  const o = v.obj("record.cleanup", x);
  const out: Cleanup = { host: v.str("record.cleanup.host", o["host"]), state: v.oneOf("record.cleanup.state", o["state"], CLEANUP_STATES), since: num("record.cleanup.since", o["since"]), attempts: num("record.cleanup.attempts", o["attempts"]) };
  if (o["at"] !== undefined) out.at = num("record.cleanup.at", o["at"]);
  if (o["error"] !== undefined) out.error = v.str("record.cleanup.error", o["error"]);
  return out;
}

function connectivity(x: unknown): Record<string, Connectivity> {
  const o = v.obj("record.connectivity", x);
  const out: Record<string, Connectivity> = {};
  for (const [nic, c] of Object.entries(o)) {
    out[nic] = connectivityOf(`record.connectivity.${nic}`, c);
  }
  return out;
}

/** One NIC's figures; the settle fields are optional (records from before the probes ran past the end lack them). */
export function connectivityOf(field: string, x: unknown): Connectivity {
  const co = v.obj(field, x);
  const c: Connectivity = { probes: num(`${field}.probes`, co["probes"]), lost: num(`${field}.lost`, co["lost"]), longestGapMs: num(`${field}.longestGapMs`, co["longestGapMs"]) };
  if (co["untilStableMs"] !== undefined) c.untilStableMs = nullable(co["untilStableMs"], (y) => num(`${field}.untilStableMs`, y));
  for (const k of ["endMs", "watchedMs", "settleMs", "outageMs", "outAfterEndMs"] as const) {
    const y = opt(co[k], (z) => num(`${field}.${k}`, z));
    if (y !== undefined) c[k] = y;
  }
  return c;
}

export function parseJournalEntry(x: unknown): JournalEntry {
  const o = v.obj("journal", x);
  return {
    migrationId: v.str("journal.migrationId", o["migrationId"]),
    seq: num("journal.seq", o["seq"]),
    phase: v.oneOf("journal.phase", o["phase"], PHASES),
    kind: v.oneOf("journal.kind", o["kind"], JOURNAL_KINDS),
    data: v.obj("journal.data", o["data"]),
    at: num("journal.at", o["at"]),
  };
}
