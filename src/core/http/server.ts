// What the agent's and the controller's HTTP apps share: a fastify instance
// (strict validation, a body limit, problem bodies for errors and unknown
// routes, the bearer token on every request) served over HTTP, or over HTTPS
// with client certificates required when TLS material is given; the OpenAPI
// document at /openapi.json (and, for the controller, Swagger UI at /docs).
import Fastify from "fastify";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { FerryError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { serverTlsOptions } from "../tls.ts";
import type { TlsMaterial } from "../tls.ts";
import { bearerAuth } from "./auth.ts";
import { collectRoutes, isPublicDocsAsset, openApiRoute, registerOpenApi, swaggerUi } from "./openapi.ts";
import type { CollectedRoute, OpenApiInfo } from "./openapi.ts";
import { errorHandler } from "./problem.ts";
import type { FerryFastify, TypeBoxProvider } from "./type-provider.ts";

/** Longest path parameter (names are ≤ 63, ids shorter); longer ones are FERRY_ERR_INVALID. */
export const MAX_PARAM_LENGTH = 200;

export interface BaseAppOptions {
  token: string;
  /** The service in WWW-Authenticate, and where an operator finds the token. */
  realm: string;
  tokenSource: string;
  bodyLimit: number;
  log: Logger;
  /** Serve HTTPS, demanding a client certificate signed by m.ca. */
  tls?: TlsMaterial | null | undefined;
  forceCloseConnections?: boolean;
  /** The OpenAPI document's info (served at /openapi.json, generated from the routes' schemas). */
  openapi: OpenApiInfo;
  /** Serve Swagger UI at /docs (its static files without the token; the document it shows with it). */
  docs?: boolean;
  /**
   * Registers the app's routes: called once the OpenAPI plugin has loaded
   * (fastify loads plugins when the app gets ready: routes added before
   * that would not be in the document).
   */
  routes: (app: FerryFastify) => void;
}

export function baseApp(o: BaseAppOptions): { app: FerryFastify; routes: CollectedRoute[] } {
  const options = {
    logger: false, // we log ourselves (errors); fastify's request log is not needed
    bodyLimit: o.bodyLimit,
    return503OnClosing: true,
    ...(o.forceCloseConnections ? { forceCloseConnections: true } : {}),
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // the router's own refusals (a malformed URL, a path parameter too long) are problem bodies with our codes too
    frameworkErrors: (error: FastifyError, _req: FastifyRequest, reply: FastifyReply) => {
      const e =
        error.code === "FST_ERR_MAX_PARAM_LENGTH"
          ? new FerryError("FERRY_ERR_INVALID", `a path parameter is longer than ${MAX_PARAM_LENGTH} characters`, { details: { field: "(path)", in: "params" } })
          : error.code === "FST_ERR_BAD_URL"
            ? new FerryError("FERRY_ERR_INVALID", "malformed URL (bad percent-encoding)", { details: { field: "(path)", in: "params" } })
            : new FerryError("FERRY_ERR_INTERNAL", "the request could not be routed");
      void reply.code(e.status).type("application/json").send(e.toJSON());
    },
  } as const;
  // The HTTPS instance differs from the HTTP one only in its server's type; routes see the same requests.
  const app = (o.tls ? (Fastify({ ...options, https: serverTlsOptions(o.tls) }) as unknown as FastifyInstance) : Fastify(options)).withTypeProvider<TypeBoxProvider>();
  const routes = collectRoutes(app);
  registerOpenApi(app, o.openapi);
  if (o.docs) swaggerUi(app);
  app.setErrorHandler(errorHandler(o.log, { bodyLimit: o.bodyLimit }));
  // the APIs speak JSON only: a text/plain body is 415, not a string that fails validation
  app.removeContentTypeParser("text/plain");
  app.setNotFoundHandler((req, reply) => {
    const e = new FerryError("FERRY_ERR_NOT_FOUND", `no route ${req.method} ${req.url.split("?")[0] ?? ""}`);
    return reply.code(e.status).send(e.toJSON());
  });
  const auth = bearerAuth(o.token, { realm: o.realm, tokenSource: o.tokenSource });
  app.addHook("onRequest", async (req, reply) => {
    if (o.docs && isPublicDocsAsset(req.method, req.url)) return;
    await auth(req, reply);
  });
  void app.after((err) => {
    if (err) throw err;
    openApiRoute(app);
    o.routes(app);
  });
  return { app, routes };
}
