// A typed client for the controller API (the CLI's only way in). One I/O seam
// (`fetch`), a timeout and a signal on every request; problem bodies come back
// as FerryErrors with the controller's code; network failures are
// FERRY_ERR_CONTROLLER (retryable). Replies are validated against the schemas.
import type { Static, TSchema } from "typebox";
import { problemError, request, send, unreachable } from "../core/http/client.ts";
import type { ClientOptions, RequestOptions, SendOptions } from "../core/http/client.ts";
import { FerryError } from "../core/errors.ts";
import { failoverFetch } from "../core/http/failover.ts";
import { fetchFor } from "../core/tls.ts";
import { createParser } from "eventsource-parser";
import { ForceCompleteView, MigrationLimitsView } from "../wire/migration-stream.ts";
import type { ForceCompleteInputT, ForceCompleteViewT, MigrationLimitsInputT, MigrationLimitsViewT, MigrationStreamEvent } from "../wire/migration-stream.ts";
import type { CancelReport } from "../migration/runner.ts";
import type { CreatedVmT, CreateVmBodyT, DeviceRowT, EventView, HeartbeatBodyT, HostViewT, LocalMigrateViewT, MigrateBodyT, MigrateReplyT, MigrationViewT, VmPolicyBodyT, VmViewT } from "../wire/controller-api.ts";
import type { EvacuateBodyT } from "../wire/evacuation.ts";
import { ControllersView } from "../wire/controllers.ts";
import type { ControllersViewT } from "../wire/controllers.ts";
import { EvacuationList, EvacuationView } from "../wire/evacuation.ts";
import type { EvacuationView as EvacuationViewT } from "../wire/evacuation.ts";
import { CancelView, CreatedVm, LocalMigrateView, Deleted, DeviceList, HeartbeatReply, HostList, HostView, MigrateReply, MigrationList, MigrationView, VmList, VmView } from "../wire/controller-api.ts";

export const DEFAULT_TIMEOUT_MS = 30_000;

export type ControllerClientOptions = ClientOptions & {
  /** More URLs of the same cluster's controllers, tried in order when `baseUrl` (or the last that answered) cannot be connected to. */
  alternates?: readonly string[];
};
export type { RequestOptions };

const q = (o: Record<string, string | undefined>): string => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(o)) if (v !== undefined) p.set(k, v);
  const s = p.toString();
  return s === "" ? "" : `?${s}`;
};

export class ControllerClient {
  readonly baseUrl: string;
  readonly #token: string;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;

  constructor(o: ControllerClientOptions) {
    this.baseUrl = o.baseUrl.replace(/\/+$/, "");
    this.#token = o.token;
    this.#timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const inner = o.fetch ?? fetchFor(o.tls);
    this.#fetch = o.alternates && o.alternates.length > 0 ? failoverFetch([this.baseUrl, ...o.alternates], inner) : inner;
  }

  #options(method: string, path: string, body: unknown, o: RequestOptions, accept: string): SendOptions {
    return { fetch: this.#fetch, kind: "FERRY_ERR_CONTROLLER", baseUrl: this.baseUrl, token: this.#token, method, path, body, accept, timeoutMs: o.timeoutMs ?? this.#timeoutMs, signal: o.signal };
  }

  request<S extends TSchema>(method: string, path: string, schema: S, body?: unknown, o: RequestOptions = {}): Promise<Static<S>> {
    return request(this.#options(method, path, body, o, "application/json"), schema);
  }

  heartbeat(body: HeartbeatBodyT, o?: RequestOptions): Promise<{ intervalMs: number; ended?: string[] }> {
    return this.request("POST", "/v1/agents/heartbeat", HeartbeatReply, body, o);
  }

  /** The controllers, the leader and its term. */
  controllers(o?: RequestOptions): Promise<ControllersViewT> {
    return this.request("GET", "/v1/controllers", ControllersView, undefined, o);
  }

  async hosts(o?: RequestOptions): Promise<HostViewT[]> {
    return (await this.request("GET", "/v1/hosts", HostList, undefined, o)).hosts;
  }

  async devices(f: { host?: string; network?: string } = {}, o?: RequestOptions): Promise<DeviceRowT[]> {
    return (await this.request("GET", `/v1/devices${q(f)}`, DeviceList, undefined, o)).devices;
  }

  async vms(o?: RequestOptions): Promise<VmViewT[]> {
    return (await this.request("GET", "/v1/vms", VmList, undefined, o)).vms;
  }

  vm(name: string, o?: RequestOptions): Promise<VmViewT> {
    return this.request("GET", `/v1/vms/${encodeURIComponent(name)}`, VmView, undefined, o);
  }

  /** Creating boots QEMU on the host: allow more time than a query (default 90 s). */
  createVm(body: CreateVmBodyT, o: RequestOptions = {}): Promise<CreatedVmT> {
    return this.request("POST", "/v1/vms", CreatedVm, body, { timeoutMs: 90_000, ...o });
  }

  startVm(name: string, o: RequestOptions = {}): Promise<VmViewT> {
    return this.request("POST", `/v1/vms/${encodeURIComponent(name)}/start`, VmView, undefined, { timeoutMs: 90_000, ...o });
  }

  stopVm(name: string, o: RequestOptions = {}): Promise<VmViewT> {
    return this.request("POST", `/v1/vms/${encodeURIComponent(name)}/stop`, VmView, undefined, { timeoutMs: 60_000, ...o });
  }

  setVmPolicy(name: string, body: VmPolicyBodyT, o: RequestOptions = {}): Promise<VmViewT> {
    return this.request("PATCH", `/v1/vms/${encodeURIComponent(name)}`, VmView, body, o);
  }

  deleteVm(name: string, o: RequestOptions = {}): Promise<{ deleted: string }> {
    return this.request("DELETE", `/v1/vms/${encodeURIComponent(name)}`, Deleted, undefined, { timeoutMs: 60_000, ...o });
  }

  localMigrate(name: string, body: { qemuBinary?: string }, o: RequestOptions = {}): Promise<LocalMigrateViewT> {
    return this.request("POST", `/v1/vms/${encodeURIComponent(name)}/local-migrate`, LocalMigrateView, body, { timeoutMs: 600_000, ...o });
  }

  saveVm(name: string, file: string, o: RequestOptions = {}): Promise<VmViewT> {
    return this.request("POST", `/v1/vms/${encodeURIComponent(name)}/save`, VmView, { file }, { timeoutMs: 600_000, ...o });
  }

  restoreVm(name: string, host: string | undefined, o: RequestOptions = {}): Promise<VmViewT> {
    return this.request("POST", `/v1/vms/${encodeURIComponent(name)}/restore`, VmView, host === undefined ? {} : { host }, { timeoutMs: 600_000, ...o });
  }

  migrate(body: MigrateBodyT, o?: RequestOptions): Promise<MigrateReplyT> {
    return this.request("POST", "/v1/migrations", MigrateReply, body, o);
  }

  async migrations(o?: RequestOptions): Promise<MigrationViewT[]> {
    return (await this.request("GET", "/v1/migrations", MigrationList, undefined, o)).migrations;
  }

  migration(id: string, o?: RequestOptions): Promise<MigrationViewT> {
    return this.request("GET", `/v1/migrations/${encodeURIComponent(id)}`, MigrationView, undefined, o);
  }

  /** Answers when the migration has ended (default timeout 10 min). */
  cancelMigration(id: string, o: RequestOptions = {}): Promise<CancelReport> {
    return this.request("POST", `/v1/migrations/${encodeURIComponent(id)}/cancel`, CancelView, undefined, { timeoutMs: 600_000, ...o });
  }

  drainHost(name: string, o?: RequestOptions): Promise<HostViewT> {
    return this.request("POST", `/v1/hosts/${encodeURIComponent(name)}/drain`, HostView, undefined, o);
  }

  undrainHost(name: string, o?: RequestOptions): Promise<HostViewT> {
    return this.request("POST", `/v1/hosts/${encodeURIComponent(name)}/undrain`, HostView, undefined, o);
  }

  /** Plan (body.plan) or start an evacuation of a host; it runs in the background (follow it with evacuation(id)). */
  evacuate(host: string, body: EvacuateBodyT, o: RequestOptions = {}): Promise<EvacuationViewT> {
    return this.request("POST", `/v1/hosts/${encodeURIComponent(host)}/evacuate`, EvacuationView, body, { timeoutMs: 60_000, ...o });
  }

  evacuation(id: string, o?: RequestOptions): Promise<EvacuationViewT> {
    return this.request("GET", `/v1/evacuations/${encodeURIComponent(id)}`, EvacuationView, undefined, o);
  }

  async evacuations(o?: RequestOptions): Promise<EvacuationViewT[]> {
    return (await this.request("GET", "/v1/evacuations", EvacuationList, undefined, o)).evacuations;
  }

  /** Read the event stream; with follow, until the signal aborts or the controller closes it. */
  events(onEvent: (e: EventView) => void, o: { follow?: boolean; after?: number; signal?: AbortSignal } = {}): Promise<void> {
    const path = `/v1/events${q({ follow: o.follow ? "1" : undefined, after: o.after === undefined ? undefined : String(o.after) })}`;
    return this.#stream(path, (data) => onEvent(JSON.parse(data) as EventView), { follow: o.follow === true, ...(o.signal ? { signal: o.signal } : {}) });
  }

  /**
   * Follow one migration (GET /v1/migrations/:id/events): the phases so far,
   * then its events and QEMU's progress, until `end` (the controller closes
   * the stream then) or the signal aborts.
   */
  migrationEvents(id: string, onEvent: (e: MigrationStreamEvent) => void, o: { signal?: AbortSignal } = {}): Promise<void> {
    return this.#stream(`/v1/migrations/${encodeURIComponent(id)}/events`, (data) => onEvent(JSON.parse(data) as MigrationStreamEvent), { follow: true, ...(o.signal ? { signal: o.signal } : {}) });
  }

  /** Change a running migration's bandwidth cap (MiB/s) or downtime limit (ms) on its source's QEMU. */
  setMigrationLimits(id: string, body: MigrationLimitsInputT, o?: RequestOptions): Promise<MigrationLimitsViewT> {
    return this.request("POST", `/v1/migrations/${encodeURIComponent(id)}/parameters`, MigrationLimitsView, body, o);
  }

  /** Make a running migration converge now (its downtime limit raised; the reply says what was done and why). */
  forceCompleteMigration(id: string, body: ForceCompleteInputT = {}, o?: RequestOptions): Promise<ForceCompleteViewT> {
    return this.request("POST", `/v1/migrations/${encodeURIComponent(id)}/force-complete`, ForceCompleteView, body, o);
  }

  /** An SSE stream's `data:` payloads (parsed by eventsource-parser), until it ends or the signal aborts. */
  async #stream(path: string, onData: (data: string) => void, o: { follow: boolean; signal?: AbortSignal }): Promise<void> {
    const { res } = await send(this.#options("GET", path, undefined, { ...(o.signal ? { signal: o.signal } : {}), timeoutMs: o.follow ? 2 ** 31 - 1 : this.#timeoutMs }, "text/event-stream"));
    if (!res.ok || !res.body) {
      const text = await res.text().catch(() => "");
      let data: unknown;
      try {
        data = JSON.parse(text || "null");
      } catch {
        data = undefined;
      }
      throw problemError(data, res.status) ?? new FerryError("FERRY_ERR_CONTROLLER", `GET ${path}: HTTP ${res.status}`, { retryable: res.status >= 500, details: { status: res.status } });
    }
    const decoder = new TextDecoder();
    const parser = createParser({ onEvent: (m) => { if (m.data !== "") onData(m.data); } });
    try {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) parser.feed(decoder.decode(chunk, { stream: true }));
    } catch (e) {
      if (o.signal?.aborted) return;
      throw unreachable("FERRY_ERR_CONTROLLER", `GET ${this.baseUrl}${path}`, this.baseUrl, e, null);
    }
  }
}
