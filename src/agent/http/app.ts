// The agent's HTTP app: buildAgentApp(deps) returns it, not listening
// (cli/commands/agent.ts listens; tests use app.inject()). One route file per
// resource; every route requires the bearer token.
import Fastify from "fastify";
import { FerryError } from "../../core/errors.ts";
import { silentLogger } from "../../core/log.ts";
import { bearerAuth } from "./auth.ts";
import type { AgentAppDeps, RouteFile } from "./deps.ts";
import { faultRoutes } from "./faults.ts";
import { healthRoutes } from "./health.ts";
import { instanceRoutes } from "./instances.ts";
import { inventoryRoutes } from "./inventory.ts";
import { leaseRoutes } from "./leases.ts";
import { migrationRoutes } from "./migrations.ts";
import { collectRoutes, openApiDocument } from "./openapi.ts";
import { errorHandler } from "./problem.ts";
import type { AgentFastify, TypeBoxProvider } from "./type-provider.ts";

export type { AgentAppDeps } from "./deps.ts";

/**
 * The route files, one per resource. To add one (e.g. the controller's
 * migration steps, `/v1/migrations/:id/prepare|perform|finish|confirm`), write
 * `src/agent/http/migrations.ts` exporting `migrationRoutes(app, deps)` like
 * leases.ts, and add it here: auth, validation, problem bodies and the
 * OpenAPI document come with it.
 */
export const ROUTE_FILES: readonly RouteFile[] = [healthRoutes, inventoryRoutes, leaseRoutes, instanceRoutes, migrationRoutes, faultRoutes];

export const MAX_BODY_BYTES = 1024 * 1024;

export function buildAgentApp(deps: AgentAppDeps): AgentFastify {
  const log = deps.log ?? silentLogger;
  const app = Fastify({
    logger: false, // we log ourselves (errors); fastify's request log is not needed
    bodyLimit: MAX_BODY_BYTES,
    return503OnClosing: true,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
  }).withTypeProvider<TypeBoxProvider>();

  const routes = collectRoutes(app);
  app.setErrorHandler(errorHandler(log));
  app.setNotFoundHandler((req, reply) => {
    const e = new FerryError("FERRY_ERR_NOT_FOUND", `no route ${req.method} ${req.url.split("?")[0] ?? ""}`);
    return reply.code(e.status).send(e.toJSON());
  });
  app.addHook("onRequest", bearerAuth(deps.token));

  app.get("/openapi.json", { config: { openapi: { summary: "This API as an OpenAPI 3.1 document (requires the token too)" } } }, () =>
    openApiDocument(routes, { title: "Ferry agent", version: deps.agent.version }),
  );
  for (const register of ROUTE_FILES) register(app, deps);
  return app;
}
