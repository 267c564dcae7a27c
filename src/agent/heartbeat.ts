// The agent registers with its controller and heartbeats: POST
// /v1/agents/heartbeat { name, url, version, accel } every interval (the
// controller's reply may change the interval). A controller that is down is
// retried at the same pace; the agent keeps serving meanwhile.
import { readFile } from "node:fs/promises";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";

export interface HeartbeatOptions {
  controller: { url: string; tokenFile: string; heartbeatMs: number };
  body: { name: string; url: string; version: string; accel: string };
  clock: Clock;
  log: Logger;
  fetch?: typeof fetch;
}

/** Start heartbeating; returns a function that stops it. */
export function startHeartbeat(o: HeartbeatOptions): () => void {
  const stop = new AbortController();
  const doFetch = o.fetch ?? fetch;
  let healthy: boolean | undefined;
  const beat = async (): Promise<number> => {
    const token = (await readFile(o.controller.tokenFile, "utf8")).trim();
    const res = await doFetch(`${o.controller.url}/v1/agents/heartbeat`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(o.body),
      signal: AbortSignal.any([stop.signal, AbortSignal.timeout(5_000)]),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`controller answered ${res.status}: ${text.slice(0, 200)}`);
    const reply = JSON.parse(text) as { intervalMs?: unknown };
    return typeof reply.intervalMs === "number" && reply.intervalMs >= 100 ? reply.intervalMs : o.controller.heartbeatMs;
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
