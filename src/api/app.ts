// The controller's HTTP app: buildControllerApp(deps) returns it, not
// listening (cli/commands/controller.ts listens; tests may use app.inject()).
// One route file per resource; every route requires the bearer token; errors
// are problem bodies by FerryError code; OpenAPI at /openapi.json.
import { openApiDocument } from "../core/http/openapi.ts";
import { baseApp } from "../core/http/server.ts";
import { Evacuations } from "../controller/evacuation.ts";
import { systemClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import type { TlsMaterial } from "../core/tls.ts";
import type { ControllerAppDeps, ControllerFastify, RouteFile } from "./deps.ts";
import { forwardWrites } from "./forward.ts";
import { agentRoutes } from "./routes/agents.ts";
import { controllerRoutes } from "./routes/controllers.ts";
import { deviceRoutes } from "./routes/devices.ts";
import { eventRoutes } from "./routes/events.ts";
import { evacuationRoutes } from "./routes/evacuations.ts";
import { hostRoutes } from "./routes/hosts.ts";
import { migrationRoutes } from "./routes/migrations.ts";
import { vmRoutes } from "./routes/vms.ts";

export type { ControllerAppDeps } from "./deps.ts";

export const ROUTE_FILES: readonly RouteFile[] = [agentRoutes, hostRoutes, deviceRoutes, vmRoutes, migrationRoutes, eventRoutes, controllerRoutes];
export const MAX_BODY_BYTES = 256 * 1024;

/** `o.tls`: serve HTTPS and require a client certificate signed by its CA (the token stays required). */
export function buildControllerApp(deps: ControllerAppDeps, o: { tls?: TlsMaterial | null | undefined } = {}): ControllerFastify {
  const log = deps.log ?? silentLogger;
  const { app, routes } = baseApp({ token: deps.token, realm: "ferry-controller", tokenSource: "the controller's tokenFile", bodyLimit: MAX_BODY_BYTES, log, tls: o.tls, forceCloseConnections: true });
  app.get("/openapi.json", { config: { openapi: { summary: "This API as an OpenAPI 3.1 document (requires the token too)" } } }, () => {
    const doc = openApiDocument(routes, { title: "Ferry controller", version: deps.version });
    return { ...doc, info: { title: "Ferry controller", version: deps.version, description: "Ferry controller API. Every route requires `Authorization: Bearer <token>` (the controller's tokenFile)." } };
  });
  if (deps.leadership) app.addHook("preValidation", forwardWrites(deps.leadership, deps.leaderFetch ?? fetch));
  for (const register of ROUTE_FILES) register(app, deps);
  const evacuations = deps.evacuations ?? new Evacuations({ controller: deps.controller, clock: deps.clock ?? systemClock, log });
  if (!deps.evacuations) app.addHook("onClose", () => evacuations.close());
  evacuationRoutes(app, { ...deps, evacuations });
  return app;
}
