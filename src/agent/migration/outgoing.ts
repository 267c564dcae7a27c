// A guest leaving its instance: the source's QEMU migration, driven to
// pre-switchover (a migration between hosts) or to completion (a local
// migration, a save), with Ferry's deadline on the guest's unplug and P10
// steering as failover primaries go.
import { FerryError } from "../../core/errors.ts";
import { deviceIds } from "../../qemu/argv.ts";
import type { Instance } from "../../qemu/instance.ts";
import { cancelMigration, completedInfo, startMigration, waitMigration } from "../../qemu/migration.ts";
import type { MigrationSetup } from "../../qemu/migration.ts";
import type { MigrationInfo } from "../../qmp/commands.ts";
import { msOfUs } from "../../migration/timeline.ts";
import type { UnplugMoments } from "../../migration/timeline.ts";
import type { StepContext } from "./context.ts";
import { prepareOutgoing, tlsRefusal } from "./transport.ts";
import { steer, steerInitial } from "./wiring.ts";

export interface MigrateOutOptions {
  setup: MigrationSetup;
  until: "pre-switchover" | "completed";
  unplugMs: number;
  timeoutMs: number;
  /**
   * Pause the guest once QEMU streams RAM (after the failover primaries'
   * wait-unplug, which needs a running guest): a save, after which the VM
   * does not run anyway, then writes a state nothing changes while it is read.
   */
  pauseWhenActive?: boolean;
  /** Each polled status (the converge deadline's numbers). */
  onProgress?: (info: MigrationInfo) => void;
  /** The migration started: when QMP `migrate` was sent (epoch ms, agent clock). */
  onStarted?: (migrateSentAtMs: number) => void;
  /** A failover NIC's primary released by the guest, once its steer to the standby has ended (steerOnUnplug). */
  onStandby?: (m: UnplugMoments) => void;
}

/**
 * P10 on the source: on UNPLUG_PRIMARY (the guest has released that primary;
 * QEMU keeps it on standby for a rollback) a failover NIC's frames go to its
 * standby now, not when the migration turns active (QEMU polls for that every
 * 250 ms). `onStandby` gets the unplug's moment (QEMU's timestamp) and, if it
 * steered, when the steer ended — after the steer: nothing delays it.
 * Returns the listener's remover.
 */
export function steerOnUnplug(ctx: StepContext, inst: Instance, signal: AbortSignal, onStandby?: (m: UnplugMoments) => void): () => void {
  const failovers = inst.meta.spec.nics.filter((n) => n.mode === "failover" && n.primary);
  return inst.qmp.onEvent((e) => {
    if (e.event !== "UNPLUG_PRIMARY") return;
    for (const nic of failovers) {
      if (e.data["device-id"] !== deviceIds(nic.name).primary) continue;
      void steer(ctx, nic, "standby", signal).catch(() => false).then((steered) => {
        onStandby?.({ nic: nic.name, unpluggedAtMs: msOfUs(e.timestampUs), ...(steered ? { steeredAtMs: ctx.clock.now() } : {}) });
      }).catch((err: unknown) => ctx.log?.warn({ nic: nic.name, err: String(err) }, "recording a failover NIC's unplug failed"));
    }
  });
}

/**
 * Start the source's migration and wait for `until`. Ferry owns the deadline
 * of QEMU's wait-unplug (failover primaries), which has none of its own; and
 * (P10) steers each failover NIC's frames to its standby once the guest has
 * released the primary. On any failure the migration is cancelled and the
 * frames go back to the primaries.
 */
export async function migrateOut(ctx: StepContext, inst: Instance, uri: string, o: MigrateOutOptions, signal: AbortSignal): Promise<MigrationInfo> {
  const offSteer = steerOnUnplug(ctx, inst, signal, o.onStandby);
  const started = ctx.clock.monotonic();
  let unplugStuck = false;
  let paused = false;
  const unplugWatch = new AbortController();
  try {
    await prepareOutgoing(ctx.transport ?? null, inst, uri, signal);
    let sentAt = 0;
    await startMigration(inst.qmp, uri, o.setup, signal, () => {
      sentAt = ctx.clock.now();
    });
    o.onStarted?.(sentAt);
    const info = await waitMigration(inst.qmp, {
      until: [o.until],
      timeoutMs: o.timeoutMs,
      signal: AbortSignal.any([signal, unplugWatch.signal]),
      clock: ctx.clock,
      onProgress: (i) => {
        o.onProgress?.(i);
        if (o.pauseWhenActive === true && !paused && i.status === "active") {
          paused = true;
          void inst.qmp.execute("stop", undefined, { signal }).catch(() => undefined);
        }
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
    const refused = e instanceof Error ? tlsRefusal(e.message) : undefined;
    if (refused !== undefined) {
      throw new FerryError("FERRY_ERR_MIGRATION_TLS", `the migration stream's TLS refused a peer (${refused}): the destination admits only the planned source host's certificate from the Ferry CA, and the source checks the destination's against its migration address; the guest keeps running here`, { cause: e, details: { qemu: refused } });
    }
    throw e;
  } finally {
    offSteer();
  }
}
