import assert from "node:assert/strict";
import { test } from "node:test";
import { contractPlan } from "../store/contract.ts";
import { newRecord } from "../migration/types.ts";
import { memoryControllerApp } from "./testing.ts";

const { clock, controller, app, auth, store } = memoryControllerApp();

test("every route needs the bearer token, the OpenAPI document included", async () => {
  for (const url of ["/v1/hosts", "/openapi.json", "/nope"]) {
    const r = await app.inject({ method: "GET", url });
    assert.equal(r.statusCode, 401, url);
    assert.equal(r.json<{ code: string }>().code, "FERRY_ERR_UNAUTHORIZED");
  }
  const doc = await app.inject({ method: "GET", url: "/openapi.json", headers: auth });
  const paths = Object.keys(doc.json<{ paths: Record<string, unknown> }>().paths);
  for (const p of ["/v1/agents/heartbeat", "/v1/hosts", "/v1/devices", "/v1/vms", "/v1/vms/{name}/start", "/v1/migrations", "/v1/migrations/{id}/cancel", "/v1/events"]) assert.ok(paths.includes(p), p);
});

test("heartbeats register a host; silence marks it down (an event each), a heartbeat brings it back", async () => {
  const bad = await app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: auth, payload: { name: "host-a", url: "ftp://x", version: "1", accel: "tcg" } });
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.json<{ code: string; details: { field: string } }>().details.field, "url");
  const hb = { name: "host-a", url: "http://127.0.0.1:1", version: "1", accel: "tcg" };
  const ok = await app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: auth, payload: hb });
  assert.deepEqual(ok.json(), { intervalMs: 2000 });
  clock.advance(7000);
  await controller.checkLiveness();
  const hosts = await app.inject({ method: "GET", url: "/v1/hosts", headers: auth });
  assert.equal(hosts.json<{ hosts: { state: string }[] }>().hosts[0]!.state, "down");
  await app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: auth, payload: hb });
  const events = await app.inject({ method: "GET", url: "/v1/events", headers: auth });
  assert.equal(events.headers["content-type"], "text/event-stream; charset=utf-8");
  assert.deepEqual([...events.body.matchAll(/^event: (.*)$/gm)].map((m) => m[1]), ["host-registered", "host-down", "host-up"]);
});

test("a controller with a short heartbeat timeout asks for beats a third of it apart: one slow beat does not make a host down", async () => {
  const short = memoryControllerApp({ heartbeatTimeoutMs: 2500 });
  const hb = { name: "host-s", url: "http://127.0.0.1:1", version: "1", accel: "tcg", migrations: [] };
  const r = await short.app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: short.auth, payload: hb });
  assert.deepEqual(r.json(), { intervalMs: 833, ended: [] });
  short.clock.advance(833 + 1200); // the next beat came 1.2 s late
  await short.controller.checkLiveness();
  const hosts = await short.app.inject({ method: "GET", url: "/v1/hosts", headers: short.auth });
  assert.equal(hosts.json<{ hosts: { state: string }[] }>().hosts[0]!.state, "up");
});

test("a heartbeat naming migrations is told which have ended (done, or unknown to this controller)", async () => {
  const live = await store.createMigration(newRecord(contractPlan("m-live"), clock.now()));
  const ended = await store.createMigration(newRecord(contractPlan("m-ended"), clock.now()));
  await store.updateMigration({ ...ended, phase: "done", outcome: "rolled-back", reason: "test" }, ended.version);
  const hb = { name: "host-r", url: "http://127.0.0.1:1", version: "1", accel: "tcg", migrations: [live.id, "m-ended", "m-never"] };
  const r = await app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: auth, payload: hb });
  assert.equal(r.statusCode, 200, r.body);
  assert.deepEqual(r.json(), { intervalMs: 2000, ended: ["m-ended", "m-never"] });
  const bad = await app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: auth, payload: { ...hb, migrations: ["../x"] } });
  assert.equal(bad.statusCode, 400);
});

test("problems carry stable codes: unknown VM 404, bad body 400", async () => {
  const r = await app.inject({ method: "POST", url: "/v1/migrations", headers: auth, payload: { vm: "ghost" } });
  assert.equal(r.statusCode, 404);
  assert.equal(r.json<{ code: string }>().code, "FERRY_ERR_NOT_FOUND");
  const b = await app.inject({ method: "POST", url: "/v1/vms", headers: auth, payload: { name: "x", host: "host-a", memoryMiB: 1, nics: [] } });
  assert.equal(b.statusCode, 400);
  assert.equal(b.json<{ details: { field: string } }>().details.field, "memoryMiB");
});

test("a body over the limit is 413 FERRY_ERR_TOO_LARGE and a body that is not JSON 415 FERRY_ERR_MEDIA_TYPE (problem bodies, not 400 or 500); no VM", async () => {
  const big = await app.inject({ method: "POST", url: "/v1/vms", headers: { ...auth, "content-type": "application/json" }, payload: JSON.stringify({ name: "big", host: "host-a", memoryMiB: 64, nics: [], pad: "x".repeat(1024 * 1024) }) });
  assert.equal(big.statusCode, 413, big.body);
  assert.equal(big.json<{ code: string }>().code, "FERRY_ERR_TOO_LARGE");
  for (const type of ["text/plain", "application/xml"]) {
    const r = await app.inject({ method: "POST", url: "/v1/vms", headers: { ...auth, "content-type": type }, payload: "name=x" });
    assert.equal(r.statusCode, 415, `${type}: ${r.body}`);
    assert.equal(r.json<{ code: string; message: string }>().code, "FERRY_ERR_MEDIA_TYPE");
  }
  assert.deepEqual(await controller.listVms(), []);
});
