import assert from "node:assert/strict";
import { test } from "node:test";
import { memoryControllerApp } from "../testing.ts";

test("a migration's stream and tuning routes: an unknown id is 404 before any stream; bad limits are 400 with the rule", async () => {
  const { app, auth } = memoryControllerApp();
  const events = await app.inject({ method: "GET", url: "/v1/migrations/m-nope/events", headers: auth });
  assert.equal(events.statusCode, 404);
  assert.equal(events.json<{ code: string }>().code, "FERRY_ERR_NOT_FOUND");
  const force = await app.inject({ method: "POST", url: "/v1/migrations/m-nope/force-complete", headers: auth });
  assert.equal(force.statusCode, 404, force.body);
  const set = await app.inject({ method: "POST", url: "/v1/migrations/m-nope/parameters", headers: auth, payload: { maxBandwidthMiBps: 5 } });
  assert.equal(set.statusCode, 404, set.body);
  for (const payload of [{}, { maxBandwidthMiBps: 0 }, { downtimeLimitMs: 1.5 }, { bandwidth: 3 }]) {
    const r = await app.inject({ method: "POST", url: "/v1/migrations/m-nope/parameters", headers: auth, payload });
    assert.equal(r.statusCode, 400, `${JSON.stringify(payload)}: ${r.body}`);
    assert.equal(r.json<{ code: string }>().code, "FERRY_ERR_INVALID");
  }
  const unauth = await app.inject({ method: "GET", url: "/v1/migrations/m-nope/events" });
  assert.equal(unauth.statusCode, 401);
});
