// The controller's HTTP app: buildControllerApp(deps) returns it, not
// listening (cli/commands/controller.ts listens; tests may use app.inject()).
// One route file per resource; every route requires the bearer token (but
// the dashboard's static files at /ui, ui.ts, and Swagger UI's at /docs);
// errors are problem bodies by FerryError code; OpenAPI at /openapi.json.
import { baseApp } from "../core/http/server.ts";
import { Evacuations } from "../controller/evacuation.ts";
import { systemClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import type { TlsMaterial } from "../core/tls.ts";
import type { ControllerAppDeps, ControllerFastify, RouteFile } from "./deps.ts";
import { metricsRoutes } from "./metrics.ts";
import { agentRoutes } from "./routes/agents.ts";
import { deviceRoutes } from "./routes/devices.ts";
import { eventRoutes } from "./routes/events.ts";
import { evacuationRoutes } from "./routes/evacuations.ts";
import { hostRoutes } from "./routes/hosts.ts";
import { migrationRoutes } from "./routes/migrations.ts";
import { vmRoutes } from "./routes/vms.ts";
import { uiRoutes } from "./ui.ts";

export type { ControllerAppDeps } from "./deps.ts";

export const ROUTE_FILES: readonly RouteFile[] = [agentRoutes, hostRoutes, deviceRoutes, vmRoutes, migrationRoutes, eventRoutes];
export const MAX_BODY_BYTES = 256 * 1024;

/** `o.tls`: serve HTTPS and require a client certificate signed by its CA (the token stays required). */
export function buildControllerApp(deps: ControllerAppDeps, o: { tls?: TlsMaterial | null | undefined } = {}): ControllerFastify {
  const log = deps.log ?? silentLogger;
  const openapi = { title: "Ferry controller", version: deps.version, description: "Ferry controller API. Every route requires `Authorization: Bearer <token>` (the controller's tokenFile); Swagger UI at /docs." };
  const evacuations = deps.evacuations ?? new Evacuations({ controller: deps.controller, clock: deps.clock ?? systemClock, log });
  const routes = (app: ControllerFastify): void => {
    for (const register of ROUTE_FILES) register(app, deps);
    if (!deps.evacuations) app.addHook("onClose", () => evacuations.close());
    evacuationRoutes(app, { ...deps, evacuations });
    metricsRoutes(app, deps, log);
    // the dashboard's static files (no token: no data; the page sends the token on each API call)
    uiRoutes(app);
  };
  const { app } = baseApp({ token: deps.token, realm: "ferry-controller", tokenSource: "the controller's tokenFile", bodyLimit: MAX_BODY_BYTES, log, tls: o.tls, forceCloseConnections: true, openapi, docs: true, routes });
  return app;
}
