// The source's side of a migration between hosts (DESIGN "Migration
// protocol"): begin, perform (to pre-switchover), switchover, cancel and
// confirm; the source's own give-up deadline at pre-switchover, and the guest's
// pause as QEMU's events tell it. Every step is keyed by the migration id and
// idempotent; every wait has a deadline.
import { FerryError } from "../../core/errors.ts";
import { portableSpec } from "../../model/vm.ts";
import type { Instance } from "../../qemu/instance.ts";
import { cancelMigration, completedInfo, continueMigration, migrationUnderWay } from "../../qemu/migration.ts";
import type { MigrationInfo } from "../../qmp/commands.ts";
import { queryDirtyRate, queryMigrate, queryStatus, setMigrationParameters } from "../../qmp/commands.ts";
import type { ConvergenceChoice } from "../../migration/convergence.ts";
import { chooseConvergence, DOWNTIME_MAX_MS, downtimeLimitAt, notConvergedMessage } from "../../migration/convergence.ts";
import { msOfUs } from "../../migration/timeline.ts";
import type { SourceMoments, UnplugMoments } from "../../migration/timeline.ts";
import type { StepContext } from "./context.ts";
import { instanceHolder, instanceOf, serial, unlessEnded } from "./context.ts";
import { replugMissing, unplugEphemerals } from "./nics.ts";
import { migrateOut } from "./outgoing.ts";
import { releaseRamFile, steerInitial } from "./wiring.ts";
import { releaseHeld } from "../vf-life.ts";
import type { BeginReply, CancelReply, ConfirmReply, PerformBody, PerformReply, SwitchoverReply } from "../../wire/steps.ts";

export const SRC = "migration-source";
/** The source guest's pause and the switch-over's moments in a migration, from QEMU's own event timestamps (kept apart from SrcRecord: written by event listeners). */
const PAUSE = "migration-source-pause";

interface SrcRecord {
  instanceId: string;
  unplugged: string[];
  /**
   * Journaled before the side effect: the outgoing migration was started
   * (perform) / continued past pre-switchover (switchover). QEMU's
   * query-migrate also answers for the incoming migration that brought the
   * guest here ("completed"), so without `started` a "completed" is not this
   * migration's; and with pause-before-switchover it cannot complete unless
   * `continued`.
   */
  started?: true;
  continued?: true;
  /** Epoch ms (agent clock): at pre-switchover, no switch-over by then → the source gives up (cancels, resumes the guest). */
  giveUpAt?: number;
  /** Journaled before the source cancelled on its own: a late switchover (or perform) is refused with FERRY_ERR_SOURCE_GAVE_UP. */
  gaveUp?: { at: number };
  /** The convergence policy perform chose (a re-sent perform answers the same). */
  convergence?: ConvergenceChoice;
  /** How long perform lets the source wait at pre-switchover (destination check + grace): what a restarted agent arms if the migration reaches it after the restart. */
  waitMs?: number;
}

interface PauseRecord {
  /** QEMU's STOP of the source guest (epoch µs, QEMU's timestamp). */
  stoppedUs?: number;
  /** STOP → RESUME on the source (the guest ran on here again: a rollback). */
  pausedMs?: number;
  /** QMP migrate sent (epoch ms, agent clock). */
  migrateSentAtMs?: number;
  /** Per failover NIC: the guest released its primary, the steer to its standby ended. */
  unplugs?: UnplugMoments[];
  /** QMP migrate-continue sent (epoch ms, agent clock). */
  continueSentAtMs?: number;
}

export type PerformInput = PerformBody;
export type PerformResult = PerformReply;
export type SwitchoverResult = SwitchoverReply;

/** What this migration's outgoing side really did, from QEMU's state and the record (see SrcRecord). */
async function cancelOutgoing(ctx: StepContext, inst: Instance, rec: SrcRecord | undefined, signal: AbortSignal): Promise<"cancelled" | "completed" | "failed" | "not-running"> {
  if (rec?.started !== true) return "not-running";
  const result = await cancelMigration(inst.qmp, { signal, clock: ctx.clock });
  return result === "completed" && rec.continued !== true ? "not-running" : result;
}

export function begin(ctx: StepContext, migrationId: string, instanceId: string, signal: AbortSignal): Promise<BeginReply> {
  return unlessEnded(ctx, migrationId, "begin", () => beginNow(ctx, migrationId, instanceId, signal));
}

async function beginNow(ctx: StepContext, migrationId: string, instanceId: string, signal: AbortSignal): Promise<BeginReply> {
  await ctx.faults?.hold("begin", migrationId, ctx.clock, signal);
  const inst = instanceOf(ctx, instanceId);
  return { spec: portableSpec(inst.meta.spec) };
}

/**
 * The perform in flight, by host and migration: a cancel interrupts its wait
 * (steps of one migration run one at a time, so the cancel would otherwise
 * queue behind it until RAM converged or the converge deadline).
 */
const performing = new Map<string, AbortController>();

export function perform(ctx: StepContext, migrationId: string, input: PerformInput, signal: AbortSignal): Promise<PerformResult> {
  const k = key(ctx, migrationId);
  const ctl = new AbortController();
  performing.set(k, ctl);
  const both = AbortSignal.any([signal, ctl.signal]);
  return serial(ctx, migrationId, () => unlessEnded(ctx, migrationId, "perform", () => performNow(ctx, migrationId, input, both))).finally(() => {
    if (performing.get(k) === ctl) performing.delete(k);
  });
}

async function performNow(ctx: StepContext, migrationId: string, input: PerformInput, signal: AbortSignal): Promise<PerformResult> {
  await ctx.faults?.hold("perform", migrationId, ctx.clock, signal);
  const inst = instanceOf(ctx, input.instanceId);
  const rec: SrcRecord = (ctx.records.get(SRC, migrationId) as SrcRecord | undefined) ?? { instanceId: input.instanceId, unplugged: [] };
  if (rec.gaveUp) throw gaveUpError(ctx, migrationId, rec);
  const waitMs = (input.precheckMs ?? 2_000) + (ctx.switchoverGraceMs ?? DEFAULT_GRACE_MS);
  const current = await queryMigrate(inst.qmp, { signal });
  if (current.status === "pre-switchover" && rec.started === true) {
    armGiveUp(ctx, migrationId, inst, rec, waitMs);
    return { status: "pre-switchover", transferredBytes: current.ram?.transferred ?? 0, remainingBytes: current.ram?.remaining ?? 0, ...(rec.convergence === undefined ? {} : { convergence: rec.convergence }) };
  }
  if (migrationUnderWay(current.status)) {
    throw new FerryError("FERRY_ERR_STATE", `instance ${inst.id} is already migrating (${current.status})`);
  }
  // ephemeral NICs: unplugged before, with Ferry's deadline (recorded, so a rollback re-plugs them)
  await unplugEphemerals(ctx, inst, rec.unplugged, input.unplugMs, signal, (nic) => {
    rec.unplugged.push(nic);
    ctx.records.put(SRC, migrationId, rec);
  });
  const requested = input.convergence ?? "auto";
  const dirtyBytesPerS = requested === "auto" ? await measuredDirtyRate(inst, signal) : undefined;
  const choice = chooseConvergence({ requested, ...(dirtyBytesPerS === undefined ? {} : { dirtyBytesPerS }), ...(input.maxBandwidthBytes === undefined ? {} : { maxBandwidthBytes: input.maxBandwidthBytes }) });
  ctx.log?.info({ migrationId, convergence: choice }, choice.reason);
  rec.convergence = choice;
  rec.waitMs = waitMs;
  rec.started = true;
  ctx.records.put(SRC, migrationId, rec);
  trackPause(ctx, migrationId, inst, { fresh: true });
  // the downtime limit: the migration's own, else Ferry's steps (convergence.ts downtimeLimitAt), else (convergence
  // "off") QEMU's default — set either way: an earlier migration's limit stays on a source QEMU that rolled back
  const stepped = input.downtimeLimitMs === undefined && requested !== "off";
  let limit = input.downtimeLimitMs ?? (stepped ? downtimeLimitAt(null) : DOWNTIME_MAX_MS);
  let firstPassAt: number | null = null;
  inst.limitsSetLive = false;
  const step = (i: MigrationInfo): void => {
    if (!stepped || inst.limitsSetLive || i.status !== "active" || i.ram === undefined) return;
    if (firstPassAt === null && i.ram.dirtySyncCount >= 2) firstPassAt = ctx.clock.monotonic();
    const next = downtimeLimitAt(firstPassAt === null ? null : ctx.clock.monotonic() - firstPassAt);
    if (next <= limit) return;
    limit = next;
    void setMigrationParameters(inst.qmp, { downtimeLimit: next }, { signal, timeoutMs: 2_000 }).catch((e: unknown) => ctx.log?.warn({ migrationId, err: e }, `cannot raise the downtime limit to ${next} ms`));
  };
  const held = (): { downtimeLimitMs?: number } => (inst.limitsSetLive ? {} : { downtimeLimitMs: limit });
  let last: MigrationInfo | undefined;
  let info: MigrationInfo;
  try {
    info = await migrateOut(ctx, inst, input.uri, {
      setup: {
        capabilities: { "pause-before-switchover": true, "auto-converge": choice.autoConverge },
        parameters: {
          maxBandwidth: input.maxBandwidthBytes, downtimeLimit: limit,
          ...(choice.autoConverge ? { cpuThrottleInitial: choice.throttleInitial, cpuThrottleIncrement: choice.throttleIncrement } : {}),
        },
      },
      until: "pre-switchover",
      unplugMs: input.unplugMs,
      timeoutMs: input.convergeMs,
      onProgress: (i) => {
        if (i.ram !== undefined) last = i;
        step(i);
      },
      onStarted: (migrateSentAtMs) => notePause(ctx, migrationId, (p) => ({ ...p, migrateSentAtMs })),
      onStandby: (u) => notePause(ctx, migrationId, (p) => ({ ...p, unplugs: [...(p.unplugs ?? []).filter((x) => x.nic !== u.nic), u] })),
    }, signal);
  } catch (e) {
    // the converge deadline (not the caller's abort): say it did not converge, with QEMU's numbers
    if (e instanceof FerryError && e.code === "FERRY_ERR_TIMEOUT" && !signal.aborted) {
      const ram = last?.ram;
      const numbers = ram === undefined ? {} : { dirtyBytesPerS: ram.dirtyPagesRate * ram.pageSize, sentBytesPerS: (ram.mbps * 1e6) / 8, remainingBytes: ram.remaining, passes: ram.dirtySyncCount };
      const throttle = last?.cpuThrottlePercent === undefined ? {} : { throttlePercent: last.cpuThrottlePercent };
      throw new FerryError("FERRY_ERR_TIMEOUT", notConvergedMessage({ convergeMs: input.convergeMs, choice, ...numbers, ...throttle }), { cause: e, details: { notConverged: true, convergence: { ...choice, ...held() }, ...numbers, ...throttle } });
    }
    throw e;
  }
  armGiveUp(ctx, migrationId, inst, rec, waitMs);
  return { status: "pre-switchover", transferredBytes: info.ram?.transferred ?? 0, remainingBytes: info.ram?.remaining ?? 0, convergence: { ...choice, ...held() } };
}

/**
 * The guest's dirty rate (bytes/s) from the last page sampling QEMU finished
 * on this instance (a migration plan's: POST /v1/instances/:id/dirty-rate),
 * however old; undefined when there is none, it still runs, or QEMU cannot
 * tell. No migration step starts or waits for one: QEMU 7.2 samples for at
 * least 1 s (every migration would pay it), and a sample still running while a
 * migration started and was cancelled is the suspect of a source QEMU whose
 * monitor stopped answering (the soak, 2026-12-05; not proven).
 */
async function measuredDirtyRate(inst: Instance, signal: AbortSignal): Promise<number | undefined> {
  try {
    const r = await queryDirtyRate(inst.qmp, { signal });
    return r.status === "measured" && r.dirtyRateMiBps !== undefined ? r.dirtyRateMiBps * 1024 * 1024 : undefined;
  } catch (e) {
    if (signal.aborted) throw e;
    return undefined;
  }
}

const DEFAULT_GRACE_MS = 500;
const key = (ctx: StepContext, migrationId: string): string => `${ctx.host}\0${migrationId}`;

/** Pause trackers (QMP listeners) by host and migration: removed when the source's record goes (confirm). */
const pauseTrackers = new Map<string, () => void>();

/**
 * Record the source guest's pause in this migration from QEMU's own event
 * timestamps: STOP (the switch-over's stop, or pre-switchover) and, if the
 * guest runs here again (a rollback, a give-up), RESUME. What the operator
 * is told as downtime when there was no switch-over.
 */
function trackPause(ctx: StepContext, migrationId: string, inst: Instance, o: { fresh: boolean }): void {
  const k = key(ctx, migrationId);
  pauseTrackers.get(k)?.();
  if (o.fresh) ctx.records.delete(PAUSE, migrationId);
  const off = inst.qmp.onEvent((e) => {
    if (e.event !== "STOP" && e.event !== "RESUME") return;
    const p = pauseOf(ctx, migrationId);
    if (e.event === "STOP" && p.stoppedUs === undefined) ctx.records.put(PAUSE, migrationId, { ...p, stoppedUs: e.timestampUs } satisfies PauseRecord);
    else if (e.event === "RESUME" && p.stoppedUs !== undefined && p.pausedMs === undefined) {
      ctx.records.put(PAUSE, migrationId, { ...p, pausedMs: Math.max(0, Math.round((e.timestampUs - p.stoppedUs) / 1000)) } satisfies PauseRecord);
    }
  });
  pauseTrackers.set(k, off);
}

const pauseOf = (ctx: StepContext, migrationId: string): PauseRecord => (ctx.records.get(PAUSE, migrationId) as PauseRecord | undefined) ?? {};

/** Change this migration's pause record (read and written at once: the listeners writing it never lose each other's moments). */
function notePause(ctx: StepContext, migrationId: string, f: (p: PauseRecord) => PauseRecord): void {
  ctx.records.put(PAUSE, migrationId, f(pauseOf(ctx, migrationId)));
}

/** The switch-over's moments on this source, as its switchover answers them (undefined: none noted). */
function sourceMoments(ctx: StepContext, migrationId: string): SourceMoments | undefined {
  const p = pauseOf(ctx, migrationId);
  const m: SourceMoments = {
    ...(p.migrateSentAtMs === undefined ? {} : { migrateSentAtMs: p.migrateSentAtMs }),
    ...(p.unplugs === undefined || p.unplugs.length === 0 ? {} : { unplugs: p.unplugs }),
    ...(p.stoppedUs === undefined ? {} : { stoppedAtMs: msOfUs(p.stoppedUs) }),
    ...(p.continueSentAtMs === undefined ? {} : { continueSentAtMs: p.continueSentAtMs }),
  };
  return Object.keys(m).length > 0 ? m : undefined;
}

function forgetSource(ctx: StepContext, migrationId: string): void {
  const k = key(ctx, migrationId);
  pauseTrackers.get(k)?.();
  pauseTrackers.delete(k);
  watchdogs.get(k)?.abort();
  watchdogs.delete(k);
  ctx.records.delete(SRC, migrationId);
  ctx.records.delete(PAUSE, migrationId);
}

/** How long the source guest was paused by this migration before it ran on the source again (undefined: not measured, or it never resumed here). */
function pausedMsOf(ctx: StepContext, migrationId: string): number | undefined {
  return pauseOf(ctx, migrationId).pausedMs;
}

function gaveUpError(ctx: StepContext, migrationId: string, rec: SrcRecord): FerryError {
  const pausedMs = pausedMsOf(ctx, migrationId);
  const pause = pausedMs === undefined ? "" : ` after a pause of ${pausedMs} ms`;
  return new FerryError("FERRY_ERR_SOURCE_GAVE_UP", `the source (${ctx.host}) got no switch-over decision in time at pre-switchover: it cancelled migration ${migrationId} and resumed the guest itself${pause}; the VM runs on the source, start a new migration`, { details: { instanceId: rec.instanceId, ...(pausedMs === undefined ? {} : { pausedMs }) } });
}

/** The source's own deadlines at pre-switchover, by host and migration. */
const watchdogs = new Map<string, AbortController>();

/**
 * DESIGN invariant: no guest pause depends on the controller being alive. At
 * pre-switchover the guest is paused; if neither a switchover nor a cancel
 * comes by `giveUpAt` (journaled, so a restarted agent keeps it), the source
 * cancels the migration and resumes the guest itself (giveUp).
 */
function armGiveUp(ctx: StepContext, migrationId: string, inst: Instance, rec: SrcRecord, waitMs: number): void {
  const k = key(ctx, migrationId);
  if (watchdogs.has(k) || rec.continued === true || rec.gaveUp) return;
  if (rec.giveUpAt === undefined) {
    rec.giveUpAt = ctx.clock.now() + waitMs;
    ctx.records.put(SRC, migrationId, rec);
  }
  const ctl = new AbortController();
  watchdogs.set(k, ctl);
  void ctx.clock.sleep(Math.max(0, rec.giveUpAt - ctx.clock.now()), ctl.signal)
    .then(() => serial(ctx, migrationId, () => giveUp(ctx, migrationId, inst)), () => undefined)
    .catch((e: unknown) => ctx.log?.error({ migrationId, err: String(e) }, "giving up at pre-switchover failed"))
    .finally(() => {
      if (watchdogs.get(k) === ctl) watchdogs.delete(k);
    });
}

function disarmGiveUp(ctx: StepContext, migrationId: string): void {
  const k = key(ctx, migrationId);
  watchdogs.get(k)?.abort();
  watchdogs.delete(k);
}

async function giveUp(ctx: StepContext, migrationId: string, inst: Instance): Promise<void> {
  const rec = ctx.records.get(SRC, migrationId) as SrcRecord | undefined;
  if (!rec || rec.started !== true || rec.continued === true || rec.gaveUp || inst.qmp.closed) return;
  const signal = ctx.clock.timeout(15_000);
  if ((await queryMigrate(inst.qmp, { signal })).status !== "pre-switchover") return;
  rec.gaveUp = { at: ctx.clock.now() };
  ctx.records.put(SRC, migrationId, rec);
  await resumeSource(ctx, inst, rec, signal);
  ctx.log?.warn({ migrationId, instanceId: inst.id, pausedMs: pausedMsOf(ctx, migrationId) }, "no switch-over decision at pre-switchover in time: cancelled the migration and resumed the guest on the source");
}

/**
 * The source keeps (or gets back) its guest and devices: cancel the outgoing
 * migration, the guest running again, ephemeral NICs re-plugged, frames back
 * to the primaries (P10). FERRY_ERR_STATE if the migration completed first.
 */
async function resumeSource(ctx: StepContext, inst: Instance, rec: SrcRecord | undefined, signal: AbortSignal): Promise<void> {
  const result = await cancelOutgoing(ctx, inst, rec, signal).catch(() => "failed" as const);
  if (result === "completed") {
    throw new FerryError("FERRY_ERR_STATE", "the migration completed before it could be cancelled: the destination runs the guest", { details: { result } });
  }
  const until = ctx.clock.monotonic() + 10_000;
  while (!(await queryStatus(inst.qmp, { signal })).running) {
    if (ctx.clock.monotonic() > until) {
      await inst.qmp.execute("cont", undefined, { signal }).catch(() => undefined);
      break;
    }
    await ctx.clock.sleep(20, signal);
  }
  // P10 first (milliseconds): frames back to the primaries QEMU re-plugged on cancel; then the ephemeral NICs
  await steerInitial(ctx, inst.meta.spec, signal).catch(() => undefined);
  await replugMissing(inst, rec?.unplugged ?? [], signal, (nic) => steerInitial(ctx, { ...inst.meta.spec, nics: [nic] }, signal).catch(() => undefined));
}

/**
 * Source: best-effort cancel of a running migration; reports what really
 * happened. A cancelled migration's source gets its guest, NICs and
 * forwarding back here and now, before the coordinator turns to the
 * destination (which may be the side that is down).
 */
export function cancelOnSource(ctx: StepContext, migrationId: string, instanceId: string, signal: AbortSignal): Promise<CancelReply> {
  performing.get(key(ctx, migrationId))?.abort(new FerryError("FERRY_ERR_CANCELLED", `migration ${migrationId}: cancelled`));
  return serial(ctx, migrationId, () => unlessEnded(ctx, migrationId, "cancel", async () => {
    disarmGiveUp(ctx, migrationId);
    const inst = ctx.instances.get(instanceId);
    if (!inst || inst.qmp.closed) return { result: "not-running" as const };
    const rec = ctx.records.get(SRC, migrationId) as SrcRecord | undefined;
    const result = await cancelOutgoing(ctx, inst, rec, signal);
    if (result !== "completed" && rec?.started === true) await resumeSource(ctx, inst, rec, signal);
    return { result };
  }));
}

export function switchover(ctx: StepContext, migrationId: string, instanceId: string, timeoutMs: number, signal: AbortSignal): Promise<SwitchoverResult> {
  return serial(ctx, migrationId, () => unlessEnded(ctx, migrationId, "switchover", () => switchoverNow(ctx, migrationId, instanceId, timeoutMs, signal)));
}

async function switchoverNow(ctx: StepContext, migrationId: string, instanceId: string, timeoutMs: number, signal: AbortSignal): Promise<SwitchoverResult> {
  const inst = instanceOf(ctx, instanceId);
  const rec = ctx.records.get(SRC, migrationId) as SrcRecord | undefined;
  // too late: the source gave up waiting (giveUp) and runs the guest again
  if (rec?.gaveUp) throw gaveUpError(ctx, migrationId, rec);
  disarmGiveUp(ctx, migrationId);
  let info = await queryMigrate(inst.qmp, { signal });
  if (info.status === "pre-switchover" && rec?.started === true) {
    ctx.records.put(SRC, migrationId, { ...rec, continued: true } satisfies SrcRecord);
    notePause(ctx, migrationId, (p) => ({ ...p, continueSentAtMs: ctx.clock.now() }));
    info = await continueMigration(inst.qmp, { timeoutMs, signal, clock: ctx.clock });
  } else if (info.status === "completed" && rec?.continued === true) info = await completedInfo(inst.qmp, info, signal);
  else throw new FerryError("FERRY_ERR_STATE", `cannot switch over: migration is ${info.status}`, { details: { status: info.status } });
  await ctx.faults?.hold("switchover", migrationId, ctx.clock, signal);
  const timeline = sourceMoments(ctx, migrationId);
  return { totalMs: info.totalTimeMs ?? 0, downtimeMs: info.downtimeMs ?? 0, transferredBytes: info.ram?.transferred ?? 0, ...(timeline === undefined ? {} : { timeline }) };
}

export type ConfirmResult = ConfirmReply;

export function confirmSource(ctx: StepContext, migrationId: string, instanceId: string, success: boolean, signal: AbortSignal): Promise<ConfirmResult> {
  // confirm is the source's last step of a migration (success or failure)
  return serial(ctx, migrationId, () => unlessEnded(ctx, migrationId, `confirm-${success ? "success" : "failure"}`, () => confirmNow(ctx, migrationId, instanceId, success, signal), true));
}

async function confirmNow(ctx: StepContext, migrationId: string, instanceId: string, success: boolean, signal: AbortSignal): Promise<ConfirmResult> {
  if (success) await ctx.faults?.hold("confirm", migrationId, ctx.clock, signal);
  disarmGiveUp(ctx, migrationId);
  const inst = ctx.instances.get(instanceId);
  const rec = ctx.records.get(SRC, migrationId) as SrcRecord | undefined;
  // its QEMU exited (not yet reaped by the agent's tick): nothing to stop or resume
  if (!inst || (inst.qmp.closed && !(await inst.alive()))) {
    forgetSource(ctx, migrationId);
    return { state: "gone" };
  }
  const holder = instanceHolder(inst.meta.vmUuid, inst.id);
  if (success) {
    await inst.stop();
    await inst.remove();
    ctx.instances.remove(inst.id);
    await releaseRamFile(ctx, inst.meta);
    await releaseHeld(ctx.vfLife, ctx.leases, holder);
    forgetSource(ctx, migrationId);
    return { state: "stopped" };
  }
  // failure before the switch-over: the source keeps (or gets back) its guest and devices
  await resumeSource(ctx, inst, rec, signal);
  const pausedMs = pausedMsOf(ctx, migrationId);
  forgetSource(ctx, migrationId);
  return pausedMs === undefined ? { state: "running" } : { state: "running", pausedMs };
}

/** The source migrations an agent restart found in flight (started, neither continued nor given up): to re-arm (rearmSources). */
export function sourcesInFlight(ctx: StepContext): string[] {
  return ctx.records.list(SRC).filter(({ value }) => {
    const rec = value as SrcRecord;
    return rec.started === true && rec.continued !== true && !rec.gaveUp;
  }).map(({ key: migrationId }) => migrationId);
}

/**
 * After an agent restart (DESIGN invariant: no guest pause depends on the
 * controller): each source migration in `ids` (sourcesInFlight) that sits at
 * pre-switchover gets its give-up deadline back (journaled in the record, or
 * the one perform journaled from now); one still streaming gets its pause
 * tracked, and is `pending` until QEMU reaches pre-switchover — nobody else
 * would arm it then, the perform that would have died with the old agent.
 * `pending` also holds those whose QEMU did not answer this time, or whose
 * instance `waitFor` says is not adopted yet: the caller asks again.
 */
export async function rearmSources(ctx: StepContext, ids: readonly string[], o: { waitFor?: (instanceId: string) => boolean } = {}): Promise<{ armed: string[]; pending: string[] }> {
  const armed: string[] = [];
  const pending: string[] = [];
  for (const migrationId of ids) {
    const rec = ctx.records.get(SRC, migrationId) as SrcRecord | undefined;
    if (!rec || rec.started !== true || rec.continued === true || rec.gaveUp || watchdogs.has(key(ctx, migrationId))) continue;
    const inst = ctx.instances.get(rec.instanceId);
    if (!inst || inst.qmp.closed) {
      if (o.waitFor?.(rec.instanceId) === true) pending.push(migrationId);
      continue;
    }
    const status = await queryMigrate(inst.qmp, { signal: ctx.clock.timeout(2_000) }).then((m) => m.status, () => "unknown" as const);
    if (status === "unknown") {
      pending.push(migrationId);
      continue;
    }
    if (status !== "pre-switchover" && !migrationUnderWay(status)) continue;
    // read again after the query: a switchover or cancel may have moved it meanwhile (armGiveUp journals the record)
    const now = ctx.records.get(SRC, migrationId) as SrcRecord | undefined;
    if (!now || now.continued === true || now.gaveUp) continue;
    if (!pauseTrackers.has(key(ctx, migrationId))) trackPause(ctx, migrationId, inst, { fresh: false });
    if (status !== "pre-switchover") {
      pending.push(migrationId);
      continue;
    }
    armGiveUp(ctx, migrationId, inst, now, now.waitMs ?? ctx.switchoverGraceMs ?? DEFAULT_GRACE_MS);
    armed.push(migrationId);
  }
  return { armed, pending };
}
