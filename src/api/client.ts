// A typed client for the controller API (the CLI's only way in). One I/O seam
// (`fetch`), a timeout and a signal on every request; problem bodies come back
// as FerryErrors with the controller's code; network failures are
// FERRY_ERR_CONTROLLER (retryable). Replies are validated against the schemas.
import { Type } from "typebox";
import type { Static, TSchema } from "typebox";
import { Check, Errors } from "typebox/value";
import { Problem } from "../agent/api.ts";
import { ERROR_CODES, FerryError } from "../core/errors.ts";
import type { ErrorCode } from "../core/errors.ts";
import type { MigrationRecord } from "../migration/types.ts";
import type { CancelReport } from "../migration/runner.ts";
import type { CreateVmBodyT, DeviceRowT, EventView, HeartbeatBodyT, HostViewT, MigrateBodyT, MigrateReplyT, VmViewT } from "./schemas.ts";
import type { EvacuateBodyT } from "./evacuation-schemas.ts";
import { EvacuationList, EvacuationView } from "./evacuation-schemas.ts";
import type { EvacuationView as EvacuationViewT } from "../controller/evacuation.ts";
import { CancelView, Deleted, DeviceList, HeartbeatReply, HostList, HostView, MigrateReply, MigrationList, MigrationView, VmList, VmView } from "./schemas.ts";

export const DEFAULT_TIMEOUT_MS = 30_000;

export interface ControllerClientOptions {
  baseUrl: string;
  token: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface RequestOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === "string" && Object.hasOwn(ERROR_CODES, x);
}

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
    this.#fetch = o.fetch ?? fetch;
  }

  #unreachable(what: string, e: unknown, timedOut: boolean, ms: number): FerryError {
    const why = timedOut ? `no answer within ${ms} ms` : e instanceof Error ? (e.cause instanceof Error ? e.cause.message : e.message) : String(e);
    return new FerryError("FERRY_ERR_CONTROLLER", `${what}: ${why}`, { cause: e, retryable: true, details: { url: this.baseUrl } });
  }

  async #send(method: string, path: string, body: unknown, o: RequestOptions, accept: string): Promise<{ res: Response; signal: AbortSignal; timeout: AbortSignal; ms: number }> {
    const ms = o.timeoutMs ?? this.#timeoutMs;
    const timeout = AbortSignal.timeout(ms);
    const signal = o.signal ? AbortSignal.any([timeout, o.signal]) : timeout;
    try {
      const res = await this.#fetch(`${this.baseUrl}${path}`, {
        method,
        signal,
        headers: { authorization: `Bearer ${this.#token}`, accept, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { res, signal, timeout, ms };
    } catch (e) {
      if (o.signal?.aborted) throw new FerryError("FERRY_ERR_ABORTED", `${method} ${path}: aborted`, { cause: e });
      throw this.#unreachable(`${method} ${this.baseUrl}${path}`, e, timeout.aborted, ms);
    }
  }

  async request<S extends TSchema>(method: string, path: string, schema: S, body?: unknown, o: RequestOptions = {}): Promise<Static<S>> {
    const what = `${method} ${this.baseUrl}${path}`;
    const { res, timeout, ms } = await this.#send(method, path, body, o, "application/json");
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      throw this.#unreachable(what, e, timeout.aborted, ms);
    }
    let data: unknown;
    try {
      data = text === "" ? undefined : JSON.parse(text);
    } catch (e) {
      throw new FerryError("FERRY_ERR_CONTROLLER", `${what}: HTTP ${res.status} with a body that is not JSON`, { cause: e, retryable: res.status >= 500 });
    }
    if (!res.ok) {
      if (Check(Problem, data) && isErrorCode(data.code)) throw new FerryError(data.code, data.message, { retryable: data.retryable, details: { ...data.details, status: res.status } });
      throw new FerryError("FERRY_ERR_CONTROLLER", `${what}: HTTP ${res.status}`, { retryable: res.status >= 500, details: { status: res.status } });
    }
    if (!Check(schema, data)) {
      const first = Errors(schema, data)[0];
      throw new FerryError("FERRY_ERR_CONTROLLER", `${what}: unexpected reply${first ? ` at ${first.instancePath || "/"}: ${first.message}` : ""}`, { details: { status: res.status } });
    }
    return data;
  }

  heartbeat(body: HeartbeatBodyT, o?: RequestOptions): Promise<{ intervalMs: number }> {
    return this.request("POST", "/v1/agents/heartbeat", HeartbeatReply, body, o);
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
  createVm(body: CreateVmBodyT, o: RequestOptions = {}): Promise<VmViewT> {
    return this.request("POST", "/v1/vms", VmView, body, { timeoutMs: 90_000, ...o });
  }

  startVm(name: string, o: RequestOptions = {}): Promise<VmViewT> {
    return this.request("POST", `/v1/vms/${encodeURIComponent(name)}/start`, VmView, undefined, { timeoutMs: 90_000, ...o });
  }

  stopVm(name: string, o: RequestOptions = {}): Promise<VmViewT> {
    return this.request("POST", `/v1/vms/${encodeURIComponent(name)}/stop`, VmView, undefined, { timeoutMs: 60_000, ...o });
  }

  deleteVm(name: string, o: RequestOptions = {}): Promise<{ deleted: string }> {
    return this.request("DELETE", `/v1/vms/${encodeURIComponent(name)}`, Deleted, undefined, { timeoutMs: 60_000, ...o });
  }

  localMigrate(name: string, body: { qemuBinary?: string }, o: RequestOptions = {}): Promise<{ vm: VmViewT; result: object }> {
    return this.request("POST", `/v1/vms/${encodeURIComponent(name)}/local-migrate`, Type.Object({ vm: VmView, result: Type.Object({}, { additionalProperties: true }) }), body, { timeoutMs: 600_000, ...o });
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

  async migrations(o?: RequestOptions): Promise<MigrationRecord[]> {
    return (await this.request("GET", "/v1/migrations", MigrationList, undefined, o)).migrations;
  }

  migration(id: string, o?: RequestOptions): Promise<MigrationRecord> {
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
  async events(onEvent: (e: EventView) => void, o: { follow?: boolean; after?: number; signal?: AbortSignal } = {}): Promise<void> {
    const path = `/v1/events${q({ follow: o.follow ? "1" : undefined, after: o.after === undefined ? undefined : String(o.after) })}`;
    const { res } = await this.#send("GET", path, undefined, { ...(o.signal ? { signal: o.signal } : {}), timeoutMs: o.follow ? 2 ** 31 - 1 : this.#timeoutMs }, "text/event-stream");
    if (!res.ok || !res.body) {
      const text = await res.text();
      const data: unknown = JSON.parse(text || "null");
      if (Check(Problem, data) && isErrorCode(data.code)) throw new FerryError(data.code, data.message, { details: { status: res.status } });
      throw new FerryError("FERRY_ERR_CONTROLLER", `GET ${path}: HTTP ${res.status}`);
    }
    const decoder = new TextDecoder();
    let buf = "";
    try {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        let i: number;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data !== "") onEvent(JSON.parse(data) as EventView);
        }
      }
    } catch (e) {
      if (o.signal?.aborted) return;
      throw this.#unreachable(`GET ${this.baseUrl}${path}`, e, false, 0);
    }
  }
}
