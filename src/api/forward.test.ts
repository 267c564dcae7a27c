// A follower forwards writes (and evacuation reads) to the leader and answers
// other reads itself; with no leader it refuses with FERRY_ERR_NOT_LEADER. A
// controller with no leadership given (SQLite) leads alone, term 1.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Leadership } from "../controller/leadership.ts";
import { buildControllerApp } from "./app.ts";
import { memoryControllerApp, TEST_TOKEN } from "./testing.ts";

test("SQLite: GET /v1/controllers names this controller alone as the leader of term 1", async () => {
  const { app, auth } = memoryControllerApp();
  const r = await app.inject({ method: "GET", url: "/v1/controllers", headers: auth });
  assert.equal(r.statusCode, 200);
  const v = JSON.parse(r.body) as { store: string; members: { leader: boolean }[]; leader: { term: number } };
  assert.equal(v.store, "sqlite");
  assert.equal(v.members.length, 1);
  assert.equal(v.members[0]!.leader, true);
  assert.equal(v.leader.term, 1);
});

test("a follower forwards a write to the leader as it came and passes the answer back; reads stay local; no leader: FERRY_ERR_NOT_LEADER", async () => {
  const { controller, auth } = memoryControllerApp();
  let leader: string | null = "http://10.0.0.2:7600";
  const follower: Leadership = {
    store: "etcd", self: "c-1", term: () => null, leaderUrl: () => Promise.resolve(leader),
    view: () => Promise.resolve({ store: "etcd", self: "c-1", members: [], leader: null }),
  };
  const seen: { url: string; method: string; headers: Record<string, string>; body: string }[] = [];
  const leaderFetch = ((url: string, init: RequestInit) => {
    seen.push({ url, method: String(init.method), headers: init.headers as Record<string, string>, body: typeof init.body === "string" ? init.body : "" });
    return Promise.resolve(Response.json({ intervalMs: 777 }, { status: 200 }));
  }) as typeof fetch;
  const app = buildControllerApp({ controller, token: TEST_TOKEN, version: "0.0.0", leadership: follower, leaderFetch });
  try {
    const hb = { name: "host-a", url: "http://127.0.0.1:7601", version: "1", accel: "tcg" };
    const r = await app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: auth, payload: hb });
    assert.equal(r.statusCode, 200);
    assert.deepEqual(JSON.parse(r.body), { intervalMs: 777 });
    assert.equal(r.headers["x-ferry-leader"], "http://10.0.0.2:7600");
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.url, "http://10.0.0.2:7600/v1/agents/heartbeat");
    assert.equal(seen[0]!.method, "POST");
    assert.equal(seen[0]!.headers["authorization"], auth.authorization);
    assert.equal(seen[0]!.headers["x-ferry-forwarded-by"], "c-1");
    assert.deepEqual(JSON.parse(seen[0]!.body), hb);
    assert.equal((await controller.listHosts()).length, 0, "the follower wrote nothing itself");

    assert.equal((await app.inject({ method: "GET", url: "/v1/hosts", headers: auth })).statusCode, 200);
    await app.inject({ method: "GET", url: "/v1/evacuations", headers: auth });
    assert.deepEqual(seen.map((s) => `${s.method} ${s.url}`), ["POST http://10.0.0.2:7600/v1/agents/heartbeat", "GET http://10.0.0.2:7600/v1/evacuations"], "a read of hosts stays local; evacuations are the leader's");

    const loop = await app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: { ...auth, "x-ferry-forwarded-by": "c-2" }, payload: hb });
    assert.equal(loop.statusCode, 503);
    assert.match(loop.body, /FERRY_ERR_NOT_LEADER.*forwarded here as to the leader/);

    leader = null;
    const none = await app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: auth, payload: hb });
    assert.equal(none.statusCode, 503);
    const p = JSON.parse(none.body) as { code: string; message: string; retryable: boolean };
    assert.equal(p.code, "FERRY_ERR_NOT_LEADER");
    assert.equal(p.retryable, true);
    assert.match(p.message, /no controller leads right now .*try again/);
    assert.equal(seen.length, 2);
  } finally {
    await app.close();
  }
});

test("a follower passes a migration's live stream and its record on from the leader (only it knows settling/measuring and QEMU's progress); with no leader the record is a local read", async () => {
  const { controller, auth } = memoryControllerApp();
  let leader: string | null = "http://10.0.0.2:7600";
  const follower: Leadership = {
    store: "etcd", self: "c-1", term: () => null, leaderUrl: () => Promise.resolve(leader),
    view: () => Promise.resolve({ store: "etcd", self: "c-1", members: [], leader: null }),
  };
  const seen: string[] = [];
  const frames = ["event: phase\ndata: {\"n\":1}\n\n", "event: end\ndata: {\"n\":2}\n\n"];
  const leaderFetch = ((url: string, init: RequestInit) => {
    seen.push(`${String(init.method)} ${url}`);
    if (!url.endsWith("/events")) return Promise.resolve(new Response(JSON.stringify({ code: "FERRY_ERR_NOT_FOUND", message: "the leader's answer", retryable: false }), { status: 404, headers: { "content-type": "application/json" } }));
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (const f of frames) c.enqueue(new TextEncoder().encode(f));
        c.close();
      },
    });
    return Promise.resolve(new Response(body, { status: 200, headers: { "content-type": "text/event-stream; charset=utf-8" } }));
  }) as typeof fetch;
  const app = buildControllerApp({ controller, token: TEST_TOKEN, version: "0.0.0", leadership: follower, leaderFetch });
  try {
    const r = await app.inject({ method: "GET", url: "/v1/migrations/m-1a2b3c4d/events", headers: auth });
    assert.equal(r.statusCode, 200);
    assert.match(String(r.headers["content-type"]), /^text\/event-stream/);
    assert.equal(r.headers["x-ferry-leader"], "http://10.0.0.2:7600");
    assert.equal(r.body, frames.join(""));
    const rec = await app.inject({ method: "GET", url: "/v1/migrations/m-1a2b3c4d", headers: auth });
    assert.equal(rec.statusCode, 404);
    assert.match(rec.body, /the leader's answer/, "the record comes from the leader");
    assert.deepEqual(seen, ["GET http://10.0.0.2:7600/v1/migrations/m-1a2b3c4d/events", "GET http://10.0.0.2:7600/v1/migrations/m-1a2b3c4d"]);
    leader = null;
    const local = await app.inject({ method: "GET", url: "/v1/migrations/m-1a2b3c4d", headers: auth });
    assert.equal(local.statusCode, 404, "no leader: read here (none in this store), not FERRY_ERR_NOT_LEADER");
    assert.doesNotMatch(local.body, /the leader's answer|NOT_LEADER/);
    const forwarded = await app.inject({ method: "GET", url: "/v1/migrations/m-1a2b3c4d", headers: { ...auth, "x-ferry-forwarded-by": "c-2" } });
    assert.equal(forwarded.statusCode, 404, "forwarded here as to the leader: answered from this store, not refused");
    assert.equal(seen.length, 2);
  } finally {
    await app.close();
  }
});
