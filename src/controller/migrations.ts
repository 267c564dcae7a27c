// Migrations: planned with the scheduler, recorded, run by the durable
// coordinator (src/migration/runner.ts) in the background, the VM record
// updated from each outcome; resumed when the controller starts; a lab's
// connectivity watch written into the record once the NICs are steady.
import type { ConvergenceRequest } from "../migration/convergence.ts";
import { randomBytes } from "node:crypto";
import { FerryError, isFerryError } from "../core/errors.ts";
import type { CancelReport, RunnerDeps } from "../migration/runner.ts";
import { cancel, createMigration, resumeAll, runMigration } from "../migration/runner.ts";
import type { Deadlines, MigrationPlan, MigrationRecord, NicPlan } from "../migration/types.ts";
import { isTerminal } from "../migration/types.ts";
import type { ClusterSnapshot, PlacementVm } from "../model/cluster.ts";
import { vfKey } from "../model/cluster.ts";
import { place } from "../scheduler/place.ts";
import type { Destination } from "../scheduler/types.ts";
import type { HostRecord, VmNicRecord, VmPlace, VmRecord } from "../store/cluster.ts";
import { HttpAgentPort } from "./agent-port.ts";
import type { ClusterView } from "./cluster-view.ts";
import type { ConnectivityHandle } from "./connectivity.ts";
import { connectivityWarnings } from "./connectivity.ts";
import type { ControllerContext } from "./context.ts";
import { MigrationFeed } from "./migration-feed.ts";
import { MigrationLive } from "./migration-live.ts";
import type { CoordinatorEvent } from "../migration/runner.ts";
import type { PlanDirtyRate, PlanPrediction, PlanReply as PlanView } from "../wire/controller-api.ts";
import type { DirtyRateReply } from "../wire/instance-ops.ts";
import { hostFacts, preflightChecks, sharedMemoryBlocker } from "../migration/preflight.ts";
import type { HostFacts, PreflightCheck } from "../migration/preflight.ts";
import { CPU_MODEL, MACHINE_TYPE } from "../qemu/argv.ts";
import { betweenHosts, predictFor, throughputSamples } from "./plan-predict.ts";
import { DEFAULT_PLAN_BANDWIDTH_MIBPS } from "./config.ts";
import type { MigrationProgress } from "../wire/instance-ops.ts";
import type { Vms } from "./vms.ts";
import { runningAt } from "./vms.ts";

export interface MigrateInput {
  vm: string;
  to?: string;
  deadlines?: Partial<Deadlines>;
  /** Use this destination (host and VFs) from an evacuation plan instead of the scheduler's first; the host must still accept the VM. */
  destination?: Destination;
  /** The migration stream's bandwidth cap (bytes/s), for the agent's perform step. */
  maxBandwidthBytes?: number;
  /** The convergence policy (absent: "auto", chosen by the source from the guest's dirty rate). */
  convergence?: ConvergenceRequest;
}

export type { PlanReply as PlanView } from "../wire/controller-api.ts";

type MigrationNet = HostRecord["migration"];

/** The migration stream from `from` to `to`: a blocker (TLS on one side only), or warnings (plain TCP, no migration network). */
export function transportCheck(vm: string, from: string, to: string, sm: MigrationNet, dm: MigrationNet): { blocker?: string; warnings: string[] } {
  if (dm?.tls === true && !(sm?.tls === true && sm.identity !== undefined)) {
    return { blocker: `migration of ${vm} refused, nothing changed: ${to} takes migration streams over TLS only, and ${from} has ${sm ? "migration.tls: false" : "no migration network"}: give ${from} a migration certificate (host.yaml migration.tls) or set migration.tls: false on both`, warnings: [] };
  }
  if (sm?.tls === true && dm !== undefined && !dm.tls) {
    return { blocker: `migration of ${vm} refused, nothing changed: ${from} sends migration streams over TLS, and ${to} takes plain TCP (migration.tls: false): turn TLS on for ${to} or off on both`, warnings: [] };
  }
  if (!dm) return { warnings: [`${to} has no migration network (host.yaml migration:): its QEMU listens on 127.0.0.1, which only works when ${from} is the same machine`] };
  if (!dm.tls) return { warnings: [`the migration stream to ${to} (${dm.address}) is plain TCP (migration.tls: false): guest memory crosses the migration network unencrypted`] };
  return { warnings: [] };
}

export class Migrations {
  readonly #c: ControllerContext;
  readonly #view: ClusterView;
  readonly #vms: Vms;
  readonly #running = new Map<string, Promise<MigrationRecord>>();
  /** Migrations whose NICs are still watched after the outcome (lab), by id: cut ends the watch now. */
  readonly #measuring = new Map<string, { vm: string; cut: AbortController; done: Promise<void> }>();
  /** RAM progress while perform runs, and `end` once settled: what each migration's live stream adds to the bus. */
  readonly feed: MigrationFeed;
  /** Live streams, tuning (migration-live.ts). */
  readonly live: MigrationLive;

  constructor(c: ControllerContext, view: ClusterView, vms: Vms) {
    this.#c = c;
    this.#view = view;
    this.#vms = vms;
    this.feed = new MigrationFeed({ clock: c.d.clock, log: c.d.log });
    this.live = new MigrationLive({ c, feed: this.feed, get: (id) => this.get(id) });
  }

  /** Every coordinator event goes to the bus; entering perform starts sampling QEMU's progress, leaving it stops. */
  #onEvent(e: CoordinatorEvent): void {
    this.#c.events.publish(e);
    if (e.type !== "phase") return;
    if (e.to === "perform") this.#sample(e.migrationId);
    else if (e.from === "perform") this.feed.finishPerform(e.migrationId);
  }

  #sample(id: string): void {
    let rec: Promise<MigrationRecord | undefined> | undefined;
    this.feed.tick(id, async (signal) => {
      rec ??= this.#c.d.store.getMigration(id);
      const r = await rec;
      return r ? this.#c.agent(r.plan.source.host).migrationProgress(r.plan.source.instanceId, { timeoutMs: 1_000, signal }) : undefined;
    }, this.#c.signal);
  }

  /** The migration's outcome is settled: its streams get `end` (with the record as GET answers it now) and close. */
  async #ended(id: string): Promise<void> {
    this.feed.stop(id);
    const r = await this.get(id).catch(() => undefined);
    if (r && isTerminal(r)) this.feed.publish({ type: "end", migrationId: id, migration: r, at: this.#c.d.clock.now() });
  }

  get #runner(): RunnerDeps {
    return {
      store: this.#c.d.store,
      port: new HttpAgentPort((h) => this.#c.agent(h), async (h) => {
        const m = (await this.#c.d.cluster.getHost(h))?.migration;
        return m?.tls === true ? m.identity : undefined;
      }),
      clock: this.#c.d.clock,
      log: this.#c.d.log,
      signal: this.#c.signal,
      onEvent: (e) => this.#onEvent(e),
    };
  }

  /** Resume every migration not yet done (in the background). */
  async resume(): Promise<void> {
    const active = await this.#c.d.store.listActiveMigrations();
    const runner = this.#runner;
    for (const r of active) if (!r.plan.link) this.#c.busy.add(r.plan.vm.uuid);
    for (const r of active) if (r.phase === "perform") this.#sample(r.id);
    const vmOf = new Map(active.map((r) => [r.id, r.plan.vm.uuid]));
    void resumeAll(runner).then(
      async (results) => {
        for (const r of results) {
          if (r.record) {
            await this.#settle(r.record).catch((e: unknown) => this.#c.d.log.error({ err: e, id: r.id }, "cannot update the VM after its migration"));
            await this.#ended(r.id);
          }
          else if (r.error && r.error.code !== "FERRY_ERR_ABORTED") this.#c.d.log.error({ id: r.id, err: r.error.message }, "resumed migration failed");
          if (r.error?.code !== "FERRY_ERR_ABORTED") this.#c.busy.delete(vmOf.get(r.id) ?? "");
        }
      },
      (e: unknown) => this.#c.d.log.error({ err: e }, "resume failed"),
    );
  }

  /** After the controller's stop: wait for the runners, end the connectivity watches now. */
  async close(): Promise<void> {
    await Promise.allSettled(this.#running.values());
    this.feed.stopAll();
    for (const m of this.#measuring.values()) m.cut.abort();
    await Promise.allSettled([...this.#measuring.values()].map((m) => m.done));
  }

  #placementVm(vm: VmRecord): PlacementVm {
    return {
      uuid: vm.uuid, name: vm.name, memoryMiB: vm.memoryMiB, vcpus: vm.vcpus, host: vm.host,
      nics: vm.nics.map((n) => ({ name: n.name, network: n.network, mode: n.mode, policy: n.policy, ...(n.vf === null ? {} : { currentVf: n.vf }) })),
    };
  }

  /** What planning reads: the VM, the cluster's snapshot, the hosts' records (their migration networks). */
  async #read(input: MigrateInput): Promise<{ vm: VmRecord; snapshot: ClusterSnapshot; hosts: Map<string, HostRecord> }> {
    const vm = await this.#vms.get(input.vm);
    const { snapshot, hosts } = await this.#view.snapshot();
    return { vm, snapshot, hosts: new Map(hosts.map((h) => [h.name, h])) };
  }

  /** The ranked destinations, never on a VF reserved for another plan, with every check per destination (pure: preflight.ts); synchronous (vf-reservations.ts). */
  #rank(r: { vm: VmRecord; snapshot: ClusterSnapshot; hosts: Map<string, HostRecord> }, input: MigrateInput, reserved: ReadonlySet<string>): PlanView & { snapshot: ClusterSnapshot; vmRecord: VmRecord } {
    const { vm, snapshot, hosts } = r;
    const p = place(snapshot, { vm: this.#placementVm(vm), options: { ...(input.to === undefined ? {} : { to: input.to }), reservedVfs: reserved } });
    const destinations = p.kind === "placed" ? [...p.destinations] : [];
    // per ranked destination, what the scheduler does not see: the migration network and TLS against the
    // source's, QEMU version, machine type, CPU model, free memory, shared memory (migration/preflight.ts)
    const facts = (name: string): HostFacts => hostFacts(name, hosts.get(name));
    const pvm = { name: vm.name, memoryMiB: vm.memoryMiB, machine: MACHINE_TYPE, cpuModel: CPU_MODEL, ...(vm.sharedMemory === true ? { sharedMemory: true } : {}), ...(vm.ramTrimKiB === undefined ? {} : { ramTrimKiB: vm.ramTrimKiB }) };
    const checks: NonNullable<PlanView["checks"]> = [];
    const blockers: NonNullable<PlanView["blockers"]> = [];
    const warnings: NonNullable<PlanView["warnings"]> = [];
    for (const d of destinations) {
      const t = transportCheck(vm.name, vm.host, d.host, hosts.get(vm.host)?.migration, hosts.get(d.host)?.migration);
      const tls: PreflightCheck = t.blocker !== undefined
        ? { check: "MIGRATION_TLS", status: "blocker", message: t.blocker }
        : { check: "MIGRATION_TLS", status: t.warnings.length > 0 ? "warning" : "ok", message: t.warnings.join("; ") || "the migration stream is TLS on both hosts" };
      const own = preflightChecks(pvm, facts(vm.host), facts(d.host));
      for (const c of [...own, tls]) {
        checks.push({ host: d.host, ...c });
        if (c.status === "blocker") blockers.push({ host: d.host, check: c.check, message: c.message });
      }
      // the transport's warnings one by one (its check joins them), then the other checks' warnings
      warnings.push(...t.warnings.map((w) => ({ host: d.host, message: w })));
      for (const c of own) if (c.status === "warning") warnings.push({ host: d.host, message: c.message });
    }
    return {
      vm: vm.name, source: vm.host,
      destinations,
      rejections: [...p.rejected.list()],
      message: p.kind === "unplaceable" ? p.message : null,
      blockers, warnings, checks,
      snapshot, vmRecord: vm,
    };
  }

  /** The guest's dirty rate, measured on its source instance (best effort), and a prediction per destination host. */
  async #predict(vm: VmRecord, to: readonly string[], maxBandwidthBytes: number | undefined): Promise<{ dirtyRate: PlanDirtyRate; predictions: PlanPrediction[]; warnings: { host: string; message: string }[] }> {
    let dirtyRate: PlanDirtyRate;
    let measured: DirtyRateReply | undefined;
    if (vm.state !== "running" || vm.instanceId === null) dirtyRate = { measured: false, MiBps: 0, detail: `${vm.name} is not running (state ${vm.state})` };
    else {
      try {
        measured = await this.#c.agent(vm.host).dirtyRate(vm.instanceId, { seconds: 1 }, { timeoutMs: 10_000, signal: this.#c.signal });
        dirtyRate = { measured: true, MiBps: measured.dirtyRateMiBps, detail: `QEMU calc-dirty-rate (${measured.mode}) over ${measured.seconds} s on ${vm.host}` };
      } catch (e) {
        dirtyRate = { measured: false, MiBps: 0, detail: `${vm.host}'s agent could not measure it: ${e instanceof Error ? e.message : String(e)}` };
      }
    }
    const records = await this.#c.d.store.listMigrations();
    const predictions: PlanPrediction[] = [];
    const warnings: { host: string; message: string }[] = [];
    for (const host of to) {
      // the journal gives the data moved of records that do not carry it: only for the newest few
      const candidates = betweenHosts(records, vm.host, host).slice(0, 5);
      const samples = throughputSamples(await Promise.all(candidates.map((r) => this.#withDataMoved(r))), vm.host, host);
      const cap = maxBandwidthBytes ?? measured?.maxBandwidthBytes;
      const r = predictFor({
        source: vm.host, host, ramBytes: measured?.ramBytes ?? vm.memoryMiB * 2 ** 20, dirty: dirtyRate, samples,
        defaultBandwidthMiBps: this.#c.d.config.plan?.bandwidthMiBps ?? DEFAULT_PLAN_BANDWIDTH_MIBPS,
        ...(cap === undefined ? {} : { capBytesPerSec: cap, capIsExplicit: maxBandwidthBytes !== undefined }),
        ...(measured ? { downtimeLimitMs: measured.downtimeLimitMs } : {}),
      });
      predictions.push(r.prediction);
      if (r.warning !== undefined) warnings.push({ host, message: r.warning });
    }
    return { dirtyRate, predictions, warnings };
  }

  /**
   * Where the migration goes: the scheduler's first, or the destination the
   * caller planned (an evacuation) while its VFs are still free — the VFs of
   * a plan made earlier may have gone to another migration since; then the
   * scheduler's first on that host.
   */
  #destination(p: PlanView & { snapshot: ClusterSnapshot }, wanted: Destination | undefined, reserved: ReadonlySet<string>): Destination | undefined {
    const fresh = p.destinations[0];
    if (fresh === undefined || wanted === undefined) return fresh;
    const leased = new Set(p.snapshot.vfs.filter((v) => v.leasedBy !== null).map((v) => vfKey(v.host, v.bdf)));
    const gone = wanted.nics.flatMap((n) => (n.vf !== null && (reserved.has(n.vf.key) || leased.has(n.vf.key)) ? [n.vf.bdf] : []));
    if (gone.length === 0) return wanted;
    this.#c.d.log.info({ vm: p.vm, host: wanted.host, vfs: gone, instead: fresh.nics.flatMap((n) => (n.vf === null ? [] : [n.vf.bdf])) }, "the VFs planned for the VM were taken since the plan: the scheduler picked others");
    return fresh;
  }

  /**
   * Rank the destinations with every check per destination (nothing changes;
   * no VF is held); with `predict`, the guest's dirty rate measured on its
   * source (~1 s) and a prediction of the RAM streaming time and downtime per
   * destination.
   */
  async plan(input: MigrateInput, o: { predict?: boolean } = {}): Promise<PlanView & { snapshot: ClusterSnapshot; vmRecord: VmRecord }> {
    const { value } = await this.#c.vfs.plan(() => this.#read(input), (r, reserved) => ({ value: this.#rank(r, input, reserved), hold: [] }));
    if (o.predict !== true || value.destinations.length === 0) return value;
    const predicted = await this.#predict(value.vmRecord, value.destinations.map((d) => d.host), input.maxBandwidthBytes);
    return { ...value, warnings: [...(value.warnings ?? []), ...predicted.warnings], dirtyRate: predicted.dirtyRate, predictions: predicted.predictions };
  }

  /**
   * The migration stream between two hosts: refused (nothing changed) when
   * one side's migration network is TLS and the other's is not; a warning
   * when it is plain TCP or a host has no migration network (127.0.0.1: the
   * hosts must share a machine).
   */
  async #transport(vm: string, from: string, to: string): Promise<string[]> {
    const [s, d] = await Promise.all([this.#c.d.cluster.getHost(from), this.#c.d.cluster.getHost(to)]);
    const t = transportCheck(vm, from, to, s?.migration, d?.migration);
    if (t.blocker !== undefined) throw new FerryError("FERRY_ERR_MIGRATION_TLS", t.blocker, { details: { vm, source: from, destination: to } });
    return t.warnings;
  }

  /** Plan, record and start a migration; resolves once it is recorded (it runs in the background). */
  async migrate(input: MigrateInput): Promise<MigrationRecord> {
    const probe = await this.#vms.get(input.vm);
    if (this.#c.busy.has(probe.uuid)) throw new FerryError("FERRY_ERR_STATE", `vm ${probe.name} is busy: a migration or another operation on it is in progress; nothing was changed: wait for it to end ('ferry migrations', 'ferry events') and try again`, { details: { vm: probe.name } });
    this.#c.busy.add(probe.uuid);
    let started = false;
    // the destination's VFs are held from the plan until the record is written (it names them then)
    let release = (): void => {};
    try {
      const planned = await this.#c.vfs.plan(() => this.#read(input), (r, reserved) => {
        const p = this.#rank(r, input, reserved);
        const dest = this.#destination(p, input.destination, reserved);
        return { value: { p, dest }, hold: dest?.nics.flatMap((n) => (n.vf === null ? [] : [n.vf.key])) ?? [] };
      });
      release = planned.release;
      const { p, dest } = planned.value;
      const vm = p.vmRecord;
      if (vm.state !== "running" || vm.instanceId === null) throw new FerryError("FERRY_ERR_STATE", `vm ${vm.name} is not running (state ${vm.state}); nothing was changed: start it first ('ferry vm start ${vm.name}'${vm.state === "saved" ? ", or 'ferry vm restore'" : ""})`);
      if (!dest) {
        const noVf = p.rejections.some((r) => r.code === "NO_VF");
        throw new FerryError(noVf ? "FERRY_ERR_NO_VF" : "FERRY_ERR_NO_HOST", `migration of ${vm.name} refused, nothing changed: ${p.message ?? "no destination"}`, {
          details: { vm: vm.name, rejections: p.rejections },
        });
      }
      if (vm.sharedMemory === true) {
        // a file-backed guest of whole MiB between hosts where QEMU < 9.0 runs under TCG: its memory came out
        // broken (migration/preflight.ts tcgDirtySyncExposed); refuse rather than corrupt it
        // #rank checked every ranked destination; an evacuation's destination may not be among them
        const ranked = p.checks?.some((c) => c.host === dest.host && c.check === "SHARED_MEMORY") === true;
        const factsOf = async (h: string): Promise<HostFacts> => hostFacts(h, await this.#c.d.cluster.getHost(h));
        const blocker = ranked
          ? p.blockers?.find((b) => b.host === dest.host && b.check === "SHARED_MEMORY")?.message
          : sharedMemoryBlocker(vm, await factsOf(vm.host), await factsOf(dest.host));
        if (blocker !== undefined) throw new FerryError("FERRY_ERR_STATE", `migration of ${vm.name} refused, nothing changed: ${blocker}`, { details: { vm: vm.name, sharedMemory: true } });
      }
      const transportWarnings = await this.#transport(vm.name, vm.host, dest.host);
      const pfOf = new Map(p.snapshot.vfs.filter((v) => v.host === vm.host).map((v) => [v.bdf, v.pf]));
      const nics: NicPlan[] = vm.nics.map((n) => {
        const a = dest.nics.find((x) => x.nic === n.name)?.vf ?? null;
        return {
          name: n.name, network: n.network, mode: n.mode, policy: n.policy, mac: n.mac, guestPorts: { ...n.guestPorts },
          before: n.vf === null ? null : { host: vm.host, vf: n.vf, pf: pfOf.get(n.vf) ?? "" },
          after: a === null ? null : { host: dest.host, vf: a.bdf, pf: a.pf },
        };
      });
      // the migration's own policy, else the VM's
      const convergence = input.convergence ?? vm.convergence;
      const plan: MigrationPlan = {
        id: `m-${randomBytes(4).toString("hex")}`,
        vm: { uuid: vm.uuid, name: vm.name, memoryMiB: vm.memoryMiB, vcpus: vm.vcpus },
        source: { host: vm.host, instanceId: vm.instanceId },
        destination: { host: dest.host },
        nics,
        deadlines: { ...this.#c.d.config.deadlines, ...input.deadlines },
        ...(input.maxBandwidthBytes === undefined ? {} : { maxBandwidthBytes: input.maxBandwidthBytes }),
        ...(convergence === undefined ? {} : { convergence }),
      };
      const runner = this.#runner;
      // an earlier migration's watch still running would count this migration's outage as its own
      for (const m of this.#measuring.values()) if (m.vm === vm.uuid) m.cut.abort();
      const watching = await this.#c.d.connectivity?.start(vm).catch((e: unknown) => {
        this.#c.d.log.warn({ err: e, vm: vm.name }, "connectivity probe did not start; the migration runs without it");
        return undefined;
      });
      let rec: MigrationRecord;
      try {
        rec = await createMigration(plan, runner);
        if (transportWarnings.length > 0) rec = await this.#c.d.store.updateMigration({ ...rec, warnings: [...rec.warnings, ...transportWarnings] }, rec.version);
      } catch (e) {
        await watching?.settle({ from: this.#c.d.clock.now(), endedAt: this.#c.d.clock.now(), signal: AbortSignal.abort() }).catch(() => undefined);
        throw e;
      }
      await this.#c.d.cluster.putVm({ ...vm, state: "migrating", updatedAt: this.#c.d.clock.now() });
      const run = runMigration(plan.id, runner)
        .then(async (ended) => {
          await this.#settle(ended);
          return ended;
        })
        .finally(() => {
          this.#c.busy.delete(vm.uuid);
          this.#running.delete(plan.id);
          void this.#ended(plan.id);
        });
      run.catch((e: unknown) => {
        if (!isFerryError(e, "FERRY_ERR_ABORTED")) this.#c.d.log.error({ err: e, id: plan.id }, "migration runner failed");
      });
      this.#running.set(plan.id, run);
      if (watching) this.#watch(rec, vm.uuid, watching, run);
      started = true;
      return rec;
    } finally {
      release();
      if (!started) this.#c.busy.delete(probe.uuid);
    }
  }

  /**
   * The outcome is not held back by the watch: once the migration has ended
   * (VM record settled) the NICs are watched on until steady, then the figures
   * (and a warning per NIC that was not steady in time, or only after the end)
   * are written into the record.
   */
  #watch(rec: MigrationRecord, vm: string, watching: ConnectivityHandle, run: Promise<MigrationRecord>): void {
    const cut = new AbortController();
    const signal = AbortSignal.any([cut.signal, this.#c.signal]);
    const done = (async () => {
      const ended = await run.catch(() => undefined);
      const endedAt = ended?.updatedAt ?? this.#c.d.clock.now();
      const connectivity = await watching.settle({ from: rec.createdAt, endedAt, signal });
      const warnings = connectivityWarnings(connectivity);
      for (let attempt = 0; attempt < 5; attempt++) {
        const now = await this.#c.d.store.getMigration(rec.id);
        if (!now) return;
        try {
          // updatedAt stays the end: a migration's total time is createdAt → updatedAt
          await this.#c.d.store.updateMigration({ ...now, connectivity, warnings: [...now.warnings, ...warnings] }, now.version);
          break;
        } catch (e) {
          if (!isFerryError(e, "FERRY_ERR_CONFLICT")) throw e;
        }
      }
      for (const w of warnings) this.#c.d.log.warn({ id: rec.id, vm: rec.plan.vm.name }, w);
    })()
      .catch((e: unknown) => this.#c.d.log.error({ err: e, id: rec.id }, "cannot record the migration's connectivity"))
      .finally(() => this.#measuring.delete(rec.id));
    this.#measuring.set(rec.id, { vm, cut, done });
  }

  /**
   * A migration ended: the VM record follows it (host, instance, each NIC's
   * VF) — only while the record still names the migration's source instance,
   * i.e. only the migration that owns the VM settles it (compare-and-set in
   * the store). An old migration's late settle (a cancel or a resume of one
   * that ended long ago, the VM moved on since) changes nothing. An outcome
   * that says the guest runs nowhere is checked with every agent first.
   */
  async #settle(rec: MigrationRecord): Promise<void> {
    if (!isTerminal(rec) || rec.plan.link) return;
    const vm = await this.#c.d.cluster.getVm(rec.plan.vm.uuid);
    if (!vm) return;
    const owner: VmPlace = { host: rec.plan.source.host, instanceId: rec.plan.source.instanceId };
    if (vm.host !== owner.host || vm.instanceId !== owner.instanceId) {
      this.#c.d.log.info({ id: rec.id, vm: vm.name, host: vm.host, instanceId: vm.instanceId }, "migration ended earlier; the VM has moved on since: its record is left as it is");
      return;
    }
    const now = this.#c.d.clock.now();
    let next: VmRecord;
    const found = rec.runsOn ? undefined : (await this.#vms.runningInstances(vm.uuid)).found.find((i) => i.running);
    if (found) {
      this.#c.d.log.warn({ id: rec.id, vm: vm.name, host: found.host, instanceId: found.instanceId }, `migration ${rec.id} ended with the guest nowhere, but ${found.host} runs it (${found.instanceId}, ${found.state}): the record follows the running instance`);
      next = runningAt(vm, found, now);
    } else if (rec.runsOn) {
      const host = rec.runsOn.host;
      const nics: VmNicRecord[] = vm.nics.map((n) => {
        const r = rec.nics.find((x) => x.name === n.name);
        return { ...n, vf: r?.vf && r.vf.host === host ? r.vf.vf : null };
      });
      next = { ...vm, host, instanceId: rec.runsOn.instanceId, state: "running", nics, updatedAt: now };
    } else {
      next = { ...vm, instanceId: null, state: "unknown", updatedAt: now };
    }
    if (!(await this.#c.d.cluster.putVmIf(next, owner))) return;
    if (next.host !== vm.host || next.instanceId !== vm.instanceId) this.#c.events.publish({ type: "vm-moved", vm: vm.name, host: next.host, instanceId: next.instanceId, at: now });
  }

  async list(): Promise<MigrationRecord[]> {
    return Promise.all((await this.#c.d.store.listMigrations()).map((r) => this.#withDataMoved(r)));
  }

  /** A migration between hosts: the RAM QEMU sent, from its switch-over's (else perform's) journaled answer; others carry it in the record. */
  async #withDataMoved(r: MigrationRecord): Promise<MigrationRecord> {
    if (r.dataMovedBytes !== undefined || (r.plan.kind ?? "migration") !== "migration") return r;
    const answers = (await this.#c.d.store.listJournal(r.id)).filter((e) => e.kind === "result" && (e.data["step"] === "switchover" || e.data["step"] === "perform"));
    const last = answers.findLast((e) => e.data["step"] === "switchover") ?? answers.at(-1);
    const v = last?.data["value"];
    const bytes = typeof v === "object" && v !== null ? (v as Record<string, unknown>)["transferredBytes"] : undefined;
    return typeof bytes === "number" ? { ...r, dataMovedBytes: bytes } : r;
  }

  /**
   * A migration; `settling` while the controller still follows up its outcome
   * (the VM record), `measuring` while it still watches the NICs' connectivity
   * (lab: until each answers steadily past the end; the figures come then).
   */
  async get(id: string): Promise<MigrationRecord & { settling: boolean; measuring: boolean; progress?: MigrationProgress }> {
    const stored = await this.#c.d.store.getMigration(id);
    if (!stored) throw new FerryError("FERRY_ERR_NOT_FOUND", `migration ${id} not found: 'ferry migrations' lists the known ones`, { details: { id } });
    const r = await this.#withDataMoved(stored);
    const progress = r.phase === "perform" ? await this.#progress(r) : undefined;
    return { ...r, settling: this.#running.has(id), measuring: this.#measuring.has(id), ...(progress ? { progress } : {}) };
  }

  /** RAM progress from the source QEMU while RAM streams (best effort, bounded). */
  async #progress(r: MigrationRecord): Promise<MigrationProgress | undefined> {
    return this.#c.agent(r.plan.source.host)
      .migrationProgress(r.plan.source.instanceId, { timeoutMs: 1_000 })
      .catch(() => undefined);
  }

  async cancel(id: string): Promise<CancelReport> {
    await this.get(id);
    const report = await cancel(id, this.#runner);
    await this.#settle(report.record);
    return report;
  }
}
