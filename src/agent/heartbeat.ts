// The agent registers with its controller and heartbeats: POST
// /v1/agents/heartbeat { name, url, version, accel, migrations } every
// interval (the controller's reply may change the interval). `migrations`
// names what the agent holds of migrations (records, VF leases); the reply
// says which of them have ended, and the agent lets go of those before the
// next beat — the first beat after a (re)start included, so nothing of a
// migration that ended while the agent was away waits for a lease to expire.
// A controller that is down is retried at the same pace; the agent keeps
// serving meanwhile.
import { readFile } from "node:fs/promises";
import type { Clock } from "../core/clock.ts";
import { isFerryError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { failoverFetch } from "../core/http/failover.ts";
import { fetchFor } from "../core/tls.ts";
import type { TlsMaterial } from "../core/tls.ts";
import { HeartbeatReply } from "../wire/heartbeat.ts";
import type { HeartbeatBodyT, HeartbeatReplyT } from "../wire/heartbeat.ts";
import { request } from "../core/http/client.ts";
import type { ClientOptions, RequestOptions } from "../core/http/client.ts";

export interface HeartbeatOptions {
  /** `alternates`: the cluster's other controllers, tried in order when one cannot be connected to (core/http/failover.ts). */
  controller: { url: string; tokenFile: string; heartbeatMs: number; alternates?: readonly string[] };
  body: Omit<HeartbeatBodyT, "migrations">;
  /** The migrations this host holds anything of, at each beat. */
  migrations?: () => string[];
  /** The host's memory at each beat (/proc/meminfo); null: not known. */
  memory?: () => Promise<{ totalMiB: number; availableMiB: number } | null>;
  /** The controller says these have ended: release what the host holds of them. */
  onEnded?: (ids: string[]) => Promise<void>;
  clock: Clock;
  log: Logger;
  fetch?: typeof fetch;
  /** Mutual TLS towards the controller (the host config's tls). */
  tls?: TlsMaterial | null;
}

/**
 * One heartbeat to the controller (the controller API's client, src/api/,
 * sends it the same way): the reply checked against its schema; failures are
 * FERRY_ERR_CONTROLLER, or the controller's own code from a problem body.
 */
export function sendHeartbeat(c: ClientOptions & { fetch: typeof fetch; timeoutMs: number }, body: HeartbeatBodyT, o: RequestOptions = {}): Promise<HeartbeatReplyT> {
  return request({
    fetch: c.fetch, kind: "FERRY_ERR_CONTROLLER", baseUrl: c.baseUrl.replace(/\/+$/, ""), token: c.token, method: "POST", path: "/v1/agents/heartbeat", body,
    accept: "application/json", timeoutMs: o.timeoutMs ?? c.timeoutMs, signal: o.signal,
  }, HeartbeatReply);
}

/** Fields an older controller may not know: dropped from the beat when it says so. */
const OPTIONAL_FIELDS: readonly string[] = ["migrations", "memory", "qemu"];

/** Start heartbeating; returns a function that stops it. */
export function startHeartbeat(o: HeartbeatOptions): () => void {
  const stop = new AbortController();
  const doFetch = failoverFetch([o.controller.url, ...(o.controller.alternates ?? [])], o.fetch ?? fetchFor(o.tls));
  let healthy: boolean | undefined;
  // a controller older than a field refuses it (400 naming the field): beat without it from then on
  const dropped = new Set<string>();
  const beat = async (): Promise<number> => {
    // read each time: the token file may be replaced while the agent runs
    const token = (await readFile(o.controller.tokenFile, "utf8")).trim();
    const client = { baseUrl: o.controller.url, token, fetch: doFetch, timeoutMs: 5_000 };
    const memory = o.memory && !dropped.has("memory") ? await o.memory().catch(() => null) : null;
    const full: HeartbeatBodyT = { ...o.body, ...(o.migrations ? { migrations: o.migrations().slice(0, 1000) } : {}), ...(memory ? { memory } : {}) };
    const body = (): HeartbeatBodyT => Object.fromEntries(Object.entries(full).filter(([k]) => !dropped.has(k))) as HeartbeatBodyT;
    let reply: HeartbeatReplyT | undefined;
    for (let attempt = 0; reply === undefined; attempt++) {
      try {
        reply = await sendHeartbeat(client, body(), { signal: stop.signal });
      } catch (e) {
        const field = isFerryError(e, "FERRY_ERR_INVALID") ? e.details["field"] : undefined;
        if (attempt > 3 || typeof field !== "string" || !OPTIONAL_FIELDS.includes(field) || !(field in full) || dropped.has(field)) throw e;
        dropped.add(field);
        o.log.warn({ controller: o.controller.url, field }, field === "migrations"
          ? "the controller does not take the migrations this host holds (an older version): leases of ended migrations are released when they expire"
          : `the controller does not take the heartbeat's ${field} (an older version): its migration plans cannot check it`);
      }
    }
    if (o.onEnded && reply.ended && reply.ended.length > 0) {
      await o.onEnded(reply.ended).catch((e: unknown) => o.log.error({ err: e instanceof Error ? e.message : String(e) }, "cannot release what ended migrations hold here; retried at the next heartbeat"));
    }
    return reply.intervalMs >= 100 ? reply.intervalMs : o.controller.heartbeatMs;
  };
  void (async () => {
    let interval = o.controller.heartbeatMs;
    while (!stop.signal.aborted) {
      try {
        interval = await beat();
        if (healthy !== true) o.log.info({ controller: o.controller.url }, "registered with the controller");
        healthy = true;
      } catch (e) {
        if (stop.signal.aborted) return;
        if (healthy !== false) {
          o.log.warn({ controller: o.controller.url, err: e instanceof Error ? e.message : String(e) }, "heartbeat to the controller failed; retrying (check controller.url and controller.tokenFile in the host config)");
        }
        healthy = false;
      }
      await o.clock.sleep(interval, stop.signal).catch(() => undefined);
    }
  })();
  return () => stop.abort();
}
