// Reconciling with the controller (heartbeat.ts): the migrations this host
// holds anything of, and letting go of those the controller says have ended.
import { queryStatus } from "../../qmp/commands.ts";
import type { StepContext } from "./context.ts";
import { instanceHolder, serial } from "./context.ts";
import type { DestRecord } from "./destination.ts";
import { abortNow, DEST } from "./destination.ts";
import { confirmEnded, unconfirmedEnded } from "./ended.ts";
import { SRC } from "./source.ts";
import { releaseHeld } from "../vf-life.ts";

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
    out.releasedVfs.push(...(await releaseHeld(ctx.vfLife, ctx.leases, { kind: "migration", migrationId: id })));
    ctx.records.delete(DEST, id);
    ctx.records.delete(SRC, id);
    confirmEnded(ctx.records, ctx.clock.now(), id);
    return out;
  });
}
