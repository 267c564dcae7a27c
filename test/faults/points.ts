// One fault-matrix point (plan.ts): from a healthy cluster, a VM migrates
// between two lab hosts; a lab hold:<step> switch stops the migration at the
// phase under test (the record must be in that phase); the fault lands there
// (a process SIGKILLed or SIGSTOPped by pid, or the controller↔agent
// connection cut); the hold is released; after the fault's duration what was
// killed is restarted (the QEMU continued, the connection restored); the
// migration must end and the invariants hold (FaultCluster.check: /proc,
// instances, leases), the guest must not have stood still past its deadline
// and a downtime above its limit must be a warning. Shared by the matrix and
// the switch tests.
import { FerryError, isFerryError } from "../../src/core/errors.ts";
import type { MigrationRecord } from "../../src/migration/types.ts";
import { systemClock } from "../../src/core/clock.ts";
import { bootMemsum } from "../../src/lab/memcheck.ts";
import { waitForConsole } from "../../src/qemu/console.ts";
import type { FaultCluster } from "./cluster.ts";
import { heartbeatOf, waitFor } from "./cluster.ts";
import type { ConnectivityReport, PauseReport } from "./observe.ts";
import { PauseWatch, SETTLE_MS, watchConnectivity } from "./observe.ts";
import type { MatrixPoint } from "./plan.ts";
import { downtimeViolation, durationMs, guestLost, MATRIX_DEADLINES, pauseBudgetMs, PHASES } from "./plan.ts";

export type { Duration, FaultKind, MatrixPoint, PhaseId } from "./plan.ts";
export { applicable, FAULT_KINDS, guestLost, PHASES } from "./plan.ts";

export type GuestKind = "no-os" | "guest";

export interface TestVm {
  name: string;
  uuid: string;
  kind: GuestKind;
  /** The real guest's memory checksum as it printed it at boot (src/lab/memcheck.ts); absent for a no-OS guest. */
  bootSum?: string;
}

let seq = 0;

/**
 * A new VM on `host`: a no-OS guest with an optional failover NIC, or the
 * real test guest with a mandatory one (booted, heartbeating). With
 * `arrive`, it is migrated once to the other host first, as most
 * VMs in a cluster have been: its instance then arrived by migration (QEMU
 * answers query-migrate for the incoming side; a fault must not mistake that
 * for its own outgoing migration).
 */
export async function createVm(c: FaultCluster, kind: GuestKind, host: string, prefix: string = kind, arrive = false): Promise<TestVm> {
  const name = `${prefix}-${++seq}`;
  let bootSum: string | undefined;
  const vm = await c.api.createVm(kind === "no-os"
    ? { name, host, memoryMiB: 64, nics: [{ network: "physnet1", mode: "failover", policy: "optional" }], noOs: true }
    : { name, host, memoryMiB: 256, nics: [{ network: "physnet1", mode: "failover", policy: "mandatory" }] });
  if (kind === "guest") {
    const inst = await c.agent(host).client.instance(vm.instanceId!);
    // ready, and its failover primary bonded, so that a migration has something to unplug
    const serialLog = c.hostPath(host, inst.serialLog);
    await waitForConsole(serialLog, /ferry-heartbeat \d+/, { timeoutMs: 60_000 });
    bootSum = await bootMemsum(serialLog, { timeoutMs: 10_000 });
  }
  if (arrive) {
    const r = await c.api.migrate({ vm: name, to: other(c, host), deadlines: deadlinesFor(kind) });
    if (r.kind === "started") await c.waitDone(r.migration.id);
  }
  return { name, uuid: vm.uuid, kind, ...(bootSum === undefined ? {} : { bootSum }) };
}

/** Remove a VM that is down (or anything left of it): stop every instance of it, delete the record. */
export async function removeVm(c: FaultCluster, vm: TestVm): Promise<void> {
  for (const i of await c.instancesOf(vm.uuid)) await c.agent(i.host).client.stopInstance(i.instanceId).catch(() => undefined);
  await c.api.deleteVm(vm.name).catch(() => undefined);
}

/**
 * Deadlines of a matrix migration beyond the cluster's (MATRIX_DEADLINES): a
 * no-OS guest never brings its failover primary back, so Finish gives up on
 * it quickly (its NIC is optional: the outcome is degraded, which is that
 * guest's success).
 */
export function deadlinesFor(kind: GuestKind): Record<string, number> {
  return kind === "no-os" ? { ...MATRIX_DEADLINES, primaryBackMs: 300 } : { ...MATRIX_DEADLINES };
}

export interface PointResult extends MatrixPoint {
  kind: GuestKind;
  /** Short: the terminal outcome, or "refused" when the request itself was refused. */
  outcome: string;
  reason: string;
  runsOn: string;
  down: boolean;
  /** How long the guest stood still (heartbeats for the real guest, else its instances' run state), and the most it may. */
  pauseMs: number | null;
  pauseBudgetMs: number;
  /** QEMU's downtime as the record reports it. */
  downtimeMs: number | null;
  violations: string[];
  /** The migration's id (null: refused before it had one). */
  migrationId: string | null;
  /** The real guest's NIC on the fabric: its longest silence from before the fault until stable after the end (null: not probed). */
  nicGapMs: number | null;
  ms: number;
}

const other = (c: FaultCluster, host: string): string => [...c.agents.keys()].find((h) => h !== host)!;

/** Run one point with `vm` (running), from a healthy cluster; returns the result (the VM may be down afterwards: result.down). */
export async function runPoint(c: FaultCluster, vm: TestVm, point: MatrixPoint): Promise<PointResult> {
  const { phase, fault } = point;
  await c.waitHealthy();
  const started = systemClock.monotonic();
  const spec = PHASES.find((p) => p.id === phase)!;
  const before = await c.api.vm(vm.name);
  const src = before.host;
  const dst = other(c, src);
  const srcInst = await c.agent(src).client.instance(before.instanceId!);
  const heartbeatAfter = vm.kind === "guest" ? await heartbeatOf(c.hostPath(src, srcInst.serialLog)) : undefined;
  const holdHost = spec.hold === null ? src : spec.hold.on === "source" ? src : dst;
  const down = guestLost(phase, fault);
  const holdForMs = point.duration === null ? 0 : durationMs(point.duration, MATRIX_DEADLINES.stepMs);
  let injectedAt = 0;
  /** What undoes the fault (restart, SIGCONT, restore), once injected. */
  const undo: { end: (() => Promise<void>) | null } = { end: null };

  const inject = async (migrationId: string | null): Promise<void> => {
    injectedAt = systemClock.monotonic();
    switch (fault) {
      case "controller":
        await c.killController();
        undo.end = () => c.startController();
        return;
      case "source-agent":
      case "destination-agent": {
        const h = fault === "source-agent" ? src : dst;
        await c.killAgent(h);
        undo.end = () => c.restartAgent(h);
        return;
      }
      case "source-qemu":
        await c.killQemu(src, srcInst.instanceId);
        return;
      case "source-qemu-stop": {
        const pid = await c.stopQemu(src, srcInst.instanceId);
        undo.end = () => Promise.resolve(c.contQemu(pid));
        return;
      }
      case "destination-qemu":
      case "destination-qemu-stop": {
        const incoming = (await c.instancesOf(vm.uuid)).find((i) => i.host === dst);
        if (incoming === undefined) throw new Error(`${phase} (${String(migrationId)}): no destination instance to ${fault === "destination-qemu" ? "kill" : "stop"}`);
        if (fault === "destination-qemu") {
          await c.killQemu(dst, incoming.instanceId);
          return;
        }
        const pid = await c.stopQemu(dst, incoming.instanceId);
        undo.end = () => Promise.resolve(c.contQemu(pid));
        return;
      }
      case "cut":
        c.cut(holdHost);
        undo.end = () => Promise.resolve(c.restore(holdHost));
        return;
    }
  };
  /** Hold the fault for its duration (from when it was injected), then undo it. */
  const endFault = async (): Promise<void> => {
    const end = undo.end;
    if (end === null) return;
    undo.end = null;
    await systemClock.sleep(Math.max(0, injectedAt + holdForMs - systemClock.monotonic()));
    await end();
  };

  const watch = new PauseWatch(vm.uuid, () => [...c.agents.values()].map((a) => ({ client: a.client, path: (p: string) => c.hostPath(a.name, p) })));
  // connectivity, where the guest can answer (the real guest on a fabric): from before the fault until stable after the end
  const address = before.nics[0]?.address.split("/")[0];
  let net: Awaited<ReturnType<typeof watchConnectivity>> | null = null;
  let id: string | null = null;
  let nicGapMs: number | null = null;
  const result = (o: { outcome: string; reason: string; runsOn: string; violations: string[]; pause: PauseReport; downtimeMs: number | null }): PointResult => ({
    ...point, kind: vm.kind, outcome: o.outcome, reason: o.reason, runsOn: o.runsOn, down, violations: o.violations, downtimeMs: o.downtimeMs, migrationId: id, nicGapMs,
    pauseMs: down ? null : (o.pause.heartbeatGapMs ?? o.pause.runStatePauseMs), pauseBudgetMs: pauseBudgetMs(point), ms: systemClock.monotonic() - started,
  });
  try {
    if (vm.kind === "guest" && c.fabric !== null && address !== undefined) net = await watchConnectivity(c.fabric.netns, address);
    if (spec.hold) await c.arm(holdHost, `hold:${spec.hold.step}`, { once: true, holdMs: 60_000 });
    else if (fault === "controller") await c.arm(src, "hold:begin", { once: true, holdMs: 60_000 });
    if (phase === "plan" && fault !== "controller") await inject(null);

    try {
      const r = await c.api.migrate({ vm: vm.name, to: dst, deadlines: deadlinesFor(vm.kind) });
      if (r.kind !== "started") throw new Error(`migrate answered ${r.kind}`);
      id = r.migration.id;
    } catch (e) {
      if (!isFerryError(e) || e.code === "FERRY_ERR_CONTROLLER") throw e;
      // refused: nothing may have changed
      await endFault();
      await clearAll(c);
      const v = await c.check(vm, null, { down, ...(heartbeatAfter === undefined ? {} : { heartbeatAfter }), ...(vm.bootSum === undefined ? {} : { bootSum: vm.bootSum }) });
      const pause = await watch.stop();
      v.push(...pauseViolations(point, down, pause));
      return result({ outcome: "refused", reason: `${e.code}: ${e.message}`, runsOn: before.host, violations: v, pause, downtimeMs: null });
    }
    if (phase === "plan" && fault === "controller") await inject(id);
    if (spec.hold) {
      await c.waitHolding(holdHost, spec.hold.step, id);
      // the point is only worth something if the migration really is where the fault should land
      const at = await c.api.migration(id);
      if (at.phase !== spec.recordPhase) throw new Error(`${spec.label}: the migration ${id} holds at ${spec.hold.step} but its record is in phase ${at.phase}, not ${spec.recordPhase}`);
      await inject(id);
    }
    // the step goes on (on a live agent) and meets what the fault left
    if (c.agents.get(holdHost)!.proc.child.exitCode === null && c.agents.get(holdHost)!.proc.child.signalCode === null) await c.clearFaults(holdHost).catch(() => undefined);
    await endFault();
    await clearAll(c);
    const rec = await c.waitDone(id, 150_000);
    const endedAt = systemClock.now();
    const v = await settle(c, vm, rec, down, heartbeatAfter);
    const conn = net !== null && !down ? await net.untilStable(endedAt) : null;
    const pause = await watch.stop();
    if (conn !== null) {
      nicGapMs = conn.longestGapMs;
      v.push(...connectivityViolations(point, conn, pause.heartbeatGapMs));
    }
    v.push(...pauseViolations(point, down, pause));
    const dv = downtimeViolation(await c.api.migration(id));
    if (dv !== null) v.push(dv);
    return result({
      outcome: rec.outcome ?? "none", reason: `${rec.code ?? ""} ${rec.reason ?? ""}`.trim(), runsOn: rec.runsOn ? rec.runsOn.host : "nowhere",
      violations: v, pause, downtimeMs: rec.switchover?.downtimeMs ?? null,
    });
  } finally {
    await endFault().catch(() => undefined);
    await watch.stop();
    await net?.stop();
  }
}

/** After the end the NIC answers again within UNTIL_STABLE_MS and stays steady; no gap longer than the guest's pause deadline and a second. */
export const UNTIL_STABLE_MS = 2_000;
/**
 * What the NIC's longest silence may exceed the guest's own longest pause
 * (heartbeats) by: the re-plugged primary's short second outage and the
 * probe's timing. More means the network waited on something the guest did
 * not (before the destination steered to re-plugged primaries on its own, the
 * controller's absence: 3.1 s of silence after a 0.3 s pause).
 */
export const NIC_BEYOND_PAUSE_MS = 1_500;

function connectivityViolations(point: MatrixPoint, r: ConnectivityReport, guestPauseMs: number | null): string[] {
  const v: string[] = [];
  const gapBudget = pauseBudgetMs(point) + 1_000;
  if (!r.stable) v.push(`the guest's NIC never answered steadily for ${SETTLE_MS / 1000} s after the migration ended (longest gap ${r.longestGapMs} ms)`);
  else if (r.untilStableMs > UNTIL_STABLE_MS) v.push(`the guest's NIC was stable only ${r.untilStableMs} ms after the migration ended (more than ${UNTIL_STABLE_MS} ms)`);
  if (r.longestGapMs > gapBudget) v.push(`the guest's NIC did not answer for ${r.longestGapMs} ms (more than ${gapBudget} ms)`);
  else if (guestPauseMs !== null && r.longestGapMs > guestPauseMs + NIC_BEYOND_PAUSE_MS) {
    v.push(`the guest's NIC did not answer for ${r.longestGapMs} ms though the guest stood still at most ${guestPauseMs} ms (more than ${NIC_BEYOND_PAUSE_MS} ms beyond: its network waited on something the guest did not)`);
  }
  return v;
}

function pauseViolations(point: MatrixPoint, down: boolean, pause: PauseReport): string[] {
  if (down) return [];
  const budget = pauseBudgetMs(point);
  const ms = pause.heartbeatGapMs ?? pause.runStatePauseMs;
  const how = pause.heartbeatGapMs === null ? "no instance running, by QMP" : "no heartbeat";
  return ms > budget ? [`the guest stood still ${ms} ms (${how}), past its deadline of ${budget} ms`] : [];
}

/** Invariants, given a few seconds to converge (an agent reaps a dead QEMU on its own tick). */
function settle(c: FaultCluster, vm: TestVm, rec: MigrationRecord, down: boolean, heartbeatAfter: number | undefined): Promise<string[]> {
  return c.checkSettled(vm, rec.id, { down, ...(heartbeatAfter === undefined ? {} : { heartbeatAfter }), ...(vm.bootSum === undefined ? {} : { bootSum: vm.bootSum }) }, down ? 25_000 : 15_000);
}

/** After a point that went wrong: let every migration end, then remove the VM. */
export async function salvage(c: FaultCluster, vm: TestVm): Promise<void> {
  await clearAll(c).catch(() => undefined);
  await waitFor("every migration done", async () => ((await c.api.migrations()).every((m) => m.phase === "done") ? true : undefined), 120_000, 500).catch(() => undefined);
  await removeVm(c, vm);
}

async function clearAll(c: FaultCluster): Promise<void> {
  for (const a of c.agents.values()) {
    await waitFor(`${a.name} answering`, async () => {
      await c.clearFaults(a.name);
      return true;
    }, 30_000);
  }
  await waitFor("the controller answering", async () => (await c.api.hosts()).length > 0 ? true : undefined, 30_000).catch((e: unknown) => {
    throw new FerryError("FERRY_ERR_CONTROLLER", String(e));
  });
}
