// An OpenAPI 3.1 document built from the routes as registered: an onRoute
// hook collects each route's schemas (params, querystring, body, response)
// and its `config.openapi` doc; the document is generated on request.
// (@fastify/swagger is not a dependency; OpenAPI 3.1 takes JSON Schema as is.)
import type { RouteOptions } from "fastify";
import { ERROR_CODES } from "../errors.ts";
import { Problem } from "./schema.ts";
import type { FerryFastify, RouteDoc } from "./type-provider.ts";

export interface CollectedRoute {
  method: string;
  url: string;
  params?: unknown;
  querystring?: unknown;
  body?: unknown;
  response?: unknown;
  doc?: RouteDoc;
}

/** Register the collector first: it sees every route added after it. */
export function collectRoutes(app: FerryFastify): CollectedRoute[] {
  const routes: CollectedRoute[] = [];
  app.addHook("onRoute", (r: RouteOptions) => {
    for (const method of Array.isArray(r.method) ? r.method : [r.method]) {
      if (method === "HEAD") continue; // fastify's automatic HEAD twin of each GET
      if (r.config?.public === true) continue; // static files (the dashboard), not API
      const s = r.schema ?? {};
      routes.push({ method, url: r.url, params: s.params, querystring: s.querystring, body: s.body, response: s.response, doc: r.config?.openapi });
    }
  });
  return routes;
}

type Json = Record<string, unknown>;

function isObjectSchema(x: unknown): x is { properties: Record<string, unknown>; required?: string[] } {
  return typeof x === "object" && x !== null && "properties" in x && typeof x.properties === "object" && x.properties !== null;
}

function parameters(schema: unknown, where: "path" | "query"): Json[] {
  if (!isObjectSchema(schema)) return [];
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties).map(([name, s]) => ({ name, in: where, required: where === "path" || required.has(name), schema: s }));
}

const plain = (s: unknown): unknown => JSON.parse(JSON.stringify(s)) as unknown;

export function openApiDocument(routes: readonly CollectedRoute[], info: { title: string; version: string }): Json {
  const paths: Record<string, Record<string, Json>> = {};
  const problemStatuses = [...new Set(Object.values(ERROR_CODES).map((c) => c.status))].sort();
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
    const op: Json = {
      operationId: `${r.method.toLowerCase()}${path.replace(/[{}]/g, "").replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? "").toUpperCase())}`,
      summary: r.doc?.summary ?? `${r.method} ${path}`,
      parameters: [...parameters(r.params, "path"), ...parameters(r.querystring, "query")],
    };
    const responses: Json = {};
    op["responses"] = responses;
    const body: unknown = r.body ?? r.doc?.body;
    if (body !== undefined) op["requestBody"] = { required: r.body !== undefined, content: { "application/json": { schema: plain(body) } } };
    if (typeof r.response === "object" && r.response !== null) {
      for (const [status, s] of Object.entries(r.response)) responses[status] = { description: "success", content: { "application/json": { schema: plain(s) } } };
    }
    responses["default"] = {
      description: `error: a problem body; code → status per ERROR_CODES (${problemStatuses.join(", ")})`,
      content: { "application/json": { schema: { $ref: "#/components/schemas/Problem" } } },
    };
    (paths[path] ??= {})[r.method.toLowerCase()] = op;
  }
  return {
    openapi: "3.1.0",
    info: { ...info, description: "Ferry host agent API. Every route requires `Authorization: Bearer <token>` (the agent's authTokenFile)." },
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: {
        Problem: plain(Problem),
        ErrorCodes: { type: "string", enum: Object.keys(ERROR_CODES), description: Object.entries(ERROR_CODES).map(([k, c]) => `${k}: ${c.status} ${c.title}`).join("; ") },
      },
    },
  };
}
