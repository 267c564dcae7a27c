// What every migration step on this host works with (StepContext: the
// agent's parts the steps need), and the rules all steps follow: steps of one
// migration run one at a time (serial), a migration that ended here refuses
// its steps (unlessEnded), tap and lease-holder names.
import { createHash } from "node:crypto";
import type { Clock } from "../../core/clock.ts";
import type { Logger } from "../../core/log.ts";
import { FerryError } from "../../core/errors.ts";
import type { Runner } from "../../core/run.ts";
import type { UsableVf } from "../../host/config.ts";
import type { LeaseHolder, LeaseStore, RecordStore } from "../../host/leases.ts";
import type { Accel } from "../../qemu/accel.ts";
import type { Instance } from "../../qemu/instance.ts";
import type { Faults } from "../faults.ts";
import type { VfLife } from "../vf-life.ts";
import { endedGuard, markEnded } from "./ended.ts";
import type { MigrationTransport } from "./transport.ts";

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
  /** Real VFs set up before QEMU sees them and reset when let go (../vf-life.ts). */
  vfLife: VfLife;
  qemuBinary?: string;
  /** Lab fault switches (absent or disabled on production hosts). */
  faults?: Faults;
  /** This host's migration network (host.yaml migration:, set up at agent start); null/absent: incoming migrations listen on 127.0.0.1. */
  transport?: MigrationTransport | null;
  /** HostConfig.switchoverGraceMs: how long past the destination check the source waits at pre-switchover (default 500). */
  switchoverGraceMs?: number;
  log?: Logger;
}

/**
 * Steps of one migration on one host that must not overlap run one after
 * the other: prepare and abort on the destination (an abort sent while the
 * coordinator's prepare call was cancelled must find the instance that
 * prepare goes on to start), perform and confirm on the source. A re-sent
 * step waits for the one still running, then answers from its record.
 */
const inFlight = new Map<string, Promise<unknown>>();
export async function serial<T>(ctx: StepContext, migrationId: string, fn: () => Promise<T>): Promise<T> {
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
export async function unlessEnded<T>(ctx: StepContext, id: string, step: string, fn: () => Promise<T>, ends = false): Promise<T> {
  const again = endedGuard(ctx.records, ctx.host, id, step);
  if (again) return again.answer as T;
  const answer = await fn();
  if (ends) markEnded(ctx.records, ctx.clock.now(), id, step, answer);
  return answer;
}

export const migrationHolder = (migrationId: string, vmUuid: string, expiresAt: number): LeaseHolder => ({ kind: "migration", migrationId, vmUuid, expiresAt });
export const instanceHolder = (vmUuid: string, instanceId: string): LeaseHolder => ({ kind: "instance", vmUuid, instanceId });

/** Tap names: ≤ 15 chars, derived from instance and NIC so both ends of a migration differ. */
export function tapName(instanceId: string, nic: string, half: "s" | "p"): string {
  return `ft${createHash("sha256").update(`${instanceId}/${nic}`).digest("hex").slice(0, 10)}${half}`;
}

export function instanceOf(ctx: StepContext, id: string): Instance {
  const inst = ctx.instances.get(id);
  if (!inst) throw new FerryError("FERRY_ERR_NOT_FOUND", `no instance ${id} on ${ctx.host}`, { details: { instanceId: id } });
  return inst;
}

export function vfOf(ctx: StepContext, bdf: string): UsableVf {
  const vf = ctx.vfs().find((v) => v.bdf === bdf);
  if (!vf) throw new FerryError("FERRY_ERR_NOT_FOUND", `VF ${bdf} is not a usable VF of ${ctx.host}`, { details: { vf: bdf } });
  return vf;
}
