// The agent's Prometheus metrics (GET /metrics; the README lists them): this
// host's QEMU instances, VF pools and leases, read at each scrape.
import { Gauge } from "prom-client";
import type { Registry } from "prom-client";
import { metricsRoute, newRegistry } from "../../core/http/metrics.ts";
import { silentLogger } from "../../core/log.ts";
import type { Logger } from "../../core/log.ts";
import type { Agent } from "../agent.ts";
import type { AgentAppDeps, RouteFile } from "./deps.ts";

export class AgentMetrics {
  readonly registry: Registry = newRegistry();
  readonly #agent: Agent;
  readonly #log: Logger;

  // prom-client gathers the metrics concurrently: each gauge's collect awaits the one read of this scrape, which sets them all.
  readonly instances = new Gauge({ name: "ferry_agent_qemu_instances", help: "QEMU instances on this host by QMP status (running, paused, inmigrate, …, or unreachable)", labelNames: ["state"] as const, registers: [this.registry], collect: () => this.#refresh() });
  readonly vfs = new Gauge({ name: "ferry_agent_vf_pool_vfs", help: "Usable VFs on this host per PF and physical network", labelNames: ["pf", "network"] as const, registers: [this.registry], collect: () => this.#refresh() });
  readonly vfsLeased = new Gauge({ name: "ferry_agent_vf_pool_leased", help: "Of those, the VFs leased", labelNames: ["pf", "network"] as const, registers: [this.registry], collect: () => this.#refresh() });
  readonly leases = new Gauge({ name: "ferry_agent_vf_leases", help: "VF leases on this host by holder kind (instance, migration)", labelNames: ["kind"] as const, registers: [this.registry], collect: () => this.#refresh() });

  constructor(agent: Agent, log: Logger) {
    this.#agent = agent;
    this.#log = log;
  }

  #inFlight: Promise<void> | undefined;

  /** One read per scrape, shared by the gauges' collects (they start together). */
  #refresh(): Promise<void> {
    return (this.#inFlight ??= this.#collect().finally(() => {
      this.#inFlight = undefined;
    }));
  }

  async #collect(): Promise<void> {
    try {
      const { instances } = await this.#agent.listInstances();
      this.instances.reset();
      for (const i of instances) this.instances.inc({ state: i.state });
    } catch (e) {
      this.#log.warn({ err: e instanceof Error ? e.message : String(e) }, "metrics: cannot list the instances");
    }
    const inv = this.#agent.inventory();
    this.vfs.reset();
    this.vfsLeased.reset();
    this.leases.reset();
    for (const k of ["instance", "migration"] as const) this.leases.set({ kind: k }, 0);
    for (const vf of inv.vfs) {
      const pool = { pf: vf.pf, network: vf.network };
      this.vfs.inc(pool);
      this.vfsLeased.inc(pool, vf.lease === null ? 0 : 1);
    }
    for (const l of inv.leases) this.leases.inc({ kind: l.holder.kind });
  }
}

export const metricsRoutes: RouteFile = (app, deps: AgentAppDeps) => {
  const m = new AgentMetrics(deps.agent, deps.log ?? silentLogger);
  metricsRoute(app, m.registry, "Prometheus metrics (text format): this host's QEMU instances, VF pools per PF and network, leases");
};
