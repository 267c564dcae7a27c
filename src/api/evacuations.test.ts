import assert from "node:assert/strict";
import { test } from "node:test";
import { memoryControllerApp } from "./testing.ts";

const { clock, cluster, controller, app, auth } = memoryControllerApp();
const beat = () => app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: auth, payload: { name: "host-a", url: "http://127.0.0.1:1", version: "1", accel: "tcg" } });
const state = async (): Promise<string | undefined> => (await cluster.getHost("host-a"))?.state;

test("the evacuation routes are in the OpenAPI document", async () => {
  const doc = await app.inject({ method: "GET", url: "/openapi.json", headers: auth });
  const paths = Object.keys(doc.json<{ paths: Record<string, unknown> }>().paths);
  for (const p of ["/v1/hosts/{name}/drain", "/v1/hosts/{name}/undrain", "/v1/hosts/{name}/evacuate", "/v1/evacuations", "/v1/evacuations/{id}"]) assert.ok(paths.includes(p), p);
});

test("drain holds through heartbeats and a down spell; undrain reverses it", async () => {
  assert.equal((await beat()).statusCode, 200);
  const d = await app.inject({ method: "POST", url: "/v1/hosts/host-a/drain", headers: auth });
  assert.equal(d.statusCode, 200, d.body);
  assert.deepEqual([d.json<{ state: string; drain: boolean }>().state, d.json<{ drain: boolean }>().drain], ["draining", true]);
  await beat();
  assert.equal(await state(), "draining");
  clock.advance(10_000);
  await controller.checkLiveness();
  assert.equal(await state(), "down");
  await beat();
  assert.equal(await state(), "draining", "a heartbeat after a down spell does not undrain");
  const hosts = await app.inject({ method: "GET", url: "/v1/hosts", headers: auth });
  assert.equal(hosts.json<{ hosts: { drain?: boolean }[] }>().hosts[0]?.drain, true);
  const u = await app.inject({ method: "POST", url: "/v1/hosts/host-a/undrain", headers: auth });
  assert.equal(u.json<{ state: string }>().state, "up");
  await beat();
  assert.equal(await state(), "up");
  assert.equal((await app.inject({ method: "POST", url: "/v1/hosts/nope/drain", headers: auth })).statusCode, 404);
});

test("evacuate: inputs validated, --plan changes nothing, unknown ids are 404", async () => {
  const bad = await app.inject({ method: "POST", url: "/v1/hosts/host-a/evacuate", headers: auth, payload: { parallel: 0 } });
  assert.equal(bad.statusCode, 400);
  const extra = await app.inject({ method: "POST", url: "/v1/hosts/host-a/evacuate", headers: auth, payload: { hurry: true } });
  assert.equal(extra.statusCode, 400);
  assert.equal((await app.inject({ method: "POST", url: "/v1/hosts/nope/evacuate", headers: auth, payload: {} })).statusCode, 404);
  const plan = await app.inject({ method: "POST", url: "/v1/hosts/host-a/evacuate", headers: auth, payload: { plan: true, parallel: 3, maxBandwidthMiBps: 300 } });
  assert.equal(plan.statusCode, 200, plan.body);
  const e = plan.json<{ state: string; items: unknown[]; parallel: number; perMigrationBytes: number }>();
  assert.deepEqual([e.state, e.items.length, e.parallel], ["planned", 0, 3]);
  assert.equal(await state(), "up", "a plan does not drain");
  const list = await app.inject({ method: "GET", url: "/v1/evacuations", headers: auth });
  assert.deepEqual(list.json(), { evacuations: [] });
  assert.equal((await app.inject({ method: "GET", url: "/v1/evacuations/e-00000000", headers: auth })).statusCode, 404);

  const run = await app.inject({ method: "POST", url: "/v1/hosts/host-a/evacuate", headers: auth, payload: {} });
  assert.equal(run.statusCode, 202, run.body);
  const id = run.json<{ id: string }>().id;
  assert.equal(await state(), "draining");
  const got = await app.inject({ method: "GET", url: `/v1/evacuations/${id}`, headers: auth });
  assert.equal(got.statusCode, 200);
  assert.equal(got.json<{ host: string }>().host, "host-a");
});
