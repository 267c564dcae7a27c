// A small typed client for the agent API (after undici: one I/O seam — the
// `fetch` function — that tests may replace; a timeout and a signal on every
// request; errors by kind with stable codes). Problem bodies come back as
// FerryErrors with the agent's code; network failures are FERRY_ERR_AGENT
// (retryable). Replies are validated against the API's schemas.
import type { TSchema, Static } from "typebox";
import { fetchFor } from "../core/tls.ts";
import type { LeaseHolder } from "../host/leases.ts";
import type { VmSpec } from "../model/vm.ts";
import { Health, InstanceList, InstanceView, Inventory, Lease, LeaseList, Released, Stopped } from "./agent-api.ts";
import type { HealthView, HolderInputBody, InstanceListView, InstanceViewT, InventoryView, LeaseListView, LeaseView, ReleasedView, StoppedView } from "./agent-api.ts";
import { request } from "../core/http/client.ts";
import { DirtyRateReply, LocalMigrateReply, MigrationLimits, MigrationProgress, RestoreReply, SaveReply } from "./instance-ops.ts";
import type { DirtyRateBody, LocalMigrateBody, MigrationLimitsBody, RestoreBody, SaveBody } from "./instance-ops.ts";
import { AbortReply, BeginReply, CancelReply, ConfirmReply, FinishReply, PerformReply, PrecheckReply, PrepareReply, SwitchoverReply } from "./steps.ts";
import type { PrecheckBody } from "./steps.ts";
import type { PerformBody, PrepareBody } from "./steps.ts";
import type { ClientOptions, RequestOptions } from "../core/http/client.ts";
import { TERM_HEADER } from "./controllers.ts";

export const DEFAULT_TIMEOUT_MS = 10_000;

export interface AgentClientOptions extends ClientOptions {
  /** The calling controller's leadership term, sent with every request (TERM_HEADER); null: none (a follower's reads). */
  term?: () => number | null;
}
export type { RequestOptions };

/** A holder as the client names it: migration holders give ttlMs (the agent's clock sets expiresAt). */
export type HolderRef = HolderInputBody;

/** A LeaseHolder → how the API names it (identity only). */
export function holderRef(h: LeaseHolder): HolderRef {
  return h.kind === "instance" ? { kind: h.kind, vmUuid: h.vmUuid, instanceId: h.instanceId } : { kind: h.kind, vmUuid: h.vmUuid, migrationId: h.migrationId };
}

export class AgentClient {
  readonly baseUrl: string;
  readonly #token: string;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;
  readonly #term: () => number | null;

  constructor(o: AgentClientOptions) {
    this.baseUrl = o.baseUrl.replace(/\/+$/, "");
    this.#token = o.token;
    this.#timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#fetch = o.fetch ?? fetchFor(o.tls);
    this.#term = o.term ?? (() => null);
  }

  /**
   * One request; the reply is validated against `schema`. Public so that
   * routes added later (migration steps) get the same handling.
   */
  request<S extends TSchema>(method: string, path: string, schema: S, body?: unknown, o: RequestOptions = {}): Promise<Static<S>> {
    const term = this.#term();
    return request({ fetch: this.#fetch, kind: "FERRY_ERR_AGENT", baseUrl: this.baseUrl, token: this.#token, method, path, body, accept: "application/json", timeoutMs: o.timeoutMs ?? this.#timeoutMs, signal: o.signal, ...(term === null ? {} : { headers: { [TERM_HEADER]: String(term) } }) }, schema);
  }

  health(o?: RequestOptions): Promise<HealthView> {
    return this.request("GET", "/v1/health", Health, undefined, o);
  }

  inventory(o?: RequestOptions): Promise<InventoryView> {
    return this.request("GET", "/v1/inventory", Inventory, undefined, o);
  }

  leases(o?: RequestOptions): Promise<LeaseListView> {
    return this.request("GET", "/v1/leases", LeaseList, undefined, o);
  }

  acquireLease(vf: string, holder: HolderRef, o?: RequestOptions): Promise<LeaseView> {
    return this.request("POST", "/v1/leases", Lease, { vf, holder }, o);
  }

  releaseLease(vf: string, holder: HolderRef, o?: RequestOptions): Promise<ReleasedView> {
    return this.request("DELETE", `/v1/leases/${encodeURIComponent(vf)}`, Released, { holder }, o);
  }

  transferLease(vf: string, from: HolderRef, to: HolderRef, o?: RequestOptions): Promise<LeaseView> {
    return this.request("POST", `/v1/leases/${encodeURIComponent(vf)}/transfer`, Lease, { from, to }, o);
  }

  instances(o?: RequestOptions): Promise<InstanceListView> {
    return this.request("GET", "/v1/instances", InstanceList, undefined, o);
  }

  instance(id: string, o?: RequestOptions): Promise<InstanceViewT> {
    return this.request("GET", `/v1/instances/${encodeURIComponent(id)}`, InstanceView, undefined, o);
  }

  /** Starting boots QEMU: allow more time than a query (default 60 s). */
  startInstance(spec: VmSpec, o: RequestOptions & { incoming?: boolean } = {}): Promise<InstanceViewT> {
    const body = o.incoming === undefined ? { spec } : { spec, incoming: o.incoming };
    return this.request("POST", "/v1/instances", InstanceView, body, { timeoutMs: 60_000, ...o });
  }

  stopInstance(id: string, o: RequestOptions = {}): Promise<StoppedView> {
    return this.request("POST", `/v1/instances/${encodeURIComponent(id)}/stop`, Stopped, undefined, { timeoutMs: 30_000, ...o });
  }
  /** Local migration (a QEMU upgrade in place) of instance `id`. */
  localMigrate(id: string, body: LocalMigrateBody, o?: RequestOptions): Promise<LocalMigrateReply> {
    return this.request("POST", `/v1/instances/${encodeURIComponent(id)}/local-migrate`, LocalMigrateReply, body, o);
  }

  /** Save instance `id` to a state file in the host's saveDir (the instance stops, its VFs are released). */
  save(id: string, body: SaveBody, o?: RequestOptions): Promise<SaveReply> {
    return this.request("POST", `/v1/instances/${encodeURIComponent(id)}/save`, SaveReply, body, o);
  }

  /** Restore a saved VM on this host, its NICs on the VFs given. */
  restore(body: RestoreBody, o?: RequestOptions): Promise<RestoreReply> {
    return this.request("POST", "/v1/instances/restore", RestoreReply, body, o);
  }

  /** Instance `id`'s migration as its QEMU reports it. */
  migrationProgress(id: string, o?: RequestOptions): Promise<MigrationProgress> {
    return this.request("GET", `/v1/instances/${encodeURIComponent(id)}/migration`, MigrationProgress, undefined, o);
  }

  /** Measure instance `id`'s guest dirty rate (for `seconds`, default 1), with the migration parameters it holds now. */
  dirtyRate(id: string, body: DirtyRateBody = {}, o?: RequestOptions): Promise<DirtyRateReply> {
    return this.request("POST", `/v1/instances/${encodeURIComponent(id)}/dirty-rate`, DirtyRateReply, body, o);
  }

  /** Change instance `id`'s outgoing migration's bandwidth cap or downtime limit while it streams; answers what QEMU holds then. */
  setMigrationLimits(id: string, body: MigrationLimitsBody, o?: RequestOptions): Promise<MigrationLimits> {
    return this.request("POST", `/v1/instances/${encodeURIComponent(id)}/migration/parameters`, MigrationLimits, body, o);
  }

  // ---- migration steps (wire/steps.ts), keyed by the migration id

  #step<S extends TSchema>(id: string, step: string, schema: S, body: unknown, o?: RequestOptions): Promise<Static<S>> {
    return this.request("POST", `/v1/migrations/${encodeURIComponent(id)}/${step}`, schema, body, o);
  }

  begin(id: string, body: { instanceId: string }, o?: RequestOptions): Promise<BeginReply> {
    return this.#step(id, "begin", BeginReply, body, o);
  }

  prepare(id: string, body: PrepareBody, o?: RequestOptions): Promise<PrepareReply> {
    return this.#step(id, "prepare", PrepareReply, body, o);
  }

  perform(id: string, body: PerformBody, o?: RequestOptions): Promise<PerformReply> {
    return this.#step(id, "perform", PerformReply, body, o);
  }

  cancel(id: string, body: { instanceId: string }, o?: RequestOptions): Promise<CancelReply> {
    return this.#step(id, "cancel", CancelReply, body, o);
  }

  precheck(id: string, body: PrecheckBody, o?: RequestOptions): Promise<PrecheckReply> {
    return this.#step(id, "precheck", PrecheckReply, body, o);
  }

  switchover(id: string, body: { instanceId: string; timeoutMs: number }, o?: RequestOptions): Promise<SwitchoverReply> {
    return this.#step(id, "switchover", SwitchoverReply, body, o);
  }

  finish(id: string, body: { primaryBackMs: number }, o?: RequestOptions): Promise<FinishReply> {
    return this.#step(id, "finish", FinishReply, body, o);
  }

  confirm(id: string, body: { instanceId: string; success: boolean }, o?: RequestOptions): Promise<ConfirmReply> {
    return this.#step(id, "confirm", ConfirmReply, body, o);
  }

  abort(id: string, o?: RequestOptions): Promise<AbortReply> {
    return this.#step(id, "abort", AbortReply, {}, o);
  }
}
