// What the agent's and the controller's HTTP clients share (after undici: one
// I/O seam, a timeout and a signal on every request, errors by kind): sending
// a request with the bearer token, and turning a reply into a value checked
// against its schema or into a FerryError — a problem body (RFC 7807 style:
// { code, message, retryable, details }) keeps the server's code; anything
// else is `kind` (FERRY_ERR_AGENT or FERRY_ERR_CONTROLLER, retryable when the
// server is unreachable or answered 5xx).
import type { Static, TSchema } from "typebox";
import { Errors } from "typebox/value";
import { checker } from "../check.ts";
import { ERROR_CODES, FerryError } from "../errors.ts";
import type { ErrorCode } from "../errors.ts";
import type { TlsMaterial } from "../tls.ts";
import { Problem } from "./schema.ts";

/** How a client of the agent or controller API is set up. */
export interface ClientOptions {
  /** e.g. https://127.0.0.1:7601 */
  baseUrl: string;
  token: string;
  /** Per-request timeout (default: the client's). */
  timeoutMs?: number;
  /** The I/O seam (default: global fetch, or a mutual-TLS fetch when `tls` is given). */
  fetch?: typeof fetch;
  /** Present this certificate and verify the server against this CA (https:// URLs only). */
  tls?: TlsMaterial | null;
}

/** Per request: a caller's signal and timeout. */
export interface RequestOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export type ClientErrorKind = "FERRY_ERR_AGENT" | "FERRY_ERR_CONTROLLER";

function isErrorCode(x: unknown): x is ErrorCode {
  return typeof x === "string" && Object.hasOwn(ERROR_CODES, x);
}

/** A problem body as a FerryError with the server's code, or null when `data` is not one. */
export function problemError(data: unknown, status: number): FerryError | null {
  if (!checker(Problem)(data) || !isErrorCode(data.code)) return null;
  return new FerryError(data.code, data.message, { retryable: data.retryable, details: { ...data.details, status } });
}

/** The server could not be reached, or stopped answering. */
export function unreachable(kind: ClientErrorKind, what: string, url: string, e: unknown, timedOutAfterMs: number | null): FerryError {
  const why = timedOutAfterMs !== null ? `no answer within ${timedOutAfterMs} ms` : e instanceof Error ? (e.cause instanceof Error ? e.cause.message : e.message) : String(e);
  return new FerryError(kind, `${what}: ${why}`, { cause: e, retryable: true, details: { url } });
}

export interface SendOptions {
  fetch: typeof fetch;
  kind: ClientErrorKind;
  baseUrl: string;
  token: string;
  method: string;
  path: string;
  body: unknown;
  accept: string;
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** More request headers (e.g. the controller's leadership term to an agent). */
  headers?: Record<string, string> | undefined;
}

/** Send one request; network failures are `kind` (retryable), an abort by the caller FERRY_ERR_ABORTED. */
export async function send(o: SendOptions): Promise<{ res: Response; timeout: AbortSignal }> {
  const timeout = AbortSignal.timeout(o.timeoutMs);
  const signal = o.signal ? AbortSignal.any([timeout, o.signal]) : timeout;
  const url = `${o.baseUrl}${o.path}`;
  try {
    const res = await o.fetch(url, {
      method: o.method,
      signal,
      headers: { ...o.headers, authorization: `Bearer ${o.token}`, accept: o.accept, ...(o.body === undefined ? {} : { "content-type": "application/json" }) },
      body: o.body === undefined ? undefined : JSON.stringify(o.body),
    });
    return { res, timeout };
  } catch (e) {
    if (o.signal?.aborted) throw new FerryError("FERRY_ERR_ABORTED", `${o.method} ${url}: aborted`, { cause: e });
    throw unreachable(o.kind, `${o.method} ${url}`, url, e, timeout.aborted ? o.timeoutMs : null);
  }
}

/** Send, read the whole reply, and check it against `schema`. */
export async function request<S extends TSchema>(o: SendOptions, schema: S): Promise<Static<S>> {
  const { res, timeout } = await send(o);
  const url = `${o.baseUrl}${o.path}`;
  const what = `${o.method} ${url}`;
  let text: string;
  try {
    text = await res.text();
  } catch (e) {
    if (o.signal?.aborted) throw new FerryError("FERRY_ERR_ABORTED", `${what}: aborted`, { cause: e });
    throw unreachable(o.kind, what, url, e, timeout.aborted ? o.timeoutMs : null);
  }
  let data: unknown;
  try {
    data = text === "" ? undefined : JSON.parse(text);
  } catch (e) {
    throw new FerryError(o.kind, `${what}: HTTP ${res.status} with a body that is not JSON`, { cause: e, retryable: res.status >= 500 });
  }
  if (!res.ok) throw problemError(data, res.status) ?? new FerryError(o.kind, `${what}: HTTP ${res.status}`, { retryable: res.status >= 500, details: { status: res.status } });
  if (!checker(schema)(data)) {
    const first = Errors(schema, data)[0];
    throw new FerryError(o.kind, `${what}: unexpected reply${first ? ` at ${first.instancePath || "/"}: ${first.message}` : ""}`, { details: { status: res.status } });
  }
  return data;
}
