// Prometheus metrics on the agent's and the controller's APIs (prom-client):
// each app has its own registry (two apps in one process, as in the tests,
// do not share series) and serves it at GET /metrics, behind the bearer
// token like every other route (a Prometheus scrape job sets
// `authorization: { type: Bearer, credentials_file: … }`). Names are in the
// ferry_ namespace with units in them; labels never name a VM. The metric
// names themselves live in api/metrics.ts and agent/http/metrics.ts.
import { Registry } from "prom-client";
import { Type } from "typebox";
import type { FerryFastify } from "./type-provider.ts";

/** Histogram buckets in seconds for a migration's total time (TCG labs take tens of seconds). */
export const DURATION_BUCKETS_S = [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600];
/** Histogram buckets in seconds for pauses and gaps (downtime, a NIC's longest gap, a phase). */
export const PAUSE_BUCKETS_S = [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30];

export const MetricsText = Type.String({ description: "Prometheus text exposition format 0.0.4 (text/plain)" });

/**
 * GET /metrics: the registry's series, gathered on request (gauges read the
 * current state in their collect()). A collect that fails (an agent not
 * answering) leaves its series out rather than failing the scrape: each
 * collect catches its own errors. `before`: what to finish first (events
 * already seen, so that a scrape right after an outcome counts it).
 */
export function metricsRoute(app: FerryFastify, registry: Registry, summary: string, o: { before?: () => Promise<void> } = {}): void {
  app.get("/metrics", { schema: { response: { 200: MetricsText } }, config: { openapi: { summary } } }, async (_req, reply) => {
    await o.before?.();
    const text = await registry.metrics();
    return reply.type(registry.contentType).send(text);
  });
}

export function newRegistry(): Registry {
  return new Registry();
}

/** Seconds from milliseconds, for observing the records' ms figures. */
export const seconds = (ms: number): number => ms / 1000;
