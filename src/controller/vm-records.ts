// The record of an operation on one host (local migration, save, restore):
// the same MigrationRecord as a migration between hosts, so `ferry
// migrations` lists it and `ferry migration show` tells it alike (docs/records.md).
// Each is one agent call, not resumable: it is recorded once it has ended
// (phase done, its one step timed as perform), with a journal entry for the
// call's start and one for its result or error, at their own times.
import { randomBytes } from "node:crypto";
import { toFerryError } from "../core/errors.ts";
import type { MigrationRecord, NicPlan, NicResult, RecordKind, RunsOn, VfRef } from "../migration/types.ts";
import type { VmRecord } from "../store/cluster.ts";
import type { ControllerContext } from "./context.ts";

export interface OperationNic {
  name: string;
  before: VfRef | null;
  after: VfRef | null;
  status: NicResult["status"];
  error?: string;
}

export interface OperationRecordInput {
  kind: Exclude<RecordKind, "migration">;
  vm: VmRecord;
  source: RunsOn;
  destination: string;
  startedAt: number;
  endedAt: number;
  /** The agent call's error: the operation failed. */
  error?: unknown;
  runsOn: RunsOn | null;
  nics: OperationNic[];
  file?: string;
  qemuBinary?: string;
  switchover?: { totalMs: number; downtimeMs: number } | null;
  dataMovedBytes?: number;
  warnings?: string[];
  /** What the agent answered (journaled). */
  result?: unknown;
}

const PREFIX: Record<OperationRecordInput["kind"], string> = { local: "l", save: "s", restore: "r" };

/** PF of each VF on `host`, from its agent's inventory (best effort: "" when it does not answer). */
export async function pfsOf(c: ControllerContext, host: string): Promise<Map<string, string>> {
  const inv = await c.agent(host).inventory({ timeoutMs: 5_000, signal: c.signal }).catch(() => undefined);
  return new Map((inv?.vfs ?? []).map((v) => [v.bdf, v.pf]));
}

export async function recordOperation(c: ControllerContext, o: OperationRecordInput): Promise<MigrationRecord> {
  const id = `${PREFIX[o.kind]}-${randomBytes(4).toString("hex")}`;
  const err = o.error === undefined ? undefined : toFerryError(o.error);
  const nics: NicPlan[] = o.vm.nics.map((n) => {
    const x = o.nics.find((y) => y.name === n.name);
    return { name: n.name, network: n.network, mode: n.mode, policy: n.policy, mac: n.mac, guestPorts: { ...n.guestPorts }, before: x?.before ?? null, after: x?.after ?? null };
  });
  const rec: MigrationRecord = {
    id,
    plan: {
      id, kind: o.kind,
      vm: { uuid: o.vm.uuid, name: o.vm.name, memoryMiB: o.vm.memoryMiB, vcpus: o.vm.vcpus },
      source: o.source,
      destination: { host: o.destination },
      nics,
      deadlines: { ...c.d.config.deadlines },
      ...(o.file === undefined ? {} : { file: o.file }),
      ...(o.qemuBinary === undefined ? {} : { qemuBinary: o.qemuBinary }),
    },
    version: 0,
    phase: "done",
    outcome: err ? "failed" : "succeeded",
    reason: err ? err.message : null,
    code: err ? err.code : null,
    refused: false,
    pending: null,
    runsOn: o.runsOn,
    nics: o.nics.map((n) => ({ name: n.name, policy: o.vm.nics.find((x) => x.name === n.name)?.policy ?? "optional", status: n.status, vf: n.after ?? (o.kind === "save" ? null : n.before), ...(n.error === undefined ? {} : { error: n.error }) })),
    prepared: null,
    switchover: o.switchover ?? null,
    pastPointOfNoReturn: err === undefined,
    cancelRequested: false,
    childId: null,
    warnings: o.warnings ?? [],
    timings: { perform: { startedAt: o.startedAt, endedAt: o.endedAt, ms: o.endedAt - o.startedAt }, done: { startedAt: o.endedAt } },
    ...(o.dataMovedBytes === undefined ? {} : { dataMovedBytes: o.dataMovedBytes }),
    createdAt: o.startedAt,
    updatedAt: o.endedAt,
  };
  const stored = await c.d.store.createMigration(rec);
  await c.d.store.appendJournal({ migrationId: id, phase: "perform", kind: "intent", data: { operation: o.kind, host: o.destination }, at: o.startedAt });
  await c.d.store.appendJournal({ migrationId: id, phase: "perform", kind: err ? "error" : "result", data: err ? { operation: o.kind, code: err.code, message: err.message } : { operation: o.kind, value: o.result ?? null }, at: o.endedAt });
  c.events.publish({ type: "outcome", migrationId: id, outcome: stored.outcome ?? "failed", reason: stored.reason ?? `${o.kind} of ${o.vm.name}`, code: stored.code, runsOn: stored.runsOn, at: o.endedAt });
  return stored;
}

/** Record it, never failing the operation over its record (logged instead). */
export async function tryRecord(c: ControllerContext, o: OperationRecordInput): Promise<MigrationRecord | undefined> {
  return recordOperation(c, o).catch((e: unknown) => {
    c.d.log.error({ err: e, vm: o.vm.name, kind: o.kind }, "cannot record the operation");
    return undefined;
  });
}
