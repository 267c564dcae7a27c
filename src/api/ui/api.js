// The dashboard's client of the controller API: every call carries the bearer
// token; a problem body becomes an ApiError with its code and message; the
// event streams (the controller's, and each running migration's) are read
// with fetch() (EventSource sends no headers, and a token in the URL would be
// written to logs) and resumed after a break.
import { SseParser } from "./sse.js";

/** @typedef {import("./types.js").HostView} HostView */
/** @typedef {import("./types.js").DeviceRow} DeviceRow */
/** @typedef {import("./types.js").VmView} VmView */
/** @typedef {import("./types.js").Migration} Migration */
/** @typedef {import("./types.js").Plan} Plan */
/** @typedef {import("./types.js").CancelReport} CancelReport */
/** @typedef {import("./types.js").ControllerEvent} ControllerEvent */
/** @typedef {import("./types.js").MigrationStreamEvent} MigrationStreamEvent */

export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  /** @param {string} token */
  constructor(token) {
    this.token = token;
  }

  /** @param {string} path @param {{ method?: string, body?: unknown, signal?: AbortSignal }} [o] @returns {Promise<unknown>} */
  async call(path, o = {}) {
    /** @type {Record<string, string>} */
    const headers = { authorization: `Bearer ${this.token}` };
    if (o.body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(path, {
      method: o.method ?? "GET",
      headers,
      ...(o.body === undefined ? {} : { body: JSON.stringify(o.body) }),
      ...(o.signal ? { signal: o.signal } : {}),
    });
    const text = await res.text();
    /** @type {unknown} */
    let body = null;
    try {
      body = text === "" ? null : JSON.parse(text);
    } catch {
      body = null;
    }
    if (!res.ok) {
      const p = /** @type {{ code?: unknown, message?: unknown } | null} */ (body);
      const code = typeof p?.code === "string" ? p.code : `HTTP_${res.status}`;
      const message = typeof p?.message === "string" ? p.message : `${res.status} ${res.statusText}`;
      throw new ApiError(res.status, code, message);
    }
    return body;
  }

  /** @returns {Promise<HostView[]>} */
  async hosts() {
    return /** @type {{ hosts: HostView[] }} */ (await this.call("/v1/hosts")).hosts;
  }

  /** @returns {Promise<DeviceRow[]>} */
  async devices() {
    return /** @type {{ devices: DeviceRow[] }} */ (await this.call("/v1/devices")).devices;
  }

  /** @returns {Promise<VmView[]>} */
  async vms() {
    return /** @type {{ vms: VmView[] }} */ (await this.call("/v1/vms")).vms;
  }

  /** @returns {Promise<Migration[]>} */
  async migrations() {
    return /** @type {{ migrations: Migration[] }} */ (await this.call("/v1/migrations")).migrations;
  }

  /** @param {string} id @returns {Promise<Migration>} */
  async migration(id) {
    return /** @type {Migration} */ (await this.call(`/v1/migrations/${encodeURIComponent(id)}`));
  }

  /** Only the plan: nothing changes. @param {string} vm @param {string | undefined} to @returns {Promise<Plan>} */
  async plan(vm, to) {
    const r = /** @type {{ plan: Plan }} */ (await this.call("/v1/migrations", { method: "POST", body: { vm, plan: true, ...(to ? { to } : {}) } }));
    return r.plan;
  }

  /** @param {string} vm @param {string} to @returns {Promise<Migration>} */
  async migrate(vm, to) {
    const r = /** @type {{ migration: Migration }} */ (await this.call("/v1/migrations", { method: "POST", body: { vm, to } }));
    return r.migration;
  }

  /** Answers once the migration has ended. @param {string} id @returns {Promise<CancelReport>} */
  async cancel(id) {
    return /** @type {CancelReport} */ (await this.call(`/v1/migrations/${encodeURIComponent(id)}/cancel`, { method: "POST", body: {} }));
  }

  /**
   * Reads one server-sent-events stream (fetch() with the bearer: EventSource
   * sends no headers, and a token in the URL would land in logs) until the
   * server closes it or `signal` aborts; each event's `data` parsed as JSON.
   * A 401 throws an ApiError; any other failure an Error.
   * @param {string} path @param {(data: unknown) => void} onData @param {() => void} onOpen @param {AbortSignal} signal
   */
  async stream(path, onData, onOpen, signal) {
    const res = await fetch(path, { headers: { authorization: `Bearer ${this.token}`, accept: "text/event-stream" }, signal });
    if (res.status === 401) throw new ApiError(401, "FERRY_ERR_UNAUTHORIZED", "the token was refused");
    if (res.status === 404) throw new ApiError(404, "FERRY_ERR_NOT_FOUND", `${path}: not found`);
    if (!res.ok || !res.body) throw new Error(`event stream ${path}: HTTP ${res.status}`);
    onOpen();
    const parser = new SseParser((m) => {
      /** @type {unknown} */
      let data;
      try {
        data = JSON.parse(m.data);
      } catch {
        return;
      }
      onData(data);
    });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.feed(value);
    }
  }

  /**
   * Follows GET /v1/events?follow=1 until `signal` aborts, reconnecting after
   * a break (from the last event seen). `onState` tells the UI whether the
   * stream is live.
   * @param {(e: ControllerEvent) => void} onEvent
   * @param {(live: boolean, why?: string) => void} onState
   * @param {AbortSignal} signal
   */
  async followEvents(onEvent, onState, signal) {
    let after = 0;
    let pause = 500;
    while (!signal.aborted) {
      try {
        const take = (/** @type {unknown} */ raw) => {
          const e = /** @type {ControllerEvent} */ (raw);
          if (typeof e.seq === "number") after = Math.max(after, e.seq);
          onEvent(e);
        };
        await this.stream(`/v1/events?follow=1${after > 0 ? `&after=${after}` : ""}`, take, () => {
          onState(true);
          pause = 500;
        }, signal);
        onState(false, "the controller closed the stream");
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ApiError) {
          onState(false, err.message);
          throw err;
        }
        onState(false, err instanceof Error ? err.message : String(err));
      }
      await sleep(pause, signal);
      pause = Math.min(pause * 2, 10_000);
    }
  }

  /**
   * Follows one migration's stream (GET /v1/migrations/:id/events: its phases
   * so far, then its events, QEMU's RAM progress while perform runs, and
   * `end` with the settled record) until `end` or `signal`; after a break it
   * connects again (the phases are told again: the caller takes each once).
   * A 401 or 404 throws.
   * @param {string} id
   * @param {(e: MigrationStreamEvent) => void} onEvent
   * @param {AbortSignal} signal
   */
  async followMigration(id, onEvent, signal) {
    let ended = false;
    let pause = 500;
    while (!signal.aborted && !ended) {
      try {
        const take = (/** @type {unknown} */ raw) => {
          const e = /** @type {MigrationStreamEvent} */ (raw);
          if (e.type === "end") ended = true;
          onEvent(e);
        };
        await this.stream(`/v1/migrations/${encodeURIComponent(id)}/events`, take, () => {
          pause = 500;
        }, signal);
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof ApiError) throw err;
      }
      if (ended) return;
      await sleep(pause, signal);
      pause = Math.min(pause * 2, 10_000);
    }
  }
}

/** @param {number} ms @param {AbortSignal} signal @returns {Promise<void>} */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
