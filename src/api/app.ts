// The controller's HTTP app: buildControllerApp(deps) returns it, not
// listening (cli/commands/controller.ts listens; tests may use app.inject()).
// One route file per resource; every route requires the bearer token; errors
// are problem bodies by FerryError code; OpenAPI at /openapi.json.
import Fastify from "fastify";
import { collectRoutes, openApiDocument } from "../agent/http/openapi.ts";
import { errorHandler } from "../agent/http/problem.ts";
import type { TypeBoxProvider } from "../agent/http/type-provider.ts";
import { Evacuations } from "../controller/evacuation.ts";
import { systemClock } from "../core/clock.ts";
import { FerryError } from "../core/errors.ts";
import { silentLogger } from "../core/log.ts";
import { bearerAuth } from "./auth.ts";
import type { ControllerAppDeps, ControllerFastify, RouteFile } from "./deps.ts";
import { agentRoutes } from "./routes/agents.ts";
import { deviceRoutes } from "./routes/devices.ts";
import { eventRoutes } from "./routes/events.ts";
import { evacuationRoutes } from "./routes/evacuations.ts";
import { hostRoutes } from "./routes/hosts.ts";
import { migrationRoutes } from "./routes/migrations.ts";
import { vmRoutes } from "./routes/vms.ts";

export type { ControllerAppDeps } from "./deps.ts";

export const ROUTE_FILES: readonly RouteFile[] = [agentRoutes, hostRoutes, deviceRoutes, vmRoutes, migrationRoutes, eventRoutes];
export const MAX_BODY_BYTES = 256 * 1024;

export function buildControllerApp(deps: ControllerAppDeps): ControllerFastify {
  const log = deps.log ?? silentLogger;
  const app = Fastify({
    logger: false,
    bodyLimit: MAX_BODY_BYTES,
    return503OnClosing: true,
    forceCloseConnections: true,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  }).withTypeProvider<TypeBoxProvider>();
  const routes = collectRoutes(app);
  app.setErrorHandler(errorHandler(log));
  app.setNotFoundHandler((req, reply) => {
    const e = new FerryError("FERRY_ERR_NOT_FOUND", `no route ${req.method} ${req.url.split("?")[0] ?? ""}`);
    return reply.code(e.status).send(e.toJSON());
  });
  app.addHook("onRequest", bearerAuth(deps.token));
  app.get("/openapi.json", { config: { openapi: { summary: "This API as an OpenAPI 3.1 document (requires the token too)" } } }, () => {
    const doc = openApiDocument(routes, { title: "Ferry controller", version: deps.version });
    return { ...doc, info: { title: "Ferry controller", version: deps.version, description: "Ferry controller API. Every route requires `Authorization: Bearer <token>` (the controller's tokenFile)." } };
  });
  for (const register of ROUTE_FILES) register(app, deps);
  const evacuations = deps.evacuations ?? new Evacuations({ controller: deps.controller, clock: deps.clock ?? systemClock, log });
  if (!deps.evacuations) app.addHook("onClose", () => evacuations.close());
  evacuationRoutes(app, { ...deps, evacuations });
  return app;
}
