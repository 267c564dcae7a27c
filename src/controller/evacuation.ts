// Host drain and evacuation. Draining a host sets its `drain` flag: the host
// is "draining" whenever it is not down (heartbeats and a down spell keep it
// so), and the scheduler never picks it as a destination (HOST_DRAINING).
// Evacuating a host drains it, plans all its running VMs together
// (planEvacuation: no VF promised twice, a VM that fits nowhere reported with
// every host's reason), then migrates them in plan order, at most `parallel`
// at a time, each to its planned host and VFs, the total bandwidth cap split
// evenly over the migrations that can be in flight. The evacuation's record
// lives in memory (a controller restart resumes the migrations themselves but
// forgets the evacuation); the host record marks it in progress (evacuating,
// with its options), so that with several controllers on etcd the one that
// takes over the leadership goes on with it (resume()).
import { MiB } from "../core/units.ts";
import { randomBytes } from "node:crypto";
import type { Clock } from "../core/clock.ts";
import { FerryError, toFerryError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { MigrationRecord } from "../migration/types.ts";
import type { ClusterSnapshot, PlacementVm } from "../model/cluster.ts";
import { planEvacuation } from "../scheduler/evacuate.ts";
import type { Destination } from "../scheduler/types.ts";
import type { HostRecord, VmRecord } from "../store/cluster.ts";
import type { EvacuationItem, EvacuationView, ItemOutcome } from "../wire/evacuation.ts";
import { DEFAULT_PARALLEL, MAX_BANDWIDTH_MIBPS, MAX_PARALLEL } from "../wire/evacuation.ts";
import type { Controller } from "./controller.ts";

/** Finished evacuations kept for GET. */
const KEEP = 50;

export interface EvacuateInput {
  parallel?: number;
  maxBandwidthMiBps?: number;
  plan?: boolean;
}

export interface EvacuationDeps {
  controller: Pick<Controller, "snapshot" | "migrate" | "getMigration" | "cluster">;
  clock: Clock;
  log: Logger;
  /** How often a running migration is looked at (default 250 ms). */
  pollMs?: number;
}

// ------------------------------------------------------------------ pure parts

export function placementVm(vm: VmRecord): PlacementVm {
  return {
    uuid: vm.uuid, name: vm.name, memoryMiB: vm.memoryMiB, vcpus: vm.vcpus, host: vm.host,
    nics: vm.nics.map((n) => ({ name: n.name, network: n.network, mode: n.mode, policy: n.policy, ...(n.vf === null ? {} : { currentVf: n.vf }) })),
  };
}

export function validateEvacuateInput(input: EvacuateInput): { parallel: number; maxBandwidthMiBps: number | null; plan: boolean } {
  const parallel = input.parallel ?? DEFAULT_PARALLEL;
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > MAX_PARALLEL) {
    throw new FerryError("FERRY_ERR_INVALID", `parallel must be an integer from 1 to ${MAX_PARALLEL} (got ${String(parallel)})`, { details: { parallel } });
  }
  const bw = input.maxBandwidthMiBps ?? null;
  if (bw !== null && (!Number.isInteger(bw) || bw < 1 || bw > MAX_BANDWIDTH_MIBPS)) {
    throw new FerryError("FERRY_ERR_INVALID", `maxBandwidthMiBps must be an integer from 1 to ${MAX_BANDWIDTH_MIBPS} (got ${String(bw)})`, { details: { maxBandwidthMiBps: bw } });
  }
  return { parallel, maxBandwidthMiBps: bw, plan: input.plan === true };
}

/** The total cap split evenly over the migrations that can be in flight at once (never more than the total). */
export function perMigrationBytes(totalMiBps: number | null, parallel: number, migrations: number): number | null {
  if (totalMiBps === null) return null;
  const inFlight = Math.max(1, Math.min(parallel, migrations));
  return Math.max(1, Math.floor((totalMiBps * MiB) / inFlight));
}

function blank(vm: VmRecord): Omit<EvacuationItem, "to" | "order" | "vfs" | "status" | "outcome" | "reason"> {
  return { vm: vm.name, uuid: vm.uuid, from: vm.host, migrationId: null, phase: null, runsOn: vm.host, code: null, startedAt: null, endedAt: null };
}

/**
 * Plan the evacuation of `host`: its running VMs placed together (never on
 * `host`), the others skipped with the reason. Items come in plan order
 * (placed first), then unplaced, then skipped. Also returns each placed VM's
 * destination, for the migrations. `reservedVfs`: VFs promised elsewhere
 * (migrations in flight), never planned here.
 */
export function planHostEvacuation(host: string, snapshot: ClusterSnapshot, vms: readonly VmRecord[], reservedVfs?: ReadonlySet<string>): {
  plan: EvacuationView["plan"];
  items: EvacuationItem[];
  destinations: Map<string, Destination>;
} {
  const mine = vms.filter((v) => v.host === host);
  const movable = mine.filter((v) => v.state === "running" && v.instanceId !== null);
  // never `host` itself: every VM here has it as its current host (SAME_HOST)
  const p = planEvacuation(snapshot, movable.map(placementVm), reservedVfs === undefined ? {} : { reservedVfs });
  const byUuid = new Map(mine.map((v) => [v.uuid, v]));
  const items: EvacuationItem[] = [];
  const destinations = new Map<string, Destination>();
  for (const e of p.placed) {
    const vm = byUuid.get(e.vm)!;
    destinations.set(vm.uuid, e.destination);
    items.push({
      ...blank(vm), to: e.destination.host, order: e.order, status: "pending", outcome: null, reason: null,
      vfs: e.destination.nics.map((n) => ({ nic: n.nic, vf: n.vf?.bdf ?? null })),
    });
  }
  for (const u of p.unplaced) {
    const vm = byUuid.get(u.vm)!;
    items.push({ ...blank(vm), to: null, order: u.order, vfs: [], status: "done", outcome: "unplaced", code: "FERRY_ERR_NO_HOST", reason: u.message, rejections: [...u.rejections] });
  }
  for (const vm of mine.filter((v) => !movable.includes(v))) {
    const why = vm.state === "migrating" ? "a migration of it is already in progress" : `not running (state ${vm.state}): nothing to live-migrate`;
    items.push({ ...blank(vm), to: null, order: null, vfs: [], status: "done", outcome: "skipped", code: "FERRY_ERR_STATE", reason: why });
  }
  return { plan: { kind: p.kind, order: p.order, reservedVfs: [...p.reservedVfs] }, items, destinations };
}

const MOVED: readonly ItemOutcome[] = ["succeeded", "degraded"];

/** Did the VM leave the host? (by its outcome and where it runs) */
export function moved(i: Pick<EvacuationItem, "outcome" | "runsOn" | "from">): boolean {
  return i.outcome !== null && MOVED.includes(i.outcome) && i.runsOn !== null && i.runsOn !== i.from;
}

export function countItems(items: readonly EvacuationItem[]): EvacuationView["counts"] {
  return {
    total: items.length,
    pending: items.filter((i) => i.status === "pending").length,
    migrating: items.filter((i) => i.status === "migrating").length,
    moved: items.filter((i) => i.status === "done" && moved(i)).length,
    stayed: items.filter((i) => i.status === "done" && !moved(i)).length,
  };
}

/** Run `fn` over `items` with at most `limit` at once, in order. */
export async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, () => worker()));
}

// ------------------------------------------------------------------ drain

async function hostOrThrow(d: EvacuationDeps, name: string): Promise<HostRecord> {
  const h = await d.controller.cluster.getHost(name);
  if (!h) throw new FerryError("FERRY_ERR_NOT_FOUND", `host ${name} not found (no agent registered under that name)`, { details: { host: name } });
  return h;
}

/** Mark a host draining: never a destination again until undrained. Idempotent. */
export async function drainHost(d: EvacuationDeps, name: string): Promise<HostRecord> {
  let changed = false;
  const next = await d.controller.cluster.updateHost(name, (h) => {
    changed = h !== undefined && !(h.drain === true && h.state !== "up");
    return changed && h ? { ...h, drain: true, state: h.state === "down" ? "down" : "draining" } : undefined;
  });
  if (!next) return hostOrThrow(d, name); // unknown: throws NOT_FOUND
  if (changed) d.log.info({ host: name }, "host draining");
  return next;
}

/** Undo drain: the host may be chosen as a destination again (if it is up). Idempotent. */
export async function undrainHost(d: EvacuationDeps, name: string): Promise<HostRecord> {
  let changed = false;
  const next = await d.controller.cluster.updateHost(name, (h) => {
    changed = h !== undefined && (h.drain === true || h.state === "draining");
    if (!changed || !h) return undefined;
    const { drain: _drain, ...rest } = h;
    return { ...rest, state: h.state === "draining" ? "up" : h.state };
  });
  if (!next) return hostOrThrow(d, name); // unknown: throws NOT_FOUND
  if (changed) d.log.info({ host: name }, "host undrained");
  return next;
}

// ------------------------------------------------------------------ evacuations

export class Evacuations {
  readonly #d: EvacuationDeps;
  readonly #all = new Map<string, EvacuationView>();
  readonly #running = new Map<string, Promise<void>>();
  readonly #stop = new AbortController();

  constructor(deps: EvacuationDeps) {
    this.#d = deps;
  }

  drain(name: string): Promise<HostRecord> {
    return drainHost(this.#d, name);
  }

  undrain(name: string): Promise<HostRecord> {
    return undrainHost(this.#d, name);
  }

  list(): EvacuationView[] {
    return [...this.#all.values()].map((e) => this.#view(e));
  }

  get(id: string): EvacuationView {
    const e = this.#all.get(id);
    if (!e) throw new FerryError("FERRY_ERR_NOT_FOUND", `evacuation ${id} not found`, { details: { id } });
    return this.#view(e);
  }

  #view(e: EvacuationView): EvacuationView {
    return structuredClone({ ...e, counts: countItems(e.items) });
  }

  /** Plan (input.plan: only that, nothing changes) or start an evacuation of `host` (it runs in the background). */
  async evacuate(host: string, input: EvacuateInput = {}): Promise<EvacuationView> {
    const o = validateEvacuateInput(input);
    const h = await hostOrThrow(this.#d, host);
    if (h.state === "down") throw new FerryError("FERRY_ERR_STATE", `host ${host} is down: its VMs cannot be live-migrated`, { details: { host } });
    const busy = [...this.#all.values()].find((e) => e.host === host && e.state === "running");
    if (busy && !o.plan) throw new FerryError("FERRY_ERR_CONFLICT", `host ${host} is already being evacuated (${busy.id})`, { details: { host, id: busy.id } });
    if (!o.plan) {
      await this.drain(host);
      await this.#mark(host, { parallel: o.parallel, maxBandwidthMiBps: o.maxBandwidthMiBps, since: this.#d.clock.now() });
    }
    const { snapshot, vms, reservedVfs } = await this.#d.controller.snapshot();
    const planned = planHostEvacuation(host, snapshot, vms, reservedVfs);
    const count = planned.items.filter((i) => i.status === "pending").length;
    const now = this.#d.clock.now();
    const e: EvacuationView = {
      id: `e-${randomBytes(4).toString("hex")}`,
      host,
      state: o.plan ? "planned" : "running",
      parallel: o.parallel,
      maxBandwidthMiBps: o.maxBandwidthMiBps,
      perMigrationBytes: perMigrationBytes(o.maxBandwidthMiBps, o.parallel, count),
      plan: planned.plan,
      items: planned.items,
      counts: countItems(planned.items),
      createdAt: now,
      endedAt: o.plan ? now : null,
    };
    if (o.plan) return this.#view(e);
    this.#remember(e);
    this.#d.log.info({ host, id: e.id, vms: e.items.length, planned: count }, "evacuation started");
    const run = this.#run(e, planned.destinations)
      .catch((err: unknown) => this.#d.log.error({ err, id: e.id }, "evacuation failed"))
      .finally(async () => {
        e.state = "done";
        e.endedAt = this.#d.clock.now();
        this.#running.delete(e.id);
        // stopped by a shutdown: the mark stays, and the controller that leads next goes on with it
        if (!this.#stop.signal.aborted) await this.#mark(host, null).catch((err: unknown) => this.#d.log.warn({ err, host }, "cannot clear the host's evacuation mark"));
        this.#d.log.info({ host, id: e.id, ...countItems(e.items) }, "evacuation done");
      });
    this.#running.set(e.id, run);
    return this.#view(e);
  }

  /** Record on the host that an evacuation of it is in progress (null: it ended). */
  async #mark(host: string, evacuating: HostRecord["evacuating"] | null): Promise<void> {
    await this.#d.controller.cluster.updateHost(host, (h) => {
      if (!h) return undefined;
      const { evacuating: _old, ...rest } = h;
      return evacuating === null ? rest : { ...rest, evacuating };
    });
  }

  /**
   * Go on with every evacuation in progress that the store records (a
   * controller took over the leadership): each drained host marked evacuating
   * is evacuated again with the same options; the VMs its earlier leader had
   * already moved are gone from it, and those still migrating are left to
   * their resumed migrations. A mark on a host undrained or down is cleared.
   */
  async resume(): Promise<EvacuationView[]> {
    const out: EvacuationView[] = [];
    for (const h of await this.#d.controller.cluster.listHosts()) {
      if (!h.evacuating || [...this.#all.values()].some((e) => e.host === h.name && e.state === "running")) continue;
      if (h.drain !== true || h.state === "down") {
        this.#d.log.info({ host: h.name }, `the evacuation of ${h.name} in progress is not resumed: the host is ${h.drain !== true ? "no longer drained" : "down"}`);
        await this.#mark(h.name, null);
        continue;
      }
      const e = await this.evacuate(h.name, { parallel: h.evacuating.parallel, ...(h.evacuating.maxBandwidthMiBps === null ? {} : { maxBandwidthMiBps: h.evacuating.maxBandwidthMiBps }) });
      this.#d.log.info({ host: h.name, id: e.id, since: h.evacuating.since }, `evacuation of ${h.name} resumed (${e.id})`);
      out.push(e);
    }
    return out;
  }

  #remember(e: EvacuationView): void {
    this.#all.set(e.id, e);
    for (const [id, old] of this.#all) {
      if (this.#all.size <= KEEP) break;
      if (old.state === "done") this.#all.delete(id);
    }
  }

  async #run(e: EvacuationView, destinations: Map<string, Destination>): Promise<void> {
    const pending = e.items.filter((i) => i.status === "pending");
    await pool(pending, e.parallel, async (item) => {
      const dest = destinations.get(item.uuid)!;
      await this.#one(e, item, dest).catch((err: unknown) => {
        const f = toFerryError(err);
        Object.assign(item, { status: "done", outcome: item.migrationId === null ? "refused" : "failed", reason: f.message, code: f.code, endedAt: this.#d.clock.now() });
      });
    });
  }

  async #one(e: EvacuationView, item: EvacuationItem, dest: Destination): Promise<void> {
    const signal = this.#stop.signal;
    const finish = (outcome: ItemOutcome, reason: string | null, code: string | null): void => {
      Object.assign(item, { status: "done", outcome, reason, code, endedAt: this.#d.clock.now() });
    };
    if (signal.aborted) return finish("skipped", "the controller is shutting down", "FERRY_ERR_ABORTED");
    const h = await this.#d.controller.cluster.getHost(e.host);
    if (h?.drain !== true) return finish("skipped", `host ${e.host} was undrained: the evacuation stops starting migrations`, "FERRY_ERR_CANCELLED");
    item.status = "migrating";
    item.startedAt = this.#d.clock.now();
    let rec: MigrationRecord & { settling?: boolean };
    try {
      rec = await this.#d.controller.migrate({
        vm: item.uuid, to: dest.host, destination: dest,
        ...(e.perMigrationBytes === null ? {} : { maxBandwidthBytes: e.perMigrationBytes }),
      });
    } catch (err) {
      const f = toFerryError(err);
      return finish("refused", f.message, f.code);
    }
    item.migrationId = rec.id;
    item.phase = rec.phase;
    while (rec.phase !== "done" || rec.settling === true) {
      try {
        await this.#d.clock.sleep(this.#d.pollMs ?? 250, signal);
      } catch {
        return finish("failed", `the controller shut down while migration ${rec.id} was in phase ${rec.phase}; it resumes on the next start`, "FERRY_ERR_ABORTED");
      }
      rec = await this.#d.controller.getMigration(rec.id);
      item.phase = rec.phase;
    }
    item.runsOn = rec.runsOn?.host ?? null;
    finish(rec.outcome ?? "failed", rec.reason, rec.code);
  }

  /** Stop following now (close() waits for the loops to end). */
  stop(): void {
    this.#stop.abort();
  }

  /** Stop following (migrations in flight go on; the controller resumes them). */
  async close(): Promise<void> {
    this.stop();
    await Promise.allSettled(this.#running.values());
  }
}
