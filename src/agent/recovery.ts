// The agent's instances across its own restarts: at startup it adopts the
// QEMU instances already running under the run dir (they are detached
// processes), buries those whose QEMU is gone (leases and RAM file released),
// and keeps retrying those alive but not answering; every tick it reaps
// instances whose QEMU exited.
import { readdir, readFile, rm, rmdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { isFerryError, toFerryError } from "../core/errors.ts";
import type { Lease, LeaseHolder } from "../host/leases.ts";
import * as v from "../model/validate.ts";
import { listInstanceDirs, processAlive, reconnectInstance, removeInstanceDir } from "../qemu/instance.ts";
import type { GoneInstanceT } from "../wire/agent-api.ts";
import { rearmSources, sourcesInFlight } from "./migration/source.ts";
import { releaseRamFile } from "./migration/wiring.ts";
import type { AgentState } from "./state.ts";
import { instanceHolder } from "./state.ts";
import { releaseHeld } from "./vf-life.ts";

export interface RecoveryReport {
  reconnected: string[];
  gone: GoneInstanceT[];
  /** Alive but QMP did not answer: left alone (no lease released), retried every tick. */
  unreachable: string[];
  /** Instance leases whose instance has no runtime dir here: reported, not released. */
  orphanLeases: Lease[];
  /** Source migrations in flight whose give-up could not be armed yet (still streaming, QEMU not answering): keepRearming asks again. */
  rearmPending: string[];
}

/** At startup: adopt every instance under the run dir, report the rest, sweep RAM files, re-arm sources waiting at pre-switchover. */
export async function recover(s: AgentState, signal?: AbortSignal): Promise<RecoveryReport> {
  const report: RecoveryReport = { reconnected: [], gone: [], unreachable: [], orphanLeases: [], rearmPending: [] };
  for (const dir of await listInstanceDirs(s.config.runDir)) {
    const r = await adoptDir(s, dir, signal);
    if (r.kind === "adopted") report.reconnected.push(r.id);
    else if (r.kind === "gone") report.gone.push(r.gone);
    else report.unreachable.push(r.id);
  }
  const known = (h: LeaseHolder): boolean =>
    h.kind !== "instance" || s.instances.has(h.instanceId) || s.unreachable.has(h.instanceId);
  report.orphanLeases = s.leases.list().filter((l) => !known(l.holder));
  for (const l of report.orphanLeases) s.log.warn({ vf: l.vf, holder: l.holder }, "lease held by an instance with no runtime dir on this host");
  await sweepRamFiles(s);
  report.rearmPending = await rearm(s, sourcesInFlight(s.ctx()));
  return report;
}

const REARM_EVERY_MS = 250;

/** One round of re-arming (rearmSources); what is still pending. */
async function rearm(s: AgentState, ids: readonly string[]): Promise<string[]> {
  const r = await rearmSources(s.ctx(), ids, { waitFor: (id) => s.unreachable.has(id) });
  for (const id of r.armed) s.log.warn({ migrationId: id }, "a migration from this host waits at pre-switchover (guest paused): its give-up deadline is armed again");
  return r.pending;
}

/**
 * After recover: the source migrations it could not re-arm yet are asked
 * about again every 250 ms until each is armed or over (the agent's tick, every
 * 10 s, would leave a paused guest waiting that long).
 */
export async function keepRearming(s: AgentState, pending: readonly string[], signal: AbortSignal): Promise<void> {
  let ids = [...pending];
  if (ids.length > 0) s.log.info({ migrations: ids }, "source migrations in flight across the restart: watching them until they reach pre-switchover or end");
  while (ids.length > 0) {
    try {
      await s.clock.sleep(REARM_EVERY_MS, signal);
    } catch {
      return; // the agent closed
    }
    ids = await rearm(s, ids).catch((e: unknown) => {
      s.log.error({ err: toFerryError(e).message }, "re-arming source migrations failed; trying again");
      return ids;
    });
  }
}

/** RAM files in memoryDir that no instance dir names (left by a crash): removed. */
async function sweepRamFiles(s: AgentState): Promise<void> {
  const named = new Set<string>();
  for (const dir of await listInstanceDirs(s.config.runDir)) {
    const f = (await readMeta(dir))?.ramFile;
    if (f !== undefined) named.add(f);
  }
  for (const f of await readdir(s.config.memoryDir).catch(() => [] as string[])) {
    const file = join(s.config.memoryDir, f);
    if (f.endsWith(".ram") && !named.has(file)) {
      await rm(file, { force: true });
      s.log.info({ file }, "removed a guest RAM file no instance maps");
    }
  }
}

/** Reconnect to the instance in `dir`; one whose QEMU is gone is buried, one alive but not answering is retried later. */
async function adoptDir(s: AgentState, dir: string, signal?: AbortSignal): Promise<{ kind: "adopted" | "unreachable"; id: string } | { kind: "gone"; gone: GoneInstanceT }> {
  try {
    const inst = await reconnectInstance(dir, { clock: s.clock, signal });
    s.instances.set(inst.id, inst);
    s.unreachable.delete(inst.id);
    s.log.info({ instanceId: inst.id, vm: inst.meta.vmName, pid: inst.pid }, "reconnected to instance");
    return { kind: "adopted", id: inst.id };
  } catch (e) {
    const meta = await readMeta(dir);
    const id = meta?.instanceId ?? dir.split("/").at(-1) ?? dir;
    if (meta && (await processAlive(meta.pid, join(dir, "qmp.sock")))) {
      s.unreachable.set(id, dir);
      s.log.warn({ instanceId: id, err: toFerryError(e).message }, "instance alive but QMP unreachable; will retry");
      return { kind: "unreachable", id };
    }
    const holder: LeaseHolder | null = meta ? { kind: "instance", vmUuid: meta.vmUuid, instanceId: meta.instanceId } : null;
    const gone = await bury(s, dir, holder, { instanceId: id, vmUuid: meta?.vmUuid ?? "", vmName: meta?.vmName ?? "", pid: meta?.pid ?? 0 }, "process gone while the agent was down", meta?.ramFile);
    return { kind: "gone", gone };
  }
}

/** Release a dead instance's leases (its VFs reset first) and RAM file, remove its runtime dir, remember it as gone. */
async function bury(s: AgentState, dir: string, holder: LeaseHolder | null, who: Pick<GoneInstanceT, "instanceId" | "vmUuid" | "vmName" | "pid">, reason: string, ramFile: string | undefined): Promise<GoneInstanceT> {
  const releasedVfs = holder ? await releaseHeld(s.ctx().vfLife, s.leases, holder) : [];
  await removeInstanceDir(dir);
  await releaseRamFile(s.ctx(), { instanceId: who.instanceId, ...(ramFile === undefined ? {} : { ramFile }) });
  await rmdir(dirname(dir)).catch(() => undefined); // the VM's dir, if now empty
  const gone: GoneInstanceT = { ...who, at: s.clock.now(), reason, releasedVfs };
  s.gone.push(gone);
  if (s.gone.length > 100) s.gone.shift();
  s.log.warn({ instanceId: who.instanceId, vm: who.vmName, releasedVfs, logs: join(s.config.runDir, "logs", who.instanceId) }, `instance gone: ${reason}`);
  return gone;
}

/** The tick's part: instances whose QEMU exited are buried; unreachable ones are tried again. */
export async function reapDead(s: AgentState): Promise<void> {
  for (const inst of [...s.instances.values()]) {
    if (inst.qmp.closed && !(await inst.alive())) {
      s.instances.delete(inst.id);
      inst.qmp.close();
      const m = inst.meta;
      await bury(s, inst.paths.dir, instanceHolder(inst), { instanceId: m.instanceId, vmUuid: m.vmUuid, vmName: m.vmName, pid: m.pid }, "QEMU exited", m.ramFile);
    }
  }
  for (const dir of [...s.unreachable.values()]) await adoptDir(s, dir);
}

async function readMeta(dir: string): Promise<{ instanceId: string; vmUuid: string; vmName: string; pid: number; ramFile?: string } | null> {
  try {
    const o = v.obj("meta", JSON.parse(await readFile(join(dir, "meta.json"), "utf8")) as unknown);
    const legacy = typeof o["spec"] === "object" && o["spec"] !== null ? (o["spec"] as Record<string, unknown>)["sharedMemoryPath"] : undefined;
    const ramFile = o["ramFile"] ?? legacy;
    return {
      instanceId: v.str("instanceId", o["instanceId"]),
      vmUuid: v.str("vmUuid", o["vmUuid"]),
      vmName: v.str("vmName", o["vmName"]),
      pid: v.int("pid", o["pid"], 1, 2 ** 31),
      ...(typeof ramFile === "string" ? { ramFile } : {}),
    };
  } catch (e) {
    if (isFerryError(e) || e instanceof SyntaxError || (e instanceof Error && "code" in e)) return null;
    throw e;
  }
}
