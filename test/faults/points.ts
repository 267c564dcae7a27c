// One fault-matrix point: a VM migrates between two lab hosts; a lab
// hold:<step> switch stops the migration at the phase under test; the fault
// lands there (a process SIGKILLed by pid, or the controller↔agent connection
// cut); the hold is released; what was killed is restarted (or the
// connection restored); the migration must end and the invariants hold
// (FaultCluster.check). Shared by the matrix and the soak.
import { FerryError, isFerryError } from "../../src/core/errors.ts";
import type { MigrationRecord } from "../../src/migration/types.ts";
import { systemClock } from "../../src/core/clock.ts";
import { waitForConsole } from "../../src/qemu/console.ts";
import type { FaultCluster } from "./cluster.ts";
import { heartbeatOf, waitFor } from "./cluster.ts";

/**
 * Where the fault lands. Plan: just before the operator's request (the
 * controller plans on facts its heartbeats have not yet corrected); for the
 * controller itself, right after the request was answered (the migration is
 * recorded; its first step may or may not have been sent). Every other
 * phase: the agent's hold point of that step (src/agent/faults.ts).
 */
export const PHASES = [
  { id: "plan", label: "Plan", hold: null },
  { id: "begin", label: "Begin", hold: { step: "begin", on: "source" } },
  { id: "prepare", label: "Prepare", hold: { step: "prepare", on: "destination" } },
  { id: "perform", label: "Perform, before pre-switchover", hold: { step: "perform", on: "source" } },
  { id: "pre-switchover", label: "Perform, at pre-switchover", hold: { step: "precheck", on: "destination" } },
  { id: "post-switchover", label: "Perform, after pre-switchover", hold: { step: "switchover", on: "source" } },
  { id: "finish", label: "Finish", hold: { step: "finish", on: "destination" } },
  { id: "confirm", label: "Confirm", hold: { step: "confirm", on: "source" } },
] as const;
export type PhaseId = (typeof PHASES)[number]["id"];

export const FAULT_KINDS = ["controller", "source-agent", "destination-agent", "source-qemu", "destination-qemu", "cut"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

const SWITCHED = new Set<PhaseId>(["post-switchover", "finish", "confirm"]);

/** The point needs a destination QEMU to kill. */
export function applicable(phase: PhaseId, fault: FaultKind): boolean {
  return !(fault === "destination-qemu" && (phase === "plan" || phase === "begin"));
}

/** The fault kills the only QEMU that holds the guest: the VM must be reported down. */
export function guestLost(phase: PhaseId, fault: FaultKind): boolean {
  if (fault === "source-qemu") return !SWITCHED.has(phase);
  if (fault === "destination-qemu") return SWITCHED.has(phase);
  return false;
}

export type GuestKind = "no-os" | "guest";

export interface TestVm {
  name: string;
  uuid: string;
  kind: GuestKind;
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
  const vm = await c.api.createVm(kind === "no-os"
    ? { name, host, memoryMiB: 64, nics: [{ network: "physnet1", mode: "failover", policy: "optional" }], noOs: true }
    : { name, host, memoryMiB: 256, nics: [{ network: "physnet1", mode: "failover", policy: "mandatory" }] });
  if (kind === "guest") {
    const inst = await c.agent(host).client.instance(vm.instanceId!);
    // ready, and its failover primary bonded, so that a migration has something to unplug
    await waitForConsole(inst.serialLog, /ferry-heartbeat \d+/, { timeoutMs: 60_000 });
  }
  if (arrive) {
    const r = await c.api.migrate({ vm: name, to: other(c, host), deadlines: deadlinesFor(kind) });
    if (r.kind === "started") await c.waitDone(r.migration.id);
  }
  return { name, uuid: vm.uuid, kind };
}

/** Remove a VM that is down (or anything left of it): stop every instance of it, delete the record. */
export async function removeVm(c: FaultCluster, vm: TestVm): Promise<void> {
  for (const i of await c.instancesOf(vm.uuid)) await c.agent(i.host).client.stopInstance(i.instanceId).catch(() => undefined);
  await c.api.deleteVm(vm.name).catch(() => undefined);
}

/**
 * Deadlines of a matrix migration: precheck waits out a hold at
 * pre-switchover; a no-OS guest never brings its failover primary back, so
 * Finish gives up on it quickly (its NIC is optional: the outcome is
 * degraded, which is that guest's success).
 */
export function deadlinesFor(kind: GuestKind): Record<string, number> {
  return kind === "no-os" ? { precheckMs: 30_000, primaryBackMs: 300 } : { precheckMs: 30_000 };
}

export interface PointResult {
  phase: PhaseId;
  fault: FaultKind;
  kind: GuestKind;
  /** Short: the terminal outcome, or "refused" when the request itself was refused. */
  outcome: string;
  reason: string;
  runsOn: string;
  down: boolean;
  violations: string[];
  ms: number;
}

const other = (c: FaultCluster, host: string): string => [...c.agents.keys()].find((h) => h !== host)!;

/** Run one point with `vm` (running); returns the result (the VM may be down afterwards: result.down). */
export async function runPoint(c: FaultCluster, vm: TestVm, phase: PhaseId, fault: FaultKind): Promise<PointResult> {
  const started = systemClock.monotonic();
  const spec = PHASES.find((p) => p.id === phase)!;
  const before = await c.api.vm(vm.name);
  const src = before.host;
  const dst = other(c, src);
  const srcInst = await c.agent(src).client.instance(before.instanceId!);
  const heartbeatAfter = vm.kind === "guest" ? await heartbeatOf(srcInst.serialLog) : undefined;
  const holdHost = spec.hold === null ? src : spec.hold.on === "source" ? src : dst;
  const down = guestLost(phase, fault);
  let restart: (() => Promise<void>) | null = null;

  const inject = async (migrationId: string | null): Promise<void> => {
    switch (fault) {
      case "controller":
        await c.killController();
        restart = () => c.startController();
        return;
      case "source-agent":
      case "destination-agent": {
        const h = fault === "source-agent" ? src : dst;
        await c.killAgent(h);
        restart = () => c.restartAgent(h);
        return;
      }
      case "source-qemu":
        await c.killQemu(src, srcInst.instanceId);
        return;
      case "destination-qemu": {
        const incoming = (await c.instancesOf(vm.uuid)).find((i) => i.host === dst);
        if (incoming === undefined) throw new Error(`${phase} (${String(migrationId)}): no destination instance to kill`);
        await c.killQemu(dst, incoming.instanceId);
        return;
      }
      case "cut":
        c.cut(holdHost);
        restart = async () => {
          await systemClock.sleep(2_000); // long enough for the controller to meet the cut
          c.restore(holdHost);
        };
        return;
    }
  };

  if (spec.hold) await c.arm(holdHost, `hold:${spec.hold.step}`, { once: true, holdMs: 60_000 });
  else if (fault === "controller") await c.arm(src, "hold:begin", { once: true, holdMs: 60_000 });
  if (phase === "plan" && fault !== "controller") await inject(null);

  let id: string | null = null;
  try {
    const r = await c.api.migrate({ vm: vm.name, to: dst, deadlines: deadlinesFor(vm.kind) });
    if (r.kind !== "started") throw new Error(`migrate answered ${r.kind}`);
    id = r.migration.id;
  } catch (e) {
    if (!isFerryError(e) || e.code === "FERRY_ERR_CONTROLLER") throw e;
    // refused: nothing may have changed
    if (restart) await (restart as () => Promise<void>)();
    await clearAll(c);
    const v = await c.check(vm, null, { down, ...(heartbeatAfter === undefined ? {} : { heartbeatAfter }) });
    return { phase, fault, kind: vm.kind, outcome: "refused", reason: `${e.code}: ${e.message}`, runsOn: `${before.host}`, down, violations: v, ms: systemClock.monotonic() - started };
  }
  if (phase === "plan" && fault === "controller") await inject(id);
  if (spec.hold) {
    await c.waitHolding(holdHost, spec.hold.step, id);
    await inject(id);
  }
  // the step goes on (on a live agent) and meets what the fault left
  if (c.agents.get(holdHost)!.proc.child.exitCode === null && c.agents.get(holdHost)!.proc.child.signalCode === null) await c.clearFaults(holdHost);
  if (restart) await (restart as () => Promise<void>)();
  await clearAll(c);
  const rec = await c.waitDone(id, 150_000);
  const v = await settle(c, vm, rec, down, heartbeatAfter);
  return {
    phase, fault, kind: vm.kind, outcome: rec.outcome ?? "none", reason: `${rec.code ?? ""} ${rec.reason ?? ""}`.trim(),
    runsOn: rec.runsOn ? rec.runsOn.host : "nowhere", down, violations: v, ms: systemClock.monotonic() - started,
  };
}

/** Invariants, given a few seconds to converge (an agent reaps a dead QEMU on its own tick). */
async function settle(c: FaultCluster, vm: TestVm, rec: MigrationRecord, down: boolean, heartbeatAfter: number | undefined): Promise<string[]> {
  let v: string[] = [];
  await waitFor("invariants", async () => {
    v = await c.check(vm, await c.api.migration(rec.id), { down, ...(heartbeatAfter === undefined ? {} : { heartbeatAfter }) });
    return v.length === 0 ? true : undefined;
  }, down ? 25_000 : 15_000, 500).catch(() => undefined);
  return v;
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
