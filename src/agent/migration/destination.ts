// The destination's side of a migration between hosts (DESIGN "Migration
// protocol"): prepare (an incoming instance on the VFs planned here),
// precheck, finish (the guest runs here: NICs back, leases to the instance)
// and abort; stale prepared destinations reaped by the agent's tick. Every
// step is keyed by the migration id and idempotent; every wait has a deadline.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { FerryError } from "../../core/errors.ts";
import type { LeaseHolder } from "../../host/leases.ts";
import type { DestinationMoments, PrimaryMoments } from "../../migration/timeline.ts";
import type { VmSpec } from "../../model/vm.ts";
import { newInstanceId, ramFilePath } from "../../qemu/instance.ts";
import type { Instance } from "../../qemu/instance.ts";
import { queryMigrate, queryStatus } from "../../qmp/commands.ts";
import { MAX_HOLD_MS } from "../faults.ts";
import type { StepContext } from "./context.ts";
import { instanceHolder, migrationHolder, serial, unlessEnded } from "./context.ts";
import { discard, startIncoming, waitRunning } from "./lifecycle.ts";
import { arrivingNics, bringBackNics, steerOnResume } from "./nics.ts";
import { tlsRefusal } from "./transport.ts";
import { releaseRamFile } from "./wiring.ts";
import { releaseHeld, releaseLeased, wantedVfs } from "../vf-life.ts";
import type { AbortReply, FinishReply, PrecheckReply, PrepareBody, PrepareReply } from "../../wire/steps.ts";

export const DEST = "migration-destination";

export interface DestRecord {
  instanceId: string;
  uri: string;
  vmUuid: string;
  spec: VmSpec;
  /** NIC name → VF planned on this host (null: runs without its VF). */
  planned: Record<string, string | null>;
  finished?: FinishResult;
  /** The incoming guest's RESUME and the steer to the standbys it started (steerOnResume), for finish's answer. */
  resumed?: DestinationMoments;
  /** Finish found the instance's QEMU gone (after the switch-over: the guest is lost). */
  lost?: true;
  /** Epoch ms: the migration's leases expire then; a destination not finished by then is stale (reapStaleDestinations). */
  expiresAt?: number;
}

/** A prepare request with its spec admitted (Agent.admitSpec). */
export type PrepareInput = Omit<PrepareBody, "spec"> & { spec: VmSpec };
export type PrepareResult = PrepareReply;
export type FinishResult = FinishReply;

/** Migrate-back: stop the instance the guest left on this host and move its VF leases to the migration; returns those VFs. */
async function adopt(ctx: StepContext, instanceId: string, to: LeaseHolder): Promise<string[]> {
  const old = ctx.instances.get(instanceId);
  if (old) {
    await old.stop();
    await old.remove();
    ctx.instances.remove(instanceId);
    await releaseRamFile(ctx, old.meta);
  }
  return ctx.leases.transferHeldBy({ kind: "instance", instanceId }, to);
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
  const adopted = input.adoptFrom === undefined ? [] : await adopt(ctx, input.adoptFrom, holder);
  const leased: string[] = [];
  const instanceId = newInstanceId();
  try {
    const { nics, planned } = arrivingNics(ctx, source.nics, input.nics, holder, leased);
    // real VFs: on vfio-pci with the guest's MAC (and the network's VLAN) before the incoming QEMU opens them;
    // adopted ones (migrate-back) are set up for this guest already and stay as they are
    await ctx.vfLife.acquire(wantedVfs(source.nics, planned).filter((w) => !adopted.includes(w.vf)), signal);
    if (ctx.faults?.fire("port-profile-fail")) {
      throw new FerryError("FERRY_ERR_FEATURE", "port-profile association failed on the destination (lab fault switch port-profile-fail)", { details: { feature: "port-profile" } });
    }
    const { inst, spec, uri } = await startIncoming(ctx, { spec: { ...source, nics }, instanceId, listen: { network: ctx.transport ?? null, sourceIdentity: input.sourceIdentity } }, signal);
    steerOnResume(ctx, inst, spec, (resumed) => {
      const r = ctx.records.get(DEST, migrationId) as DestRecord | undefined;
      if (r) ctx.records.put(DEST, migrationId, { ...r, resumed } satisfies DestRecord);
    }, input.primaryBackMs === undefined ? {} : { primaryBackMs: input.primaryBackMs });
    ctx.records.put(DEST, migrationId, { instanceId, uri, vmUuid: source.uuid, spec, planned, expiresAt } satisfies DestRecord);
    await ctx.faults?.hold("prepare", migrationId, ctx.clock, signal);
    if (ctx.faults?.fire("agent-crash-in-prepare")) process.kill(process.pid, "SIGKILL");
    return { instanceId, uri };
  } catch (e) {
    const inst = ctx.instances.get(instanceId);
    if (inst) await discard(ctx, inst);
    await releaseLeased(ctx.vfLife, ctx.leases, leased, holder);
    throw e;
  }
}

/** Of the precheck's time, what its answer needs to reach the controller (whose deadline is the same precheckMs). */
const PRECHECK_REPLY_MS = 300;

/** Bounded by `timeoutMs` (the guest is paused), counted after a lab hold:precheck. */
export function precheck(ctx: StepContext, migrationId: string, timeoutMs: number): Promise<PrecheckReply> {
  return unlessEnded(ctx, migrationId, "precheck", () => precheckNow(ctx, migrationId, timeoutMs));
}

async function precheckNow(ctx: StepContext, migrationId: string, timeoutMs: number): Promise<PrecheckReply> {
  await ctx.faults?.hold("precheck", migrationId, ctx.clock, ctx.clock.timeout(MAX_HOLD_MS));
  const signal = ctx.clock.timeout(timeoutMs);
  const rec = ctx.records.get(DEST, migrationId) as DestRecord | undefined;
  if (!rec) return { ok: false, reason: `no prepared destination for migration ${migrationId}` };
  if (ctx.faults?.fire("precheck-fail")) return { ok: false, reason: "destination check failed (lab fault switch precheck-fail)" };
  const inst = ctx.instances.get(rec.instanceId);
  if (!inst || inst.qmp.closed) return { ok: false, reason: `destination instance ${rec.instanceId} is gone` };
  // a destination QEMU still loading a backlog of the stream answers QMP late (CI: no answer within 500 ms from a
  // file-backed guest's destination, and the migration rolled back as "unreachable"); the guest is paused either way,
  // so the two queries share the check's whole time, less what the answer needs to reach the controller
  const until = ctx.clock.now() + Math.max(200, timeoutMs - PRECHECK_REPLY_MS);
  const left = (): number => Math.max(50, until - ctx.clock.now());
  const status = await queryStatus(inst.qmp, { signal, timeoutMs: left() }).catch((e: unknown) => ({ status: `not answering QMP (${e instanceof Error ? e.message : String(e)}): hung, or still loading the stream after ${timeoutMs - PRECHECK_REPLY_MS} ms`, running: false }));
  if (status.status !== "inmigrate" && status.status !== "paused") return { ok: false, reason: `destination QEMU is ${status.status}` };
  // the source is at pre-switchover: the stream must have reached this QEMU (a refused connection — TLS —
  // leaves it listening with no incoming migration, while the source may have written its RAM into socket buffers)
  const incoming = await queryMigrate(inst.qmp, { signal, timeoutMs: left() }).catch(() => undefined);
  if (incoming !== undefined && (incoming.status === undefined || incoming.status === "none")) {
    const log = await readFile(inst.paths.qemuLog, "utf8").catch(() => "");
    const refused = tlsRefusal(log);
    return { ok: false, reason: refused ? `the destination refused the migration stream: ${refused}` : "the destination has received no migration stream (its QEMU took no connection)" };
  }
  for (const [nic, vf] of Object.entries(rec.planned)) {
    if (vf === null) continue;
    const l = ctx.leases.get(vf);
    if (!l || l.holder.kind !== "migration" || l.holder.migrationId !== migrationId) return { ok: false, reason: `VF ${vf} for ${nic} is no longer reserved` };
  }
  return { ok: true };
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
  const primaries: PrimaryMoments[] = [];
  const nics = await bringBackNics(ctx, inst, inst.meta.spec, rec.planned, { primaryBackMs, replugFails, onPrimary: (m) => primaries.push(m) }, signal);
  // noted by steerOnResume's listener meanwhile (bringBackNics waited for its steers)
  rec.resumed = (ctx.records.get(DEST, migrationId) as DestRecord | undefined)?.resumed ?? rec.resumed;
  if (primaries.length > 0) rec.resumed = { ...rec.resumed, primaries };
  const result: FinishResult = { instanceId: inst.id, nics, ...(rec.resumed === undefined ? {} : { timeline: rec.resumed }) };
  await inst.saveMeta();
  await ctx.faults?.hold("finish", migrationId, ctx.clock, signal);
  // the guest's kernel panicked here since it resumed (pvpanic): the record says so (migration/step-answers.ts)
  if (inst.guestPanickedAt !== undefined) result.guestPanickedAt = inst.guestPanickedAt;
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
  await releaseHeld(ctx.vfLife, ctx.leases, { kind: "migration", migrationId });
  await releaseHeld(ctx.vfLife, ctx.leases, { kind: "instance", instanceId: rec.instanceId });
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

export function abortDestination(ctx: StepContext, migrationId: string): Promise<AbortReply> {
  // abort is the destination's last step of a migration that rolls back
  return serial(ctx, migrationId, () => unlessEnded(ctx, migrationId, "abort", () => abortNow(ctx, migrationId), true));
}

export async function abortNow(ctx: StepContext, migrationId: string): Promise<AbortReply> {
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
  await releaseHeld(ctx.vfLife, ctx.leases, { kind: "migration", migrationId });
  ctx.records.delete(DEST, migrationId);
  return { aborted };
}
