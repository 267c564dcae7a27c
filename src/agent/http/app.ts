// The agent's HTTP app: buildAgentApp(deps) returns it, not listening
// (cli/commands/agent.ts listens; tests use app.inject()). One route file per
// resource; every route requires the bearer token (and, with TLS, a client
// certificate).
import { silentLogger } from "../../core/log.ts";
import type { TlsMaterial } from "../../core/tls.ts";
import type { AgentAppDeps, RouteFile } from "./deps.ts";
import { faultRoutes } from "./faults.ts";
import { healthRoutes } from "./health.ts";
import { instanceRoutes } from "./instances.ts";
import { inventoryRoutes } from "./inventory.ts";
import { leaseRoutes } from "./leases.ts";
import { metricsRoutes } from "./metrics.ts";
import { migrationRoutes } from "./migrations.ts";
import { baseApp } from "../../core/http/server.ts";
import type { FerryFastify } from "../../core/http/type-provider.ts";

export type { AgentAppDeps } from "./deps.ts";

/**
 * The route files, one per resource. To add one (e.g. the controller's
 * migration steps, `/v1/migrations/:id/prepare|perform|finish|confirm`), write
 * `src/agent/http/migrations.ts` exporting `migrationRoutes(app, deps)` like
 * leases.ts, and add it here: auth, validation, problem bodies and the
 * OpenAPI document come with it.
 */
export const ROUTE_FILES: readonly RouteFile[] = [healthRoutes, inventoryRoutes, leaseRoutes, instanceRoutes, migrationRoutes, faultRoutes, metricsRoutes];

export const MAX_BODY_BYTES = 1024 * 1024;

/** `o.tls`: serve HTTPS and require a client certificate signed by its CA (the token stays required). */
export function buildAgentApp(deps: AgentAppDeps, o: { tls?: TlsMaterial | null | undefined } = {}): FerryFastify {
  const openapi = { title: "Ferry agent", version: deps.agent.version, description: "Ferry host agent API. Every route requires `Authorization: Bearer <token>` (the agent's authTokenFile)." };
  const { app } = baseApp({ token: deps.token, realm: "ferry-agent", tokenSource: "the agent's authTokenFile", bodyLimit: MAX_BODY_BYTES, log: deps.log ?? silentLogger, tls: o.tls, openapi, routes: (a) => {
    for (const register of ROUTE_FILES) register(a, deps);
  } });
  return app;
}
