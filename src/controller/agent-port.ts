// The coordinator's AgentPort over the agents' HTTP API: one call per
// migration step, keyed by the migration id (the agents make each step
// idempotent). Replies are validated against schemas; problems come back as
// FerryErrors with the agent's code.
import { FerryError } from "../core/errors.ts";
import type { AgentClient } from "../wire/agent-client.ts";
import type { RequestOptions } from "../core/http/client.ts";
import type { AgentPort, CancelSourceResult, ConfirmResult, FinishResult, PerformResult, PrecheckResult, PrepareResult, SwitchoverResult } from "../migration/port.ts";
import type { MigrationPlan } from "../migration/types.ts";

export type AgentDirectory = (host: string) => AgentClient;

/** A step waits as long as its own deadlines say (the signal ends it sooner). */
const stepOptions = (signal: AbortSignal): RequestOptions => ({ signal, timeoutMs: 2 * 3_600_000 });

export class HttpAgentPort implements AgentPort {
  readonly #agents: AgentDirectory;
  /** Prepared destination instances, by migration id (also recoverable by asking prepare again). */
  readonly #prepared = new Map<string, PrepareResult>();
  /** A host's migration certificate subject as it advertised it (undefined: none, or plain TCP). */
  readonly #identityOf: (host: string) => Promise<string | undefined>;

  constructor(agents: AgentDirectory, identityOf: (host: string) => Promise<string | undefined> = () => Promise.resolve(undefined)) {
    this.#agents = agents;
    this.#identityOf = identityOf;
  }

  async begin(plan: MigrationPlan, signal: AbortSignal): Promise<void> {
    await this.#agents(plan.source.host).begin(plan.id, { instanceId: plan.source.instanceId }, stepOptions(signal));
  }

  async prepare(plan: MigrationPlan, signal: AbortSignal): Promise<PrepareResult> {
    // the source's frozen definition (begin is idempotent), then the destination builds its instance from it
    const { spec } = await this.#agents(plan.source.host).begin(plan.id, { instanceId: plan.source.instanceId }, stepOptions(signal));
    const nics = plan.nics.map((n) => ({ name: n.name, vf: n.after?.vf ?? null }));
    const ttl = plan.deadlines.unplugMs + plan.deadlines.convergeMs + plan.deadlines.primaryBackMs + 10 * plan.deadlines.stepMs;
    const adopt = plan.link?.adoptFrom.host === plan.destination.host ? { adoptFrom: plan.link.adoptFrom.instanceId } : {};
    // with TLS on the migration network the destination admits only the planned source's certificate
    const sourceIdentity = await this.#identityOf(plan.source.host);
    const r = await this.#agents(plan.destination.host).prepare(plan.id, { spec, nics, leaseTtlMs: Math.min(ttl, 24 * 3_600_000), primaryBackMs: Math.min(plan.deadlines.primaryBackMs, 3_600_000), ...adopt, ...(sourceIdentity === undefined ? {} : { sourceIdentity }) }, stepOptions(signal));
    this.#prepared.set(plan.id, r);
    return r;
  }

  async perform(plan: MigrationPlan, uri: string, signal: AbortSignal): Promise<PerformResult> {
    const { unplugMs, convergeMs, precheckMs } = plan.deadlines;
    const r = await this.#agents(plan.source.host).perform(plan.id, { instanceId: plan.source.instanceId, uri, unplugMs, convergeMs, precheckMs, ...(plan.maxBandwidthBytes === undefined ? {} : { maxBandwidthBytes: plan.maxBandwidthBytes }), ...(plan.convergence === undefined ? {} : { convergence: plan.convergence }) }, stepOptions(signal));
    return { status: "pre-switchover", ...(r.convergence === undefined ? {} : { convergence: r.convergence }) };
  }

  async precheck(plan: MigrationPlan, signal: AbortSignal): Promise<PrecheckResult> {
    const r = await this.#agents(plan.destination.host).precheck(plan.id, { timeoutMs: plan.deadlines.precheckMs }, stepOptions(signal));
    return r.reason === undefined ? { ok: r.ok } : { ok: r.ok, reason: r.reason };
  }

  async switchover(plan: MigrationPlan, signal: AbortSignal): Promise<SwitchoverResult> {
    const r = await this.#agents(plan.source.host).switchover(plan.id, { instanceId: plan.source.instanceId, timeoutMs: plan.deadlines.stepMs }, stepOptions(signal));
    return { totalMs: r.totalMs, downtimeMs: r.downtimeMs, ...(r.transferredBytes === undefined ? {} : { transferredBytes: r.transferredBytes }), ...(r.timeline === undefined ? {} : { timeline: r.timeline }) };
  }

  async finish(plan: MigrationPlan, signal: AbortSignal): Promise<FinishResult> {
    const r = await this.#agents(plan.destination.host).finish(plan.id, { primaryBackMs: plan.deadlines.primaryBackMs }, stepOptions(signal));
    const nics = r.nics.map((n) => (n.error === undefined ? { name: n.name, attached: n.attached } : { name: n.name, attached: n.attached, error: n.error }));
    return { nics, ...(r.timeline === undefined ? {} : { timeline: r.timeline }), ...(r.guestPanickedAt === undefined ? {} : { guestPanickedAt: r.guestPanickedAt }) };
  }

  async confirmSource(plan: MigrationPlan, success: boolean, signal: AbortSignal): Promise<ConfirmResult> {
    const r = await this.#agents(plan.source.host).confirm(plan.id, { instanceId: plan.source.instanceId, success }, stepOptions(signal));
    return r.pausedMs === undefined ? { state: r.state } : { state: r.state, pausedMs: r.pausedMs };
  }

  async abortDestination(plan: MigrationPlan, signal: AbortSignal): Promise<void> {
    await this.#agents(plan.destination.host).abort(plan.id, stepOptions(signal));
    this.#prepared.delete(plan.id);
  }

  async cancelSource(plan: MigrationPlan, signal: AbortSignal): Promise<CancelSourceResult> {
    const r = await this.#agents(plan.source.host).cancel(plan.id, { instanceId: plan.source.instanceId }, stepOptions(signal));
    return r.result;
  }
}

/** An AgentDirectory over a fixed map of host → client. */
export function agentDirectory(clients: ReadonlyMap<string, AgentClient>): AgentDirectory {
  return (host) => {
    const c = clients.get(host);
    if (!c) throw new FerryError("FERRY_ERR_AGENT", `no agent known for host ${host}`, { retryable: false, details: { host } });
    return c;
  };
}
