// A small typed client for the agent API (after undici: one I/O seam — the
// `fetch` function — that tests may replace; a timeout and a signal on every
// request; errors by kind with stable codes). Problem bodies come back as
// FerryErrors with the agent's code; network failures are FERRY_ERR_AGENT
// (retryable). Replies are validated against the API's schemas.
import type { TSchema, Static } from "typebox";
import { Check, Errors } from "typebox/value";
import { ERROR_CODES, FerryError } from "../core/errors.ts";
import type { ErrorCode } from "../core/errors.ts";
import type { LeaseHolder } from "../host/leases.ts";
import type { VmSpec } from "../model/vm.ts";
import { Health, InstanceList, InstanceView, Inventory, Lease, LeaseList, Problem, Released, Stopped } from "./api.ts";
import type { HealthView, HolderInputBody, InstanceListView, InstanceViewT, InventoryView, LeaseListView, LeaseView, ReleasedView, StoppedView } from "./api.ts";

export const DEFAULT_TIMEOUT_MS = 10_000;

export interface AgentClientOptions {
  /** e.g. http://127.0.0.1:7601 */
  baseUrl: string;
  token: string;
  /** Per-request timeout (default 10 s). */
  timeoutMs?: number;
  /** The I/O seam (default: global fetch). */
  fetch?: typeof fetch;
}

export interface RequestOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** A holder as the client names it: migration holders give ttlMs (the agent's clock sets expiresAt). */
export type HolderRef = HolderInputBody;

/** A LeaseHolder → how the API names it (identity only). */
export function holderRef(h: LeaseHolder): HolderRef {
  return h.kind === "instance" ? { kind: h.kind, vmUuid: h.vmUuid, instanceId: h.instanceId } : { kind: h.kind, vmUuid: h.vmUuid, migrationId: h.migrationId };
}

function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === "string" && Object.hasOwn(ERROR_CODES, x);
}

export class AgentClient {
  readonly baseUrl: string;
  readonly #token: string;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;

  constructor(o: AgentClientOptions) {
    this.baseUrl = o.baseUrl.replace(/\/+$/, "");
    this.#token = o.token;
    this.#timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#fetch = o.fetch ?? fetch;
  }

  /**
   * One request; the reply is validated against `schema`. Public so that
   * routes added later (migration steps) get the same handling.
   */
  async request<S extends TSchema>(method: string, path: string, schema: S, body?: unknown, o: RequestOptions = {}): Promise<Static<S>> {
    const timeout = AbortSignal.timeout(o.timeoutMs ?? this.#timeoutMs);
    const signal = o.signal ? AbortSignal.any([timeout, o.signal]) : timeout;
    const what = `${method} ${this.baseUrl}${path}`;
    let res: Response;
    let text: string;
    try {
      res = await this.#fetch(`${this.baseUrl}${path}`, {
        method,
        signal,
        headers: { authorization: `Bearer ${this.#token}`, accept: "application/json", ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      text = await res.text();
    } catch (e) {
      if (o.signal?.aborted) throw new FerryError("FERRY_ERR_ABORTED", `${what}: aborted`, { cause: e });
      const why = timeout.aborted ? `no answer within ${o.timeoutMs ?? this.#timeoutMs} ms` : e instanceof Error ? (e.cause instanceof Error ? e.cause.message : e.message) : String(e);
      throw new FerryError("FERRY_ERR_AGENT", `${what}: ${why}`, { cause: e, retryable: true, details: { url: `${this.baseUrl}${path}` } });
    }
    let data: unknown;
    try {
      data = text === "" ? undefined : JSON.parse(text);
    } catch (e) {
      throw new FerryError("FERRY_ERR_AGENT", `${what}: HTTP ${res.status} with a body that is not JSON`, { cause: e, retryable: res.status >= 500 });
    }
    if (!res.ok) {
      if (Check(Problem, data) && isErrorCode(data.code)) {
        throw new FerryError(data.code, data.message, { retryable: data.retryable, details: { ...data.details, status: res.status } });
      }
      throw new FerryError("FERRY_ERR_AGENT", `${what}: HTTP ${res.status}`, { retryable: res.status >= 500, details: { status: res.status } });
    }
    if (!Check(schema, data)) {
      const first = Errors(schema, data)[0];
      throw new FerryError("FERRY_ERR_AGENT", `${what}: unexpected reply${first ? ` at ${first.instancePath || "/"}: ${first.message}` : ""}`, { details: { status: res.status } });
    }
    return data;
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
}
