// The coordinator's AgentPort over the agents' HTTP API: one call per
// migration step, keyed by the migration id (the agents make each step
// idempotent). Replies are validated against schemas; problems come back as
// FerryErrors with the agent's code.
import { Type } from "typebox";
import type { TSchema } from "typebox";
import { FerryError } from "../core/errors.ts";
import type { AgentClient } from "../agent/client.ts";
import type { AgentPort, CancelSourceResult, ConfirmResult, FinishResult, PerformResult, PrecheckResult, PrepareResult, SwitchoverResult } from "../migration/port.ts";
import type { MigrationPlan } from "../migration/types.ts";

export type AgentDirectory = (host: string) => AgentClient;

const Any = Type.Object({}, { additionalProperties: true });
const Begin = Type.Object({ spec: Type.Object({}, { additionalProperties: true }) }, { additionalProperties: true });
const Prepared = Type.Object({ instanceId: Type.String(), uri: Type.String() });
const Performed = Type.Object({ status: Type.Literal("pre-switchover") }, { additionalProperties: true });
const Checked = Type.Object({ ok: Type.Boolean(), reason: Type.Optional(Type.String()) });
const Switched = Type.Object({ totalMs: Type.Number(), downtimeMs: Type.Number() }, { additionalProperties: true });
const Finished = Type.Object({ nics: Type.Array(Type.Object({ name: Type.String(), attached: Type.Boolean(), error: Type.Optional(Type.String()) }, { additionalProperties: true })) }, { additionalProperties: true });
const Confirmed = Type.Object({ state: Type.Union([Type.Literal("stopped"), Type.Literal("running"), Type.Literal("gone")]), pausedMs: Type.Optional(Type.Number()) }, { additionalProperties: true });
const Cancelled = Type.Object({ result: Type.Union([Type.Literal("cancelled"), Type.Literal("completed"), Type.Literal("failed"), Type.Literal("not-running")]) });

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

  #call<S extends TSchema>(host: string, plan: MigrationPlan, step: string, schema: S, body: unknown, signal: AbortSignal) {
    return this.#agents(host).request("POST", `/v1/migrations/${encodeURIComponent(plan.id)}/${step}`, schema, body, { signal, timeoutMs: 2 * 3_600_000 });
  }

  async begin(plan: MigrationPlan, signal: AbortSignal): Promise<void> {
    await this.#call(plan.source.host, plan, "begin", Begin, { instanceId: plan.source.instanceId }, signal);
  }

  async prepare(plan: MigrationPlan, signal: AbortSignal): Promise<PrepareResult> {
    // the source's frozen definition (begin is idempotent), then the destination builds its instance from it
    const { spec } = await this.#call(plan.source.host, plan, "begin", Begin, { instanceId: plan.source.instanceId }, signal);
    const nics = plan.nics.map((n) => ({ name: n.name, vf: n.after?.vf ?? null }));
    const ttl = plan.deadlines.unplugMs + plan.deadlines.convergeMs + plan.deadlines.primaryBackMs + 10 * plan.deadlines.stepMs;
    const adopt = plan.link?.adoptFrom.host === plan.destination.host ? { adoptFrom: plan.link.adoptFrom.instanceId } : {};
    // with TLS on the migration network the destination admits only the planned source's certificate
    const sourceIdentity = await this.#identityOf(plan.source.host);
    const r = await this.#call(plan.destination.host, plan, "prepare", Prepared, { spec, nics, leaseTtlMs: Math.min(ttl, 24 * 3_600_000), ...adopt, ...(sourceIdentity === undefined ? {} : { sourceIdentity }) }, signal);
    this.#prepared.set(plan.id, r);
    return r;
  }

  async perform(plan: MigrationPlan, uri: string, signal: AbortSignal): Promise<PerformResult> {
    const { unplugMs, convergeMs, precheckMs } = plan.deadlines;
    await this.#call(plan.source.host, plan, "perform", Performed, { instanceId: plan.source.instanceId, uri, unplugMs, convergeMs, precheckMs, ...(plan.maxBandwidthBytes === undefined ? {} : { maxBandwidthBytes: plan.maxBandwidthBytes }) }, signal);
    return { status: "pre-switchover" };
  }

  async precheck(plan: MigrationPlan, signal: AbortSignal): Promise<PrecheckResult> {
    const r = await this.#call(plan.destination.host, plan, "precheck", Checked, {}, signal);
    return r.reason === undefined ? { ok: r.ok } : { ok: r.ok, reason: r.reason };
  }

  async switchover(plan: MigrationPlan, signal: AbortSignal): Promise<SwitchoverResult> {
    const r = await this.#call(plan.source.host, plan, "switchover", Switched, { instanceId: plan.source.instanceId, timeoutMs: plan.deadlines.stepMs }, signal);
    return { totalMs: r.totalMs, downtimeMs: r.downtimeMs };
  }

  async finish(plan: MigrationPlan, signal: AbortSignal): Promise<FinishResult> {
    const r = await this.#call(plan.destination.host, plan, "finish", Finished, { primaryBackMs: plan.deadlines.primaryBackMs }, signal);
    return { nics: r.nics.map((n) => (n.error === undefined ? { name: n.name, attached: n.attached } : { name: n.name, attached: n.attached, error: n.error })) };
  }

  async confirmSource(plan: MigrationPlan, success: boolean, signal: AbortSignal): Promise<ConfirmResult> {
    const r = await this.#call(plan.source.host, plan, "confirm", Confirmed, { instanceId: plan.source.instanceId, success }, signal);
    return r.pausedMs === undefined ? { state: r.state } : { state: r.state, pausedMs: r.pausedMs };
  }

  async abortDestination(plan: MigrationPlan, signal: AbortSignal): Promise<void> {
    await this.#call(plan.destination.host, plan, "abort", Any, {}, signal);
    this.#prepared.delete(plan.id);
  }

  async cancelSource(plan: MigrationPlan, signal: AbortSignal): Promise<CancelSourceResult> {
    const r = await this.#call(plan.source.host, plan, "cancel", Cancelled, { instanceId: plan.source.instanceId }, signal);
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
