// Mutual TLS for the agent and controller APIs (optional; bearer tokens stay
// required on top). A config names three PEM files — `tls: { cert, key, ca }`:
// this process's certificate and key (presented as a server and as a client)
// and the CA that must have signed the peer's certificate. Servers demand a
// client certificate (requestCert + rejectUnauthorized), so a client without
// one, or with one from another CA, is refused in the TLS handshake, before
// HTTP. Clients verify the server against the same CA.
//
// Global fetch cannot present a client certificate without undici's
// dispatcher (not a dependency), so tlsFetch is a fetch over node:https with
// the same shape, passed to the clients through their `fetch` seam.
import { request as httpsRequest, Agent as HttpsAgent } from "node:https";
import type { IncomingMessage } from "node:http";
import { readFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { FerryError } from "./errors.ts";

/** Paths of the PEM files, as a config names them. */
export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

/** The PEM contents. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
}

/** Read the three PEM files; FERRY_ERR_CONFIG naming the one that is unreadable or not PEM. */
export async function loadTls(files: TlsFiles, signal?: AbortSignal): Promise<TlsMaterial> {
  const read = async (what: keyof TlsFiles): Promise<Buffer> => {
    const file = files[what];
    let b: Buffer;
    try {
      b = await readFile(file, { signal });
    } catch (e) {
      throw new FerryError("FERRY_ERR_CONFIG", `tls.${what} ${file}: cannot read: ${e instanceof Error ? e.message : String(e)} (create one with 'ferry ca init' and 'ferry ca issue')`, { cause: e, details: { file, field: `tls.${what}` } });
    }
    if (!b.subarray(0, 4096).toString("latin1").includes("-----BEGIN ")) {
      throw new FerryError("FERRY_ERR_CONFIG", `tls.${what} ${file}: not a PEM file (issue certificates and keys with 'ferry ca init' and 'ferry ca issue')`, { details: { file, field: `tls.${what}` } });
    }
    return b;
  };
  return { cert: await read("cert"), key: await read("key"), ca: await read("ca") };
}

/** Options for https.createServer: client certificates signed by the CA are required. */
export function serverTlsOptions(m: TlsMaterial): { cert: Buffer; key: Buffer; ca: Buffer; requestCert: true; rejectUnauthorized: true; minVersion: "TLSv1.2" } {
  return { cert: m.cert, key: m.key, ca: m.ca, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.2" };
}

function headerList(init: RequestInit | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  new Headers(init?.headers).forEach((v, k) => (out[k] = v));
  return out;
}

function toResponse(res: IncomingMessage): Response {
  const headers = new Headers();
  for (const [k, v] of Object.entries(res.headers)) {
    if (v === undefined) continue;
    for (const x of Array.isArray(v) ? v : [v]) headers.append(k, x);
  }
  const status = res.statusCode ?? 500;
  const empty = status === 204 || status === 304 || (status >= 100 && status < 200);
  if (empty) res.resume();
  const body = empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>);
  return new Response(body, { status, statusText: res.statusMessage ?? "", headers });
}

/**
 * A fetch (the subset the Ferry clients use: string/URL input, method,
 * headers, string body, signal) over node:https that presents `m.cert` and
 * verifies the server against `m.ca`. Plain http:// URLs are refused: a client
 * configured for TLS never falls back to cleartext.
 */
export function tlsFetch(m: TlsMaterial): typeof fetch {
  const agent = new HttpsAgent({ cert: m.cert, key: m.key, ca: m.ca, rejectUnauthorized: true, keepAlive: true, minVersion: "TLSv1.2" });
  const f = (input: string | URL | Request, init?: RequestInit): Promise<Response> =>
    new Promise<Response>((resolve, reject) => {
      if (input instanceof Request) {
        reject(new TypeError("tlsFetch: pass a URL, not a Request"));
        return;
      }
      const url = new URL(input);
      if (url.protocol !== "https:") {
        reject(new TypeError("fetch failed", { cause: new Error(`${url.origin}: TLS is configured, so only https:// URLs are used (got ${url.protocol})`) }));
        return;
      }
      const body = init?.body;
      if (body !== undefined && body !== null && typeof body !== "string") {
        reject(new TypeError("tlsFetch: only string bodies are supported"));
        return;
      }
      const signal = init?.signal ?? undefined;
      const req = httpsRequest(url, { method: init?.method ?? "GET", headers: headerList(init), agent, ...(signal ? { signal } : {}) }, (res) => resolve(toResponse(res)));
      req.on("error", (e) => reject(signal?.aborted && signal.reason instanceof Error ? signal.reason : new TypeError("fetch failed", { cause: e })));
      req.end(body ?? undefined);
    });
  return f;
}

/** The fetch to use: TLS when configured, else the global one. */
export function fetchFor(m: TlsMaterial | null | undefined): typeof fetch {
  return m ? tlsFetch(m) : fetch;
}
