// Local migration (seed 004: a QEMU upgrade in place): move a running VM to a
// new QEMU instance on the same host. Guest RAM is mapped from a shared file
// (memory-backend-file,share=on) by both instances and the migration uses
// x-ignore-shared, so RAM is not copied. Two instances of one VM coexist
// meanwhile: instance ids and runtime dirs keep them apart, and the VF leases
// move from the old instance to the new one at the end.
//
// NIC modes: emulated NICs migrate natively; failover primaries are unplugged
// by QEMU (UNPLUG_PRIMARY) and re-plugged on the new instance; ephemeral
// primaries are unplugged first and re-plugged on the same VF afterwards.
import { FerryError } from "../../core/errors.ts";
import type { NicSpec, VmSpec } from "../../model/vm.ts";
import { newInstanceId } from "../../qemu/instance.ts";
import type { Instance } from "../../qemu/instance.ts";
import type { MigrationInfo } from "../../qmp/commands.ts";
import type { StepContext } from "./context.ts";
import { discard, startIncoming, waitRunning } from "./lifecycle.ts";
import { bringBackNics, replugMissing, unplugEphemerals } from "./nics.ts";
import { migrateOut } from "./outgoing.ts";
import { steerInitial } from "./wiring.ts";
import type { LocalMigrateReply } from "../../wire/instance-ops.ts";

export interface LocalMigrateInput {
  instanceId: string;
  /** The QEMU binary of the new instance (an upgrade), one the host allows (Agent.allowedQemuBinary); default: the old instance's. */
  qemuBinary?: string;
  unplugMs: number;
  timeoutMs: number;
  primaryBackMs: number;
}

export type LocalMigrateResult = LocalMigrateReply;

/** Tap backends are per instance: give the new instance fresh ones (withTaps names them). */
function unwired(nic: NicSpec): NicSpec {
  const out: NicSpec = { ...nic };
  if (nic.standby) out.standby = { kind: "none" };
  if (nic.primary?.kind === "stand-in") out.primary = { ...nic.primary, backend: { kind: "none" } };
  return out;
}

export async function localMigrate(ctx: StepContext, input: LocalMigrateInput, signal: AbortSignal): Promise<LocalMigrateResult> {
  const old = ctx.instances.get(input.instanceId);
  if (!old) throw new FerryError("FERRY_ERR_NOT_FOUND", `no instance ${input.instanceId} on ${ctx.host}`, { details: { instanceId: input.instanceId } });
  const spec = old.meta.spec;
  const ramFile = old.meta.ramFile;
  if (ramFile === undefined) {
    throw new FerryError("FERRY_ERR_STATE", `VM ${spec.name} does not map its RAM from a shared file, so a local migration would copy all of it: create VMs meant for local migration with shared memory ('ferry vm create … --shared-memory'), or migrate this one to another host`, { details: { vm: spec.name } });
  }
  const qemuBinary = input.qemuBinary ?? old.meta.qemuBinary;
  // ephemeral primaries leave first (Ferry's deadline); remember them to re-plug on whichever instance runs after
  const planned: Record<string, string | null> = {};
  for (const nic of spec.nics) planned[nic.name] = nic.primary?.kind === "stand-in" ? nic.primary.vf : nic.primary?.kind === "vfio" ? nic.primary.host : null;
  const unplugged: string[] = [];
  const replugOld = async (): Promise<void> => {
    await replugMissing(old, unplugged, signal);
    await steerInitial(ctx, spec, signal).catch(() => undefined);
  };
  try {
    await unplugEphemerals(ctx, old, [], input.unplugMs, signal, (n) => unplugged.push(n));
  } catch (e) {
    await replugOld();
    throw e;
  }

  const newId = newInstanceId();
  const next: VmSpec = { ...spec, nics: spec.nics.map((n) => (n.mode === "ephemeral" ? { ...unwired(n), primary: undefined } : unwired(n))) };
  for (const n of next.nics) if (n.primary === undefined) delete n.primary;
  let inst: Instance;
  let wired: VmSpec;
  let info: MigrationInfo;
  try {
    // the new instance maps the old one's RAM file (x-ignore-shared: RAM is not copied)
    const incoming = await startIncoming(ctx, { spec: next, instanceId: newId, listen: "tcp:127.0.0.1:0", setup: { capabilities: { "x-ignore-shared": true } }, qemuBinary, ram: { file: ramFile, create: false } }, signal);
    ({ inst, spec: wired } = incoming);
    info = await migrateOut(ctx, old, incoming.uri, { setup: { capabilities: { "x-ignore-shared": true } }, until: "completed", unplugMs: input.unplugMs, timeoutMs: input.timeoutMs }, signal);
  } catch (e) {
    const started = ctx.instances.get(newId);
    if (started) await discard(ctx, started);
    await replugOld();
    throw e;
  }
  // past completion the new instance is the VM: the old one is paused for good
  await waitRunning(ctx, inst, signal);
  const nics = await bringBackNics(ctx, inst, wired, planned, { primaryBackMs: input.primaryBackMs, replugFails: false }, signal);
  await inst.saveMeta();
  const movedVfs = ctx.leases.transferHeldBy({ kind: "instance", instanceId: old.id }, { kind: "instance", vmUuid: spec.uuid, instanceId: inst.id });
  await discard(ctx, old);
  return {
    oldInstanceId: old.id,
    newInstanceId: inst.id,
    qemuBinary,
    totalMs: info.totalTimeMs ?? 0,
    downtimeMs: info.downtimeMs ?? 0,
    transferredBytes: info.ram?.transferred ?? 0,
    ramBytes: info.ram?.total ?? spec.memoryMiB * 1024 * 1024,
    nics,
    movedVfs,
  };
}
