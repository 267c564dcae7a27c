import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { RouteOptions } from "fastify";
import { Agent } from "../../agent/agent.ts";
import { buildAgentApp } from "../../agent/http/app.ts";
import { makeTestHost } from "../../agent/testing.ts";
import { memoryControllerApp } from "../../api/testing.ts";
import type { FerryFastify } from "./type-provider.ts";

interface Seen {
  route: string;
  schema: RouteOptions["schema"];
  summary: string | undefined;
}

/**
 * Every route the app registers. The apps add their routes when they get
 * ready (after the OpenAPI plugin: server.ts), so a hook added right after
 * building one sees them all.
 */
async function walk(app: FerryFastify): Promise<Seen[]> {
  const seen: Seen[] = [];
  app.addHook("onRoute", (r: RouteOptions) => {
    for (const m of [r.method].flat()) if (m !== "HEAD") seen.push({ route: `${m} ${r.url}`, schema: r.schema, summary: r.config?.openapi?.summary });
  });
  await app.ready();
  return seen;
}

/** Routes that describe nothing (no params, querystring, body or response schema), or whose path parameters are unchecked, or that have no summary. Swagger UI's own files (hidden, under /docs) and the dashboard's (hidden, under /ui) are not API routes. */
function undocumented(routes: readonly Seen[]): string[] {
  return routes
    .filter((r) => !(r.schema?.hide === true && / \/(docs|ui)(\/|$)/.test(r.route)))
    .filter((r) => {
      const s = r.schema;
      const described = s !== undefined && ["params", "querystring", "body", "response"].some((k) => (s as Record<string, unknown>)[k] !== undefined);
      return !described || (r.route.includes("/:") && s.params === undefined) || r.summary === undefined;
    })
    .map((r) => r.route);
}

const { app, auth } = memoryControllerApp();
const host = await makeTestHost({ name: "docs" });
const agent = await Agent.open({ config: host.config, accel: { accel: "tcg", reason: "test" } });
after(async () => {
  await agent.close();
  await host.cleanup();
});

test("every route of the controller and of the agent has a schema (and a summary), so the OpenAPI document describes it", async () => {
  const controllerRoutes = await walk(memoryControllerApp().app);
  assert.ok(controllerRoutes.length >= 25, `${controllerRoutes.length} controller routes`);
  assert.deepEqual(undocumented(controllerRoutes), []);
  const aapp = buildAgentApp({ agent, token: "t".repeat(32) });
  try {
    const agentRoutes = await walk(aapp);
    assert.ok(agentRoutes.length >= 25, `${agentRoutes.length} agent routes`);
    assert.deepEqual(undocumented(agentRoutes), []);
  } finally {
    await aapp.close();
  }
  // the check itself: a route without a schema is caught
  const bad = memoryControllerApp().app;
  const seen = walk(bad);
  bad.get("/v1/undocumented", () => ({}));
  bad.get("/v1/things/:id", { schema: { response: { 200: { type: "object" } } }, config: { openapi: { summary: "no params schema" } } }, () => ({}));
  assert.deepEqual(undocumented(await seen), ["GET /v1/undocumented", "GET /v1/things/:id"]);
});

test("the document is generated from the route schemas: parameters, bodies, responses, problem bodies, the bearer scheme", async () => {
  const doc = (await app.inject({ method: "GET", url: "/openapi.json", headers: auth })).json<{ openapi: string; paths: Record<string, Record<string, { summary: string; parameters?: { name: string; in: string }[]; requestBody?: { content: Record<string, { schema: { required?: string[] } }> }; responses: Record<string, { description: string }> }>>; components: { securitySchemes: unknown } }>();
  assert.equal(doc.openapi, "3.1.0");
  const save = doc.paths["/v1/vms/{name}/save"]!["post"]!;
  assert.deepEqual(save.parameters?.filter((p) => p.in === "path").map((p) => p.name), ["name"]);
  assert.deepEqual(save.requestBody?.content["application/json"]?.schema.required, ["file"]);
  assert.ok(save.responses["200"]);
  assert.match(save.responses["default"]!.description, /problem body/);
  assert.ok(doc.paths["/metrics"]?.["get"], "the metrics route is documented");
  assert.deepEqual(doc.components.securitySchemes, { bearer: { type: "http", scheme: "bearer" } });
});

test("Swagger UI at /docs from the npm package's files (no CDN): the page is public, the document it loads needs the token", async () => {
  const page = await app.inject({ method: "GET", url: "/docs/" });
  assert.equal(page.statusCode, 200);
  assert.match(page.body, /swagger-ui-bundle\.js/);
  assert.doesNotMatch(page.body, /https?:\/\//, "no asset from elsewhere");
  const bundle = await app.inject({ method: "GET", url: "/docs/static/swagger-ui-bundle.js" });
  assert.equal(bundle.statusCode, 200);
  assert.ok(bundle.body.length > 100_000, "the bundle itself is served");
  const init = await app.inject({ method: "GET", url: "/docs/static/swagger-initializer.js" });
  assert.match(init.body, /requestInterceptor/);
  assert.match(init.body, /Authorization"\] = `Bearer/);

  assert.equal((await app.inject({ method: "GET", url: "/docs/json" })).statusCode, 401);
  assert.equal((await app.inject({ method: "GET", url: "/docs/static/../json" })).statusCode, 401);
  const viaDocs = await app.inject({ method: "GET", url: "/docs/json", headers: auth });
  const direct = await app.inject({ method: "GET", url: "/openapi.json", headers: auth });
  assert.deepEqual(viaDocs.json(), direct.json());
  // the agent serves no UI: /docs is an unknown route behind the token there
  const aapp = buildAgentApp({ agent, token: "t".repeat(32) });
  try {
    assert.equal((await aapp.inject({ method: "GET", url: "/docs/" })).statusCode, 401);
  } finally {
    await aapp.close();
  }
});
