// The agent's side of the migration protocol (DESIGN "Migration protocol"):
// begin / perform / switchover / confirm on the source, prepare / precheck /
// finish / abort on the destination. Every step is keyed by the migration id
// and idempotent: asked again, it answers again without doing the work twice.
// Every wait has a deadline.
import { createHash } from "node:crypto";
import type { Clock } from "../../core/clock.ts";
import type { Logger } from "../../core/log.ts";
import { FerryError, isFerryError } from "../../core/errors.ts";
import type { Runner } from "../../core/run.ts";
import type { UsableVf } from "../../host/config.ts";
import type { LeaseHolder, LeaseStore, RecordStore } from "../../host/leases.ts";
import type { NetBackend, NicSpec, PrimaryDevice, VmSpec } from "../../model/vm.ts";
import { portableSpec } from "../../model/vm.ts";
import type { Accel } from "../../qemu/accel.ts";
import type { Faults } from "../faults.ts";
import { MAX_HOLD_MS } from "../faults.ts";
import { deviceIds } from "../../qemu/argv.ts";
import { plugPrimary, unplugPrimary } from "../../qemu/hotplug.ts";
import { attachTap, attachTaps, newRamFile, releaseRamFile, steer, steerInitial, withTaps } from "./wiring.ts";
import { confirmEnded, endedGuard, markEnded, unconfirmedEnded } from "./ended.ts";
import { join } from "node:path";
import type { Instance } from "../../qemu/instance.ts";
import { newInstanceId, ramFilePath, startInstance } from "../../qemu/instance.ts";
import { cancelMigration, completedInfo, continueMigration, prepareIncoming, startMigration, waitMigration } from "../../qemu/migration.ts";
import type { MigrationSetup } from "../../qemu/migration.ts";
import type { MigrationInfo } from "../../qmp/commands.ts";
import { queryMigrate, listDeviceIds, queryStatus } from "../../qmp/commands.ts";

export interface NetworkPlace {
  bridge: string | null;
  netns: string | null;
  /** "unmanaged": no P10 forwarding management on this bridge (raw QEMU failover; see wiring.ts). Default managed. */
  forwarding?: "managed" | "unmanaged";
}

export interface InstanceRegistry {
  get(id: string): Instance | undefined;
  add(instance: Instance): void;
  remove(id: string): void;
  all(): Instance[];
}

export interface StepContext {
  host: string;
  runDir: string;
  /** Where this host's guest RAM files are (the agent's memoryDir). */
  memoryDir: string;
  accel: Accel;
  clock: Clock;
  leases: LeaseStore;
  records: RecordStore;
  run: Runner;
  vfs: () => readonly UsableVf[];
  network: (name: string) => NetworkPlace | undefined;
  instances: InstanceRegistry;
  qemuBinary?: string;
  /** Lab fault switches (absent or disabled on production hosts). */
  faults?: Faults;
  /** HostConfig.switchoverGraceMs: how long past the destination check the source waits at pre-switchover (default 500). */
  switchoverGraceMs?: number;
  log?: Logger;
}

const DEST = "migration-destination";
const SRC = "migration-source";
/** The source guest's pause in a migration, from QEMU's own event timestamps (kept apart from SrcRecord: written by an event listener). */
const PAUSE = "migration-source-pause";

interface DestRecord {
  instanceId: string;
  uri: string;
  vmUuid: string;
  spec: VmSpec;
  /** NIC name → VF planned on this host (null: runs without its VF). */
  planned: Record<string, string | null>;
  finished?: FinishResult;
  /** Finish found the instance's QEMU gone (after the switch-over: the guest is lost). */
  lost?: true;
  /** Epoch ms: the migration's leases expire then; a destination not finished by then is stale (reapStaleDestinations). */
  expiresAt?: number;
}

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
}

interface PauseRecord {
  /** QEMU's STOP of the source guest (epoch µs, QEMU's timestamp). */
  stoppedUs?: number;
  /** STOP → RESUME on the source (the guest ran on here again: a rollback). */
  pausedMs?: number;
}

/**
 * Steps of one migration on one host that must not overlap run one after
 * the other: prepare and abort on the destination (an abort sent while the
 * coordinator's prepare call was cancelled must find the instance that
 * prepare goes on to start), perform and confirm on the source. A re-sent
 * step waits for the one still running, then answers from its record.
 */
const inFlight = new Map<string, Promise<unknown>>();
async function serial<T>(ctx: StepContext, migrationId: string, fn: () => Promise<T>): Promise<T> {
  const key = `${ctx.host}\0${migrationId}`;
  const run = (inFlight.get(key) ?? Promise.resolve()).then(fn, fn);
  const tail = run.catch(() => undefined);
  inFlight.set(key, tail);
  try {
    return await run;
  } finally {
    if (inFlight.get(key) === tail) inFlight.delete(key);
  }
}

/**
 * A step of migration `id` unless the migration has ended on this host
 * (./ended.ts): the step that ended it answers again, any other is refused.
 * `ends`: this step is the migration's last on this host (its answer is kept).
 */
async function unlessEnded<T>(ctx: StepContext, id: string, step: string, fn: () => Promise<T>, ends = false): Promise<T> {
  const again = endedGuard(ctx.records, ctx.host, id, step);
  if (again) return again.answer as T;
  const answer = await fn();
  if (ends) markEnded(ctx.records, ctx.clock.now(), id, step, answer);
  return answer;
}

/** What this migration's outgoing side really did, from QEMU's state and the record (see SrcRecord). */
async function cancelOutgoing(ctx: StepContext, inst: Instance, rec: SrcRecord | undefined, signal: AbortSignal): Promise<"cancelled" | "completed" | "failed" | "not-running"> {
  if (rec?.started !== true) return "not-running";
  const result = await cancelMigration(inst.qmp, { signal, clock: ctx.clock });
  return result === "completed" && rec.continued !== true ? "not-running" : result;
}

export interface PrepareInput {
  spec: VmSpec;
  /**
   * Migrate-back: the instance on this host that the guest left (paused for
   * good since the switch-over). It is stopped and its VF leases move to this
   * migration, so the guest gets its old VFs back.
   */
  adoptFrom?: string;
  nics: { name: string; vf: string | null }[];
  leaseTtlMs: number;
}
export interface PrepareResult {
  instanceId: string;
  uri: string;
}
export interface PerformInput {
  instanceId: string;
  uri: string;
  unplugMs: number;
  convergeMs: number;
  maxBandwidthBytes?: number;
  downtimeLimitMs?: number;
  /** The controller's destination check at pre-switchover (plan precheckMs); the source waits this plus its grace, then gives up. Default 2000. */
  precheckMs?: number;
}
export interface PerformResult {
  status: "pre-switchover";
  transferredBytes: number;
  remainingBytes: number;
}
export interface SwitchoverResult {
  totalMs: number;
  downtimeMs: number;
  transferredBytes: number;
}
export interface FinishResult {
  instanceId: string;
  nics: { name: string; vf: string | null; attached: boolean; error?: string }[];
}

const migrationHolder = (migrationId: string, vmUuid: string, expiresAt: number): LeaseHolder => ({ kind: "migration", migrationId, vmUuid, expiresAt });
const instanceHolder = (vmUuid: string, instanceId: string): LeaseHolder => ({ kind: "instance", vmUuid, instanceId });

/** Tap names: ≤ 15 chars, derived from instance and NIC so both ends of a migration differ. */
export function tapName(instanceId: string, nic: string, half: "s" | "p"): string {
  return `ft${createHash("sha256").update(`${instanceId}/${nic}`).digest("hex").slice(0, 10)}${half}`;
}

function instanceOf(ctx: StepContext, id: string): Instance {
  const inst = ctx.instances.get(id);
  if (!inst) throw new FerryError("FERRY_ERR_NOT_FOUND", `no instance ${id} on ${ctx.host}`, { details: { instanceId: id } });
  return inst;
}

function vfOf(ctx: StepContext, bdf: string): UsableVf {
  const vf = ctx.vfs().find((v) => v.bdf === bdf);
  if (!vf) throw new FerryError("FERRY_ERR_NOT_FOUND", `VF ${bdf} is not a usable VF of ${ctx.host}`, { details: { vf: bdf } });
  return vf;
}

/** The primary device for a VF on this host: vfio-pci on real hardware, an emulated NIC for a stand-in. */
function primaryFor(vf: UsableVf, backend: NetBackend): PrimaryDevice {
  return vf.standIn ? { kind: "stand-in", model: vf.standIn.model, backend, vf: vf.bdf } : { kind: "vfio", host: vf.bdf };
}

/**
 * The NICs of a guest arriving on this host (an incoming migration, a
 * restore): each NIC's VF from `want` (none for emulated NICs) leased to
 * `holder` and pushed on `leased` (the caller releases them if it fails
 * later), specs without backends yet (withTaps wires both halves). Ephemeral
 * primaries are left out: they are re-plugged once the guest runs.
 */
export function arrivingNics(ctx: StepContext, source: readonly NicSpec[], want: readonly { name: string; vf: string | null }[], holder: LeaseHolder, leased: string[]): { nics: NicSpec[]; planned: Record<string, string | null> } {
  const planned: Record<string, string | null> = {};
  const nics: NicSpec[] = [];
  for (const nic of source) {
    const vfBdf = nic.mode === "emulated" ? null : (want.find((n) => n.name === nic.name)?.vf ?? null);
    planned[nic.name] = vfBdf;
    const vf = vfBdf === null ? undefined : vfOf(ctx, vfBdf);
    if (vf) {
      ctx.leases.lease(vf.bdf, holder);
      leased.push(vf.bdf);
    }
    // the standby's uplink is derived from the VF's network (P6)
    const out: NicSpec = { name: nic.name, mode: nic.mode, mac: nic.mac, guestPorts: nic.guestPorts };
    const network = vf?.network ?? nic.network;
    if (network !== undefined) out.network = network;
    if (nic.standby) out.standby = { kind: "none" };
    if (vf && nic.mode === "failover") out.primary = primaryFor(vf, { kind: "none" });
    nics.push(out);
  }
  return { nics, planned };
}

/** Kill an instance by pid, drop its runtime dir and forget it (a destination that will never run). */
export async function discard(ctx: StepContext, inst: Instance): Promise<void> {
  inst.kill();
  await inst.waitExit(5_000);
  inst.qmp.close();
  await inst.remove();
  ctx.instances.remove(inst.id);
  await releaseRamFile(ctx, inst.meta);
}

// ---------------------------------------------------------------- source

export function begin(ctx: StepContext, migrationId: string, instanceId: string, signal: AbortSignal): Promise<{ spec: VmSpec }> {
  return unlessEnded(ctx, migrationId, "begin", () => beginNow(ctx, migrationId, instanceId, signal));
}

async function beginNow(ctx: StepContext, migrationId: string, instanceId: string, signal: AbortSignal): Promise<{ spec: VmSpec }> {
  await ctx.faults?.hold("begin", migrationId, ctx.clock, signal);
  const inst = instanceOf(ctx, instanceId);
  return { spec: portableSpec(inst.meta.spec) };
}

/** Unplug the instance's ephemeral primaries (Ferry's deadline), skipping `done`; calls `onUnplugged` after each. */
export async function unplugEphemerals(ctx: StepContext, inst: Instance, done: readonly string[], unplugMs: number, signal: AbortSignal, onUnplugged: (nic: string) => void): Promise<void> {
  for (const nic of inst.meta.spec.nics) {
    if (nic.mode !== "ephemeral" || !nic.primary || done.includes(nic.name)) continue;
    if (!(await listDeviceIds(inst.qmp, { signal })).includes(deviceIds(nic.name).primary)) continue;
    await unplugPrimary(inst.qmp, nic, { timeoutMs: unplugMs, signal });
    onUnplugged(nic.name);
  }
}

export interface MigrateOutOptions {
  setup: MigrationSetup;
  until: "pre-switchover" | "completed";
  unplugMs: number;
  timeoutMs: number;
}

/**
 * Start the source's migration and wait for `until`. Ferry owns the deadline
 * of QEMU's wait-unplug (failover primaries), which has none of its own; and
 * (P10) steers each failover NIC's frames to its standby once the guest has
 * released the primary. On any failure the migration is cancelled and the
 * frames go back to the primaries.
 */
export async function migrateOut(ctx: StepContext, inst: Instance, uri: string, o: MigrateOutOptions, signal: AbortSignal): Promise<MigrationInfo> {
  const failovers = inst.meta.spec.nics.filter((n) => n.mode === "failover" && n.primary);
  // UNPLUG_PRIMARY: the guest has released that primary (QEMU keeps it on standby for a rollback); its
  // frames go to the standby now, not when the migration turns active (QEMU polls for that every 250 ms)
  const offSteer = inst.qmp.onEvent((e) => {
    if (e.event !== "UNPLUG_PRIMARY") return;
    for (const nic of failovers) if (e.data["device-id"] === deviceIds(nic.name).primary) void steer(ctx, nic, "standby", signal).catch(() => false);
  });
  const started = ctx.clock.monotonic();
  let unplugStuck = false;
  const unplugWatch = new AbortController();
  try {
    await startMigration(inst.qmp, uri, o.setup, signal);
    const info = await waitMigration(inst.qmp, {
      until: [o.until],
      timeoutMs: o.timeoutMs,
      signal: AbortSignal.any([signal, unplugWatch.signal]),
      clock: ctx.clock,
      onProgress: (i) => {
        if (i.status === "wait-unplug" && ctx.clock.monotonic() - started > o.unplugMs) {
          unplugStuck = true;
          unplugWatch.abort();
        }
      },
    });
    return o.until === "completed" ? await completedInfo(inst.qmp, info, signal, ctx.clock) : info;
  } catch (e) {
    await cancelMigration(inst.qmp, { clock: ctx.clock }).catch(() => undefined);
    await steerInitial(ctx, inst.meta.spec, signal).catch(() => undefined);
    if (unplugStuck) {
      throw new FerryError("FERRY_ERR_UNPLUG_TIMEOUT", `guest did not release its failover primary within ${o.unplugMs} ms; migration cancelled, source keeps its device`, { cause: e });
    }
    throw e;
  } finally {
    offSteer();
  }
}

export function perform(ctx: StepContext, migrationId: string, input: PerformInput, signal: AbortSignal): Promise<PerformResult> {
  return serial(ctx, migrationId, () => unlessEnded(ctx, migrationId, "perform", () => performNow(ctx, migrationId, input, signal)));
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
    return { status: "pre-switchover", transferredBytes: current.ram?.transferred ?? 0, remainingBytes: current.ram?.remaining ?? 0 };
  }
  if (!["none", "cancelled", "failed", "completed"].includes(current.status)) {
    throw new FerryError("FERRY_ERR_STATE", `instance ${inst.id} is already migrating (${current.status})`);
  }
  // ephemeral NICs: unplugged before, with Ferry's deadline (recorded, so a rollback re-plugs them)
  await unplugEphemerals(ctx, inst, rec.unplugged, input.unplugMs, signal, (nic) => {
    rec.unplugged.push(nic);
    ctx.records.put(SRC, migrationId, rec);
  });
  rec.started = true;
  ctx.records.put(SRC, migrationId, rec);
  trackPause(ctx, migrationId, inst, { fresh: true });
  const info = await migrateOut(ctx, inst, input.uri, {
    setup: { capabilities: { "pause-before-switchover": true }, parameters: { maxBandwidth: input.maxBandwidthBytes, downtimeLimit: input.downtimeLimitMs } },
    until: "pre-switchover",
    unplugMs: input.unplugMs,
    timeoutMs: input.convergeMs,
  }, signal);
  armGiveUp(ctx, migrationId, inst, rec, waitMs);
  return { status: "pre-switchover", transferredBytes: info.ram?.transferred ?? 0, remainingBytes: info.ram?.remaining ?? 0 };
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
    const p = (ctx.records.get(PAUSE, migrationId) as PauseRecord | undefined) ?? {};
    if (e.event === "STOP" && p.stoppedUs === undefined) ctx.records.put(PAUSE, migrationId, { stoppedUs: e.timestampUs } satisfies PauseRecord);
    else if (e.event === "RESUME" && p.stoppedUs !== undefined && p.pausedMs === undefined) {
      ctx.records.put(PAUSE, migrationId, { ...p, pausedMs: Math.max(0, Math.round((e.timestampUs - p.stoppedUs) / 1000)) } satisfies PauseRecord);
    }
  });
  pauseTrackers.set(k, off);
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
  return (ctx.records.get(PAUSE, migrationId) as PauseRecord | undefined)?.pausedMs;
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
  for (const name of rec?.unplugged ?? []) {
    const nic = inst.meta.spec.nics.find((n) => n.name === name);
    if (nic?.primary && !(await listDeviceIds(inst.qmp, { signal })).includes(deviceIds(name).primary)) {
      await plugPrimary(inst.qmp, nic, nic.primary, { signal });
      await steerInitial(ctx, { ...inst.meta.spec, nics: [nic] }, signal).catch(() => undefined);
    }
  }
}

/**
 * Source: best-effort cancel of a running migration; reports what really
 * happened. A cancelled migration's source gets its guest, NICs and
 * forwarding back here and now, before the coordinator turns to the
 * destination (which may be the side that is down).
 */
export function cancelOnSource(ctx: StepContext, migrationId: string, instanceId: string, signal: AbortSignal): Promise<{ result: "cancelled" | "completed" | "failed" | "not-running" }> {
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
    info = await continueMigration(inst.qmp, { timeoutMs, signal, clock: ctx.clock });
  } else if (info.status === "completed" && rec?.continued === true) info = await completedInfo(inst.qmp, info, signal);
  else throw new FerryError("FERRY_ERR_STATE", `cannot switch over: migration is ${info.status}`, { details: { status: info.status } });
  await ctx.faults?.hold("switchover", migrationId, ctx.clock, signal);
  return { totalMs: info.totalTimeMs ?? 0, downtimeMs: info.downtimeMs ?? 0, transferredBytes: info.ram?.transferred ?? 0 };
}

export interface ConfirmResult {
  state: "stopped" | "running" | "gone";
  /** Failure: how long the guest was paused by the migration before it ran on the source again (QEMU's STOP → RESUME). */
  pausedMs?: number;
}

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
    ctx.leases.releaseHeldBy(holder);
    forgetSource(ctx, migrationId);
    return { state: "stopped" };
  }
  // failure before the switch-over: the source keeps (or gets back) its guest and devices
  await resumeSource(ctx, inst, rec, signal);
  const pausedMs = pausedMsOf(ctx, migrationId);
  forgetSource(ctx, migrationId);
  return pausedMs === undefined ? { state: "running" } : { state: "running", pausedMs };
}

/**
 * After an agent restart: every migration this host was the source of that
 * sits at pre-switchover gets its give-up deadline back (journaled in the
 * record), so the guest's pause does not wait on the controller either.
 */
export async function rearmSources(ctx: StepContext): Promise<string[]> {
  const out: string[] = [];
  for (const { key: migrationId, value } of ctx.records.list(SRC)) {
    const rec = value as SrcRecord;
    const inst = ctx.instances.get(rec.instanceId);
    if (!inst || rec.started !== true || rec.continued === true || rec.gaveUp || inst.qmp.closed) continue;
    const status = await queryMigrate(inst.qmp, { signal: ctx.clock.timeout(2_000) }).then((m) => m.status, () => "unknown");
    if (status !== "pre-switchover") continue;
    trackPause(ctx, migrationId, inst, { fresh: false });
    armGiveUp(ctx, migrationId, inst, rec, ctx.switchoverGraceMs ?? DEFAULT_GRACE_MS);
    out.push(migrationId);
  }
  return out;
}

// ---------------------------------------------------------------- destination

/** Migrate-back: stop the instance the guest left on this host and move its VF leases to the migration. */
async function adopt(ctx: StepContext, instanceId: string, to: LeaseHolder): Promise<void> {
  const old = ctx.instances.get(instanceId);
  if (old) {
    await old.stop();
    await old.remove();
    ctx.instances.remove(instanceId);
    await releaseRamFile(ctx, old.meta);
  }
  ctx.leases.transferHeldBy({ kind: "instance", instanceId }, to);
}

export function prepare(ctx: StepContext, migrationId: string, input: PrepareInput, signal: AbortSignal): Promise<PrepareResult> {
  return serial(ctx, migrationId, () => unlessEnded(ctx, migrationId, "prepare", () => prepareNow(ctx, migrationId, input, signal)));
}

async function prepareNow(ctx: StepContext, migrationId: string, input: PrepareInput, signal: AbortSignal): Promise<PrepareResult> {
  const existing = ctx.records.get(DEST, migrationId) as DestRecord | undefined;
  if (existing && (existing.finished !== undefined || existing.lost === true)) {
    // the guest arrived here with this migration (and may have left since): it is never prepared again
    throw new FerryError("FERRY_ERR_STATE", `migration ${migrationId} is past its switch-over on host ${ctx.host}: prepare is refused and nothing was changed; start a new migration ('ferry migrate')`, { details: { migrationId } });
  }
  if (existing && ctx.instances.get(existing.instanceId)) return { instanceId: existing.instanceId, uri: existing.uri };
  const source = input.spec;
  const expiresAt = ctx.clock.now() + input.leaseTtlMs;
  const holder = migrationHolder(migrationId, source.uuid, expiresAt);
  if (input.adoptFrom !== undefined) await adopt(ctx, input.adoptFrom, holder);
  const leased: string[] = [];
  const instanceId = newInstanceId();
  try {
    const { nics, planned } = arrivingNics(ctx, source.nics, input.nics, holder, leased);
    if (ctx.faults?.fire("port-profile-fail")) {
      throw new FerryError("FERRY_ERR_FEATURE", "port-profile association failed on the destination (lab fault switch port-profile-fail)", { details: { feature: "port-profile" } });
    }
    const { spec, netns } = withTaps(ctx, instanceId, { ...source, nics });
    const inst = await startInstance({ runDir: ctx.runDir, spec, accel: ctx.accel, instanceId, incoming: true, netns, qemuBinary: ctx.qemuBinary, signal, clock: ctx.clock, ...newRamFile(ctx, spec, instanceId) });
    ctx.instances.add(inst);
    await attachTaps(ctx, spec, signal);
    const uri = await prepareIncoming(inst.qmp, "tcp:127.0.0.1:0", {}, signal);
    steerOnResume(ctx, inst, spec);
    ctx.records.put(DEST, migrationId, { instanceId, uri, vmUuid: source.uuid, spec, planned, expiresAt } satisfies DestRecord);
    await ctx.faults?.hold("prepare", migrationId, ctx.clock, signal);
    if (ctx.faults?.fire("agent-crash-in-prepare")) process.kill(process.pid, "SIGKILL");
    return { instanceId, uri };
  } catch (e) {
    for (const vf of leased) ctx.leases.release(vf, holder);
    const inst = ctx.instances.get(instanceId);
    if (inst) await discard(ctx, inst);
    throw e;
  }
}

/** Bounded by `timeoutMs` (the guest is paused), counted after a lab hold:precheck. */
export function precheck(ctx: StepContext, migrationId: string, timeoutMs: number): Promise<{ ok: boolean; reason?: string }> {
  return unlessEnded(ctx, migrationId, "precheck", () => precheckNow(ctx, migrationId, timeoutMs));
}

async function precheckNow(ctx: StepContext, migrationId: string, timeoutMs: number): Promise<{ ok: boolean; reason?: string }> {
  await ctx.faults?.hold("precheck", migrationId, ctx.clock, ctx.clock.timeout(MAX_HOLD_MS));
  const signal = ctx.clock.timeout(timeoutMs);
  const rec = ctx.records.get(DEST, migrationId) as DestRecord | undefined;
  if (!rec) return { ok: false, reason: `no prepared destination for migration ${migrationId}` };
  if (ctx.faults?.fire("precheck-fail")) return { ok: false, reason: "destination check failed (lab fault switch precheck-fail)" };
  const inst = ctx.instances.get(rec.instanceId);
  if (!inst || inst.qmp.closed) return { ok: false, reason: `destination instance ${rec.instanceId} is gone` };
  const status = await queryStatus(inst.qmp, { signal, timeoutMs: 500 }).catch((e: unknown) => ({ status: `unreachable: ${String(e)}`, running: false }));
  if (status.status !== "inmigrate" && status.status !== "paused") return { ok: false, reason: `destination QEMU is ${status.status}` };
  for (const [nic, vf] of Object.entries(rec.planned)) {
    if (vf === null) continue;
    const l = ctx.leases.get(vf);
    if (!l || l.holder.kind !== "migration" || l.holder.migrationId !== migrationId) return { ok: false, reason: `VF ${vf} for ${nic} is no longer reserved` };
  }
  return { ok: true };
}

/** Wait until an instance's guest runs (an incoming instance starts by itself once the migration completes). */
export async function waitRunning(ctx: StepContext, inst: Instance, signal: AbortSignal, timeoutMs = 30_000): Promise<void> {
  const until = ctx.clock.monotonic() + timeoutMs;
  for (;;) {
    const s = await queryStatus(inst.qmp, { signal });
    if (s.running) return;
    if (s.status === "paused" || s.status === "prelaunch") {
      await inst.qmp.execute("cont", undefined, { signal });
      return;
    }
    if (ctx.clock.monotonic() > until) throw new FerryError("FERRY_ERR_TIMEOUT", `guest of instance ${inst.id} did not start running within ${timeoutMs} ms (status ${s.status})`);
    await ctx.clock.sleep(20, signal);
  }
}

/**
 * After the switch-over, on the instance that now runs the guest: steer to
 * the standbys, re-plug ephemeral NICs on their VFs, wait for failover
 * primaries (deadline), steer to each primary once it is back. NICs that do
 * not come back are reported, not thrown: the policy decides.
 */
/** Steers started at an incoming instance's RESUME; finish waits for them before it steers anything itself. */
const resumeSteers = new WeakMap<Instance, Promise<void>>();

/**
 * P10 on the destination: the moment the incoming guest runs (QMP RESUME),
 * its frames go to this host's standby halves — not one controller round
 * trip later, when finish is called (raw QEMU failover's best case is its
 * announce reaching a learning bridge right away; this matches it).
 */
function steerOnResume(ctx: StepContext, inst: Instance, spec: VmSpec): void {
  const off = inst.qmp.onEvent((e) => {
    if (e.event !== "RESUME") return;
    off();
    resumeSteers.set(inst, (async () => {
      for (const nic of spec.nics) await steer(ctx, nic, "standby", AbortSignal.timeout(5_000)).catch(() => false);
    })());
  });
}

export async function bringBackNics(ctx: StepContext, inst: Instance, spec: VmSpec, planned: Readonly<Record<string, string | null>>, o: { primaryBackMs: number; replugFails: boolean }, signal: AbortSignal): Promise<FinishResult["nics"]> {
  await resumeSteers.get(inst);
  for (const nic of spec.nics) await steer(ctx, nic, "standby", signal).catch(() => false);
  const out: FinishResult["nics"] = [];
  const deadlineAt = ctx.clock.monotonic() + o.primaryBackMs;
  for (const nic of spec.nics) {
    const vf = planned[nic.name] ?? null;
    if (nic.mode === "emulated" || vf === null) {
      out.push({ name: nic.name, vf: null, attached: false });
      continue;
    }
    try {
      if (o.replugFails) throw new FerryError("FERRY_ERR_REPLUG", `re-plug of ${nic.name} failed (lab fault switch replug-fail)`);
      if (nic.mode === "ephemeral") {
        const usable = vfOf(ctx, vf);
        const wired = withTaps(ctx, inst.id, { ...spec, nics: [{ ...nic, network: usable.network, primary: primaryFor(usable, { kind: "none" }) }] }).spec.nics[0]!;
        const primary = wired.primary!;
        await plugPrimary(inst.qmp, nic, primary, { signal });
        nic.primary = primary;
        nic.network = usable.network;
        if (primary.kind === "stand-in") await attachTap(ctx, nic, primary.backend, signal);
      } else {
        // failover: QEMU re-plugs the primary itself once the guest runs; wait for it with a deadline
        for (;;) {
          if ((await listDeviceIds(inst.qmp, { signal })).includes(deviceIds(nic.name).primary)) break;
          if (ctx.clock.monotonic() > deadlineAt) throw new FerryError("FERRY_ERR_TIMEOUT", `failover primary of ${nic.name} not back within ${o.primaryBackMs} ms`);
          await ctx.clock.sleep(50, signal);
        }
      }
      await steer(ctx, nic, "primary", signal);
      out.push({ name: nic.name, vf, attached: true });
    } catch (e) {
      out.push({ name: nic.name, vf, attached: false, error: isFerryError(e) ? `${e.code}: ${e.message}` : String(e) });
    }
  }
  return out;
}

export function finish(ctx: StepContext, migrationId: string, primaryBackMs: number, signal: AbortSignal): Promise<FinishResult> {
  return unlessEnded(ctx, migrationId, "finish", () => finishNow(ctx, migrationId, primaryBackMs, signal));
}

async function finishNow(ctx: StepContext, migrationId: string, primaryBackMs: number, signal: AbortSignal): Promise<FinishResult> {
  const rec = ctx.records.get(DEST, migrationId) as DestRecord | undefined;
  if (!rec) throw new FerryError("FERRY_ERR_NOT_FOUND", `no prepared destination for migration ${migrationId}`);
  if (rec.finished) return rec.finished;
  const inst = ctx.instances.get(rec.instanceId);
  if (rec.lost || !inst) return guestLost(ctx, migrationId, rec, inst);
  if (ctx.faults?.fire("qemu-crash-on-destination")) inst.kill();
  const replugFails = ctx.faults?.fire("replug-fail") ?? false;
  try {
    await waitRunning(ctx, inst, signal);
  } catch (e) {
    if (inst.qmp.closed && !(await inst.alive())) return guestLost(ctx, migrationId, rec, inst);
    throw e;
  }
  // the instance's own spec follows its devices (a re-plugged ephemeral NIC), so the next migration unplugs it again
  const result: FinishResult = { instanceId: inst.id, nics: await bringBackNics(ctx, inst, inst.meta.spec, rec.planned, { primaryBackMs, replugFails }, signal) };
  await inst.saveMeta();
  await ctx.faults?.hold("finish", migrationId, ctx.clock, signal);
  // leases move from the migration to the running instance; a VF that did not attach stays leased
  // to it as well, so that a later re-plug or a migrate-back decision still has it.
  const to = instanceHolder(rec.vmUuid, inst.id);
  for (const vf of Object.values(rec.planned)) {
    if (vf === null) continue;
    const l = ctx.leases.get(vf);
    if (l && l.holder.kind === "migration" && l.holder.migrationId === migrationId) ctx.leases.transfer(vf, l.holder, to);
  }
  rec.finished = result;
  ctx.records.put(DEST, migrationId, rec);
  return result;
}

/**
 * Finish found the destination QEMU gone: forget the instance, release the
 * migration's VFs here, remember it (a re-sent finish answers the same), and
 * say so with FERRY_ERR_GUEST_LOST (the coordinator does not resume the
 * source: the guest may have run here).
 */
async function guestLost(ctx: StepContext, migrationId: string, rec: DestRecord, inst: Instance | undefined): Promise<never> {
  if (inst) await discard(ctx, inst);
  ctx.leases.releaseHeldBy({ kind: "migration", migrationId });
  ctx.leases.releaseHeldBy({ kind: "instance", instanceId: rec.instanceId });
  if (!rec.lost) ctx.records.put(DEST, migrationId, { ...rec, lost: true } satisfies DestRecord);
  throw new FerryError("FERRY_ERR_GUEST_LOST", `the destination QEMU of instance ${rec.instanceId} exited after the switch-over: the guest is lost; its QEMU and console logs are kept under ${join(ctx.runDir, "logs", rec.instanceId)} on ${ctx.host}; 'ferry vm start ${rec.spec.name}' boots the VM again`, { details: { instanceId: rec.instanceId } });
}

/**
 * Housekeeping (the agent's tick): a prepared destination that was never
 * finished by the time its migration's leases expire was given up by the
 * coordinator (say, while this agent was away longer than the step's
 * deadline, so the abort never arrived): abort it here — kill its incoming
 * QEMU, release its VFs. Returns the migrations aborted.
 */
export async function reapStaleDestinations(ctx: StepContext): Promise<string[]> {
  const out: string[] = [];
  for (const { key, value } of ctx.records.list(DEST)) {
    const rec = value as DestRecord;
    if (rec.finished !== undefined || rec.expiresAt === undefined || rec.expiresAt > ctx.clock.now()) continue;
    await abortDestination(ctx, key);
    out.push(key);
  }
  return out;
}

export function abortDestination(ctx: StepContext, migrationId: string): Promise<{ aborted: boolean }> {
  // abort is the destination's last step of a migration that rolls back
  return serial(ctx, migrationId, () => unlessEnded(ctx, migrationId, "abort", () => abortNow(ctx, migrationId), true));
}

async function abortNow(ctx: StepContext, migrationId: string): Promise<{ aborted: boolean }> {
  const rec = ctx.records.get(DEST, migrationId) as DestRecord | undefined;
  let aborted = false;
  if (rec) {
    const inst = ctx.instances.get(rec.instanceId);
    if (inst) {
      await discard(ctx, inst);
      aborted = true;
    }
    // the instance may be gone already (an agent restart): its RAM file is known by name
    if (rec.spec.sharedMemory === true) await releaseRamFile(ctx, { instanceId: rec.instanceId, ramFile: ramFilePath(ctx.memoryDir, rec.vmUuid, rec.instanceId) });
  }
  ctx.leases.releaseHeldBy({ kind: "migration", migrationId });
  ctx.records.delete(DEST, migrationId);
  return { aborted };
}

// ---------------------------------------------------------------- reconciling with the controller

/**
 * The migrations this host holds anything of: a destination or source
 * record, a VF leased to a migration, an end not yet confirmed by the
 * controller. The agent names them in its heartbeat; the controller answers
 * which have ended (reconcileEnded).
 */
export function knownMigrations(ctx: StepContext): string[] {
  const ids = new Set<string>();
  for (const r of ctx.records.list(DEST)) ids.add(r.key);
  for (const r of ctx.records.list(SRC)) ids.add(r.key);
  for (const l of ctx.leases.list()) if (l.holder.kind === "migration") ids.add(l.holder.migrationId);
  for (const id of unconfirmedEnded(ctx.records)) ids.add(id);
  return [...ids].sort();
}

export interface ReconcileResult {
  migrationId: string;
  /** VFs the migration held here that are free now. */
  releasedVfs: string[];
  /** VFs handed to the instance that runs the guest (it arrived, finish never came). */
  keptByInstance: string[];
  /** An incoming QEMU that will never receive its guest was stopped. */
  aborted: boolean;
}

/**
 * The controller says migration `id` has ended: nothing of it stays here. A
 * destination that never received the guest is aborted (incoming QEMU
 * stopped, VFs released); one whose QEMU runs the guest (the switch-over
 * happened, finish never came) keeps its QEMU, and the migration's VFs move
 * to that instance (it uses them: releasing them would let another VM take
 * them); any other VF still leased to the migration is released; the
 * migration's records go. From now on every step of it is refused.
 * Undefined when the state of its QEMU cannot be told now (asked again at
 * the next heartbeat).
 */
export function reconcileEnded(ctx: StepContext, id: string): Promise<ReconcileResult | undefined> {
  return serial(ctx, id, async () => {
    const out: ReconcileResult = { migrationId: id, releasedVfs: [], keptByInstance: [], aborted: false };
    const dest = ctx.records.get(DEST, id) as DestRecord | undefined;
    if (dest && dest.finished === undefined && dest.lost !== true) {
      const inst = ctx.instances.get(dest.instanceId);
      const status = inst ? await queryStatus(inst.qmp, { timeoutMs: 1_000 }).then((x) => x.status, () => undefined) : "gone";
      if (status === undefined && inst && (await inst.alive())) return undefined;
      if (inst && status !== undefined && status !== "gone" && status !== "inmigrate") {
        const to = instanceHolder(dest.vmUuid, inst.id);
        out.keptByInstance.push(...ctx.leases.transferHeldBy({ kind: "migration", migrationId: id }, to));
      } else {
        const leased = ctx.leases.heldBy({ kind: "migration", migrationId: id }).map((l) => l.vf);
        out.aborted = (await abortNow(ctx, id)).aborted;
        out.releasedVfs.push(...leased);
      }
    }
    out.releasedVfs.push(...ctx.leases.releaseHeldBy({ kind: "migration", migrationId: id }));
    ctx.records.delete(DEST, id);
    ctx.records.delete(SRC, id);
    confirmEnded(ctx.records, ctx.clock.now(), id);
    return out;
  });
}
