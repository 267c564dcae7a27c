// The controller's Prometheus metrics (GET /metrics; the README lists them).
// Migrations are counted when they end: the coordinator's `outcome` event
// comes after the ended record is written, so the record read then has its
// outcome, timings and downtime. A NIC's connectivity (lab) is written later,
// once the NIC is steady: those migrations wait in `#gaps` and are observed
// at the first scrape that finds the figures (or dropped once the controller
// no longer measures them). Cluster gauges (hosts, agents, VF pools, leases,
// VMs) are read at each scrape, from the store and the agents' inventories.
import { Counter, Gauge, Histogram } from "prom-client";
import type { Registry } from "prom-client";
import { DURATION_BUCKETS_S, PAUSE_BUCKETS_S, metricsRoute, newRegistry, seconds } from "../core/http/metrics.ts";
import type { Logger } from "../core/log.ts";
import type { Controller } from "../controller/controller.ts";
import { downtimeOf, PHASES } from "../migration/types.ts";
import type { MigrationRecord } from "../migration/types.ts";
import { HOST_STATES } from "../model/cluster.ts";
import { VM_STATES } from "../store/cluster.ts";
import type { ControllerFastify } from "./deps.ts";

/** A record's kind label: a cross-host migration, one the coordinator started to take a VM back, or a local migration, save or restore (controller/vm-records.ts). */
export function migrationKind(r: Pick<MigrationRecord, "plan">): string {
  const kind = r.plan.kind ?? "migration";
  return r.plan.link?.kind ?? (kind === "migration" ? "cross-host" : kind);
}

/** Ids remembered so that a migration is counted once (an outcome event seen twice, e.g. after a resume). */
const REMEMBER = 10_000;

/** What the metrics read of the controller. */
export type MetricsSource = Pick<Controller, "events" | "getMigration" | "listHosts" | "listVms" | "devices">;

export class ControllerMetrics {
  readonly registry: Registry = newRegistry();
  readonly #controller: MetricsSource;
  readonly #log: Logger;
  readonly #counted = new Set<string>();
  /** Ended migrations whose connectivity figures (lab) are not written yet. */
  readonly #gaps = new Set<string>();
  readonly #pending = new Set<Promise<void>>();
  readonly #unsubscribe: () => void;

  readonly migrations = new Counter({ name: "ferry_migrations_total", help: "Migrations ended, by kind and outcome", labelNames: ["kind", "outcome"] as const, registers: [this.registry] });
  readonly duration = new Histogram({ name: "ferry_migration_duration_seconds", help: "A migration's time from its start to its outcome", labelNames: ["kind", "outcome"] as const, buckets: DURATION_BUCKETS_S, registers: [this.registry] });
  readonly downtime = new Histogram({ name: "ferry_migration_downtime_seconds", help: "The guest's pause in a migration: QEMU's downtime at switchover, else the source's own pause before a rollback", labelNames: ["kind"] as const, buckets: PAUSE_BUCKETS_S, registers: [this.registry] });
  readonly phase = new Histogram({ name: "ferry_migration_phase_duration_seconds", help: "Time spent in each phase of the migrations that ended", labelNames: ["phase"] as const, buckets: PAUSE_BUCKETS_S.concat(DURATION_BUCKETS_S.filter((b) => b > PAUSE_BUCKETS_S.at(-1)!)), registers: [this.registry] });
  readonly gap = new Histogram({
    name: "ferry_migration_connectivity_longest_gap_seconds",
    help: "Per NIC of a migration whose connectivity was measured (lab): the longest time without a reply to the probes",
    labelNames: ["kind"] as const,
    buckets: PAUSE_BUCKETS_S,
    registers: [this.registry],
    collect: () => this.#collectGaps(),
  });
  // prom-client gathers the metrics concurrently: each gauge's collect awaits the one read of this scrape, which sets them all.
  readonly hosts = new Gauge({ name: "ferry_hosts", help: "Hosts the controller knows, by state", labelNames: ["state"] as const, registers: [this.registry], collect: () => this.#refreshCluster() });
  readonly agentUp = new Gauge({ name: "ferry_agent_up", help: "1 while the host's agent sends heartbeats (state up or draining), 0 when it is down", labelNames: ["host"] as const, registers: [this.registry], collect: () => this.#refreshCluster() });
  readonly vfs = new Gauge({ name: "ferry_vf_pool_vfs", help: "Usable VFs per PF and physical network (from the agents' inventories; hosts that did not answer are left out)", labelNames: ["host", "pf", "network"] as const, registers: [this.registry], collect: () => this.#refreshCluster() });
  readonly vfsLeased = new Gauge({ name: "ferry_vf_pool_leased", help: "Of those, the VFs leased (to an instance or a migration)", labelNames: ["host", "pf", "network"] as const, registers: [this.registry], collect: () => this.#refreshCluster() });
  readonly leases = new Gauge({ name: "ferry_vf_leases", help: "VF leases per host by holder kind (instance, migration)", labelNames: ["host", "kind"] as const, registers: [this.registry], collect: () => this.#refreshCluster() });
  readonly vms = new Gauge({ name: "ferry_vms", help: "VMs by state (running, stopped, migrating, saved, unknown)", labelNames: ["state"] as const, registers: [this.registry], collect: () => this.#refreshCluster() });

  constructor(controller: MetricsSource, log: Logger) {
    this.#controller = controller;
    this.#log = log;
    this.#unsubscribe = controller.events.subscribe((e) => {
      if (e.type !== "outcome") return;
      const p = this.#ended(e.migrationId).finally(() => this.#pending.delete(p));
      this.#pending.add(p);
    });
  }

  /** Stop following events; resolves when the migrations already seen are counted. */
  async close(): Promise<void> {
    this.#unsubscribe();
    await Promise.all(this.#pending);
  }

  /** Resolves when every outcome seen so far is counted (a scrape waits for it). */
  settled(): Promise<void> {
    return Promise.all(this.#pending).then(() => undefined);
  }

  async #ended(id: string): Promise<void> {
    if (this.#counted.has(id)) return;
    const r = await this.#controller.getMigration(id).catch((e: unknown) => {
      this.#log.warn({ err: e instanceof Error ? e.message : String(e), id }, "metrics: cannot read the ended migration");
      return undefined;
    });
    if (!r || r.outcome === null || this.#counted.has(id)) return;
    this.#counted.add(id);
    if (this.#counted.size > REMEMBER) this.#counted.delete(this.#counted.values().next().value!);
    const kind = migrationKind(r);
    this.migrations.inc({ kind, outcome: r.outcome });
    this.duration.observe({ kind, outcome: r.outcome }, seconds(r.updatedAt - r.createdAt));
    const down = downtimeOf(r);
    if (down !== null) this.downtime.observe({ kind }, seconds(down));
    for (const p of PHASES) {
      const ms = r.timings[p]?.ms;
      if (ms !== undefined) this.phase.observe({ phase: p }, seconds(ms));
    }
    if (r.connectivity) this.#observeGaps(r);
    else if (r.measuring) this.#gaps.add(id);
  }

  #observeGaps(r: MigrationRecord): void {
    for (const c of Object.values(r.connectivity ?? {})) this.gap.observe({ kind: migrationKind(r) }, seconds(c.longestGapMs));
  }

  async #collectGaps(): Promise<void> {
    for (const id of [...this.#gaps]) {
      const r = await this.#controller.getMigration(id).catch(() => undefined);
      if (r?.connectivity) this.#observeGaps(r);
      if (!r || r.connectivity || !r.measuring) this.#gaps.delete(id);
    }
  }

  #inFlight: Promise<void> | undefined;

  /** One read per scrape, shared by the gauges' collects (they start together). */
  #refreshCluster(): Promise<void> {
    return (this.#inFlight ??= this.#collectCluster().finally(() => {
      this.#inFlight = undefined;
    }));
  }

  async #collectCluster(): Promise<void> {
    const c = this.#controller;
    try {
      const [hosts, vms] = await Promise.all([c.listHosts(), c.listVms()]);
      this.hosts.reset();
      this.agentUp.reset();
      for (const s of HOST_STATES) this.hosts.set({ state: s }, hosts.filter((h) => h.state === s).length);
      for (const h of hosts) this.agentUp.set({ host: h.name }, h.state === "down" ? 0 : 1);
      this.vms.reset();
      for (const s of VM_STATES) this.vms.set({ state: s }, vms.filter((v) => v.state === s).length);
    } catch (e) {
      this.#log.warn({ err: e instanceof Error ? e.message : String(e) }, "metrics: cannot read hosts and VMs");
    }
    try {
      const rows = await c.devices();
      this.vfs.reset();
      this.vfsLeased.reset();
      this.leases.reset();
      for (const d of rows) {
        const pool = { host: d.host, pf: d.pf, network: d.network };
        this.vfs.inc(pool);
        this.vfsLeased.inc(pool, d.lease === null ? 0 : 1);
        if (d.lease !== null) this.leases.inc({ host: d.host, kind: d.lease.startsWith("migration") ? "migration" : "instance" });
      }
    } catch (e) {
      this.#log.warn({ err: e instanceof Error ? e.message : String(e) }, "metrics: cannot read the VF pools");
    }
  }
}

/** GET /metrics on the controller's app; the event subscription ends when the app closes. */
export function metricsRoutes(app: ControllerFastify, deps: { controller: Controller; log?: Logger | undefined }, log: Logger): ControllerMetrics {
  const m = new ControllerMetrics(deps.controller, deps.log ?? log);
  metricsRoute(app, m.registry, "Prometheus metrics (text format): migrations by kind and outcome, their duration, downtime, phases and connectivity gaps; hosts, agents, VF pools, leases, VMs", { before: () => m.settled() });
  app.addHook("onClose", () => m.close());
  return m;
}
