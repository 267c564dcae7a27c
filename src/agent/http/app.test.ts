import assert from "node:assert/strict";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, describe, test } from "node:test";
import { pino } from "pino";
import { FakeClock } from "../../core/clock.ts";
import type { Clock } from "../../core/clock.ts";
import type { Logger } from "../../core/log.ts";
import { Agent } from "../agent.ts";
import { makeTestHost } from "../testing.ts";
import type { TestHost } from "../testing.ts";
import { loadOrCreateToken } from "../../core/http/token.ts";
import { buildAgentApp } from "./app.ts";

const hosts: TestHost[] = [];
after(() => Promise.all(hosts.map((h) => h.cleanup())));
async function newHost(): Promise<TestHost> {
  const h = await makeTestHost();
  hosts.push(h);
  return h;
}

const VM = "6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab";
const VM2 = "7f1b0c9e-2d3a-4b5c-8d7e-0123456789ab";
const inst = (instanceId: string, vmUuid = VM) => ({ kind: "instance", vmUuid, instanceId });

async function boot(host: TestHost, o: { clock?: Clock; log?: Logger } = {}) {
  const agent = await Agent.open({ config: host.config, accel: { accel: "tcg", reason: "test" }, clock: o.clock, log: o.log });
  const { token } = await loadOrCreateToken(host.config.authTokenFile);
  const app = buildAgentApp({ agent, token, log: o.log });
  const headers = { authorization: `Bearer ${token}` };
  return {
    agent, app, token, headers,
    close: async () => {
      await app.close();
      await agent.close();
    },
  };
}

type Json = Record<string, unknown>;
const json = (r: { body: string }): Json => JSON.parse(r.body) as Json;

describe("agent HTTP API", () => {
  test("the token file is created owner-only; GET /v1/inventory lists the stand-in VFs with network, model and lease", async () => {
    const host = await newHost();
    const a = await boot(host);
    try {
      assert.equal((await stat(host.config.authTokenFile)).mode & 0o777, 0o600);
      assert.match(a.token, /^[0-9a-f]{64}$/);
      const r = await a.app.inject({ method: "GET", url: "/v1/inventory", headers: a.headers });
      assert.equal(r.statusCode, 200);
      const inv = json(r) as { host: string; pfs: Json[]; vfs: Json[]; networks: Json[] };
      assert.equal(inv.host, "host-a");
      assert.deepEqual(inv.pfs.map((p) => [p["bdf"], p["network"], p["numVfs"]]), [[host.fixture.pfs[0]!.bdf, "physnet1", 4]]);
      assert.deepEqual(inv.vfs.map((v) => v["bdf"]), host.vfs);
      for (const [i, v] of inv.vfs.entries()) {
        assert.equal(v["network"], "physnet1");
        assert.deepEqual(v["standIn"], { model: "rtl8139" });
        assert.equal(v["lease"], null);
        assert.equal(v["mac"], host.fixture.pfs[0]!.vfs[i]!.mac);
        assert.equal(v["numaNode"], 0);
      }
      assert.deepEqual(inv.networks, [{ name: "physnet1", bridge: null, netns: null, vlan: null, vfs: 4, free: 4 }]);
    } finally {
      await a.close();
    }
  });

  test("GET /v1/health names the host, version and accelerator", async () => {
    const a = await boot(await newHost());
    try {
      const h = json(await a.app.inject({ method: "GET", url: "/v1/health", headers: a.headers }));
      const pkg = JSON.parse(await readFile(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
      assert.equal(h["host"], "host-a");
      assert.equal(h["version"], pkg.version);
      assert.equal(h["accel"], "tcg");
      assert.equal(typeof h["uptimeSeconds"], "number");
    } finally {
      await a.close();
    }
  });

  test("every route needs the bearer token: none or a wrong one → 401 with WWW-Authenticate; the token is never logged", async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, cb) => { lines.push(chunk.toString()); cb(); } });
    const log = pino({ level: "debug" }, sink);
    const host = await newHost();
    const a = await boot(host, { log });
    try {
      for (const url of ["/v1/inventory", "/v1/leases", "/v1/health", "/openapi.json", "/v1/no-such-route"]) {
        const none = await a.app.inject({ method: "GET", url });
        assert.equal(none.statusCode, 401, url);
        assert.match(String(none.headers["www-authenticate"]), /^Bearer /);
        assert.equal(json(none)["code"], "FERRY_ERR_UNAUTHORIZED");
        for (const bad of [`Bearer ${a.token.slice(0, -1)}${a.token.endsWith("0") ? "1" : "0"}`, "Bearer x", `Basic ${a.token}`, a.token]) {
          const r = await a.app.inject({ method: "GET", url, headers: { authorization: bad } });
          assert.equal(r.statusCode, 401, `${url} with ${bad.slice(0, 8)}…`);
          assert.match(String(r.headers["www-authenticate"]), /^Bearer /);
        }
      }
      const bad = await a.app.inject({ method: "GET", url: "/v1/leases", headers: { authorization: "Bearer wrong" } });
      assert.match(String(bad.headers["www-authenticate"]), /error="invalid_token"/);
      assert.equal((await a.app.inject({ method: "GET", url: "/v1/no-such-route", headers: a.headers })).statusCode, 404);
      // an internal error gets logged (with the request) — still without the token
      a.agent.listLeases = () => {
        throw new Error("disk on fire at /secret/path");
      };
      const r = await a.app.inject({ method: "GET", url: "/v1/leases", headers: a.headers });
      assert.equal(r.statusCode, 500);
      const body = json(r);
      assert.equal(body["code"], "FERRY_ERR_INTERNAL");
      assert.doesNotMatch(r.body, /secret|stack|at .*\.ts/);
      assert.ok(lines.some((l) => l.includes("disk on fire")), "the error is in the log");
      assert.ok(!lines.join("").includes(a.token), "the token is not in the log");
    } finally {
      await a.close();
    }
  });

  test("malformed bodies → 400 FERRY_ERR_INVALID naming the field", async () => {
    const host = await newHost();
    const a = await boot(host);
    const vf = host.vfs[0]!;
    const cases: [unknown, string][] = [
      [{ holder: inst("i-1") }, "vf"],
      [{ vf: 5, holder: inst("i-1") }, "vf"],
      [{ vf }, "holder"],
      [{ vf, holder: { kind: "instance", vmUuid: "not-a-uuid", instanceId: "i-1" } }, "holder.vmUuid"],
      [{ vf, holder: { kind: "lease", vmUuid: VM } }, "holder.kind"],
      [{ vf, holder: { kind: "migration", vmUuid: VM } }, "holder.migrationId"],
      [{ vf, holder: inst("i-1"), extra: 1 }, "extra"],
    ];
    try {
      for (const [payload, field] of cases) {
        const r = await a.app.inject({ method: "POST", url: "/v1/leases", headers: a.headers, payload: payload as Json });
        assert.equal(r.statusCode, 400, JSON.stringify(payload));
        const body = json(r);
        assert.equal(body["code"], "FERRY_ERR_INVALID");
        assert.equal((body["details"] as Json)["field"], field, JSON.stringify(payload));
        assert.match(String(body["message"]), new RegExp(field.replace(".", "\\.")));
      }
      const broken = await a.app.inject({ method: "POST", url: "/v1/leases", headers: { ...a.headers, "content-type": "application/json" }, payload: "{nope" });
      assert.equal(broken.statusCode, 400);
      assert.equal(json(broken)["code"], "FERRY_ERR_INVALID");
      const spec = await a.app.inject({ method: "POST", url: "/v1/instances", headers: a.headers, payload: { spec: { uuid: "x" } } });
      assert.equal(spec.statusCode, 400);
      assert.equal((json(spec)["details"] as Json)["field"], "spec.uuid");
      assert.deepEqual(a.agent.listLeases(), []);
    } finally {
      await a.close();
    }
  });

  test("a body over the limit is 413 FERRY_ERR_TOO_LARGE, a body that is not JSON 415 FERRY_ERR_MEDIA_TYPE: problem bodies, nothing leased", async () => {
    const host = await newHost();
    const a = await boot(host);
    try {
      const big = await a.app.inject({ method: "POST", url: "/v1/leases", headers: { ...a.headers, "content-type": "application/json" }, payload: JSON.stringify({ vf: host.vfs[0], holder: inst("i-1"), pad: "x".repeat(2 * 1024 * 1024) }) });
      assert.equal(big.statusCode, 413, big.body);
      assert.equal(json(big)["code"], "FERRY_ERR_TOO_LARGE");
      assert.match(String(json(big)["message"]), /larger than the limit of 1048576 bytes/);
      for (const type of ["text/plain", "application/xml", "application/x-www-form-urlencoded"]) {
        const r = await a.app.inject({ method: "POST", url: "/v1/leases", headers: { ...a.headers, "content-type": type }, payload: `vf=${host.vfs[0]!}` });
        assert.equal(r.statusCode, 415, `${type}: ${r.body}`);
        assert.equal(json(r)["code"], "FERRY_ERR_MEDIA_TYPE");
        assert.match(String(json(r)["message"]), /content-type application\/json/);
      }
      assert.deepEqual(a.agent.listLeases(), []);
    } finally {
      await a.close();
    }
  });

  test("PCI addresses are validated (../../etc → 400) and must be in the inventory (0000:00:1f.7 → 404)", async () => {
    const host = await newHost();
    const a = await boot(host);
    const q = `kind=instance&vmUuid=${VM}&instanceId=i-1`;
    try {
      const traversal = await a.app.inject({ method: "POST", url: "/v1/leases", headers: a.headers, payload: { vf: "../../etc", holder: inst("i-1") } });
      assert.equal(traversal.statusCode, 400);
      assert.equal((json(traversal)["details"] as Json)["field"], "vf");
      const inPath = await a.app.inject({ method: "DELETE", url: `/v1/leases/..%2F..%2Fetc?${q}`, headers: a.headers });
      assert.equal(inPath.statusCode, 400);
      assert.equal((json(inPath)["details"] as Json)["field"], "vf");
      const unknown = await a.app.inject({ method: "POST", url: "/v1/leases", headers: a.headers, payload: { vf: "0000:00:1f.7", holder: inst("i-1") } });
      assert.equal(unknown.statusCode, 404);
      assert.equal(json(unknown)["code"], "FERRY_ERR_NOT_FOUND");
      assert.equal((await a.app.inject({ method: "DELETE", url: `/v1/leases/0000:00:1f.7?${q}`, headers: a.headers })).statusCode, 404);
      assert.equal((await a.app.inject({ method: "GET", url: "/v1/instances/..%2F..%2Fetc", headers: a.headers })).statusCode, 400);
      assert.equal((await a.app.inject({ method: "GET", url: "/v1/instances/i-00000000", headers: a.headers })).statusCode, 404);
      // an instance whose NIC names a VF this host does not have: refused before QEMU runs, nothing leased
      const spec = {
        uuid: VM, name: "vm1", memoryMiB: 128, kernel: "/k", initrd: "/i", noOs: true,
        nics: [{ name: "net0", mode: "ephemeral", mac: "52:54:00:00:00:01", guestPorts: { primary: 1 }, primary: { kind: "stand-in", model: "rtl8139", backend: { kind: "none" }, vf: "0000:00:1f.7" } }],
      };
      const r = await a.app.inject({ method: "POST", url: "/v1/instances", headers: a.headers, payload: { spec } });
      assert.equal(r.statusCode, 404);
      assert.equal((json(r)["details"] as Json)["field"], "spec.nics[0].primary.vf");
      // a VF held by someone else: 409, nothing started
      assert.equal((await a.app.inject({ method: "POST", url: "/v1/leases", headers: a.headers, payload: { vf: host.vfs[0], holder: inst("i-other", VM2) } })).statusCode, 200);
      spec.nics[0]!.primary.vf = host.vfs[0]!;
      const held = await a.app.inject({ method: "POST", url: "/v1/instances", headers: a.headers, payload: { spec } });
      assert.equal(held.statusCode, 409);
      assert.equal(json(held)["code"], "FERRY_ERR_LEASE_HELD");
      assert.deepEqual((json(await a.app.inject({ method: "GET", url: "/v1/instances", headers: a.headers })) as { instances: unknown[] }).instances, []);
    } finally {
      await a.close();
    }
  });

  test("two concurrent requests for the last free VF: exactly one wins, the other gets 409 FERRY_ERR_LEASE_HELD", async () => {
    const host = await newHost();
    const a = await boot(host);
    try {
      for (const [i, vf] of host.vfs.slice(0, -1).entries()) {
        const r = await a.app.inject({ method: "POST", url: "/v1/leases", headers: a.headers, payload: { vf, holder: inst(`i-${i}`) } });
        assert.equal(r.statusCode, 200);
      }
      const last = host.vfs.at(-1)!;
      const [r1, r2] = await Promise.all([
        a.app.inject({ method: "POST", url: "/v1/leases", headers: a.headers, payload: { vf: last, holder: inst("i-x", VM) } }),
        a.app.inject({ method: "POST", url: "/v1/leases", headers: a.headers, payload: { vf: last, holder: inst("i-y", VM2) } }),
      ]);
      assert.deepEqual([r1.statusCode, r2.statusCode].sort(), [200, 409]);
      const loser = json(r1.statusCode === 409 ? r1 : r2);
      const winner = json(r1.statusCode === 200 ? r1 : r2);
      assert.equal(loser["code"], "FERRY_ERR_LEASE_HELD");
      assert.deepEqual((loser["details"] as Json)["holder"], winner["holder"]);
      const inv = json(await a.app.inject({ method: "GET", url: "/v1/inventory", headers: a.headers })) as { networks: Json[] };
      assert.equal(inv.networks[0]!["free"], 0);
      // the winner asking again gets its lease back (idempotent)
      const again = await a.app.inject({ method: "POST", url: "/v1/leases", headers: a.headers, payload: { vf: last, holder: winner["holder"] as Json } });
      assert.equal(again.statusCode, 200);
    } finally {
      await a.close();
    }
  });

  test("leases survive an agent restart; release by body or query, idempotent; transfer", async () => {
    const host = await newHost();
    const [vf0, vf1] = [host.vfs[0]!, host.vfs[1]!];
    const a = await boot(host);
    await a.app.inject({ method: "POST", url: "/v1/leases", headers: a.headers, payload: { vf: vf0, holder: inst("i-1") } });
    await a.app.inject({ method: "POST", url: "/v1/leases", headers: a.headers, payload: { vf: vf1, holder: { kind: "migration", migrationId: "m-1", vmUuid: VM, ttlMs: 3_600_000 } } });
    await a.close();

    const b = await boot(host);
    try {
      const leases = (json(await b.app.inject({ method: "GET", url: "/v1/leases", headers: b.headers })) as { leases: Json[] }).leases;
      assert.deepEqual(leases.map((l) => [l["vf"], (l["holder"] as Json)["kind"]]), [[vf0, "instance"], [vf1, "migration"]]);
      const inv = json(await b.app.inject({ method: "GET", url: "/v1/inventory", headers: b.headers })) as { vfs: Json[] };
      assert.deepEqual(inv.vfs[0]!["lease"], inst("i-1"));

      // wrong holder: refused
      const wrong = await b.app.inject({ method: "DELETE", url: `/v1/leases/${vf0}`, headers: b.headers, payload: { holder: inst("i-2") } });
      assert.equal(wrong.statusCode, 409);
      const byQuery = await b.app.inject({ method: "DELETE", url: `/v1/leases/${vf0}?kind=instance&vmUuid=${VM}&instanceId=i-1`, headers: b.headers });
      assert.deepEqual(json(byQuery), { vf: vf0, released: true });
      const again = await b.app.inject({ method: "DELETE", url: `/v1/leases/${vf0}`, headers: b.headers, payload: { holder: inst("i-1") } });
      assert.deepEqual(json(again), { vf: vf0, released: false });

      const t = await b.app.inject({
        method: "POST", url: `/v1/leases/${vf1}/transfer`, headers: b.headers,
        payload: { from: { kind: "migration", migrationId: "m-1", vmUuid: VM }, to: inst("i-9") },
      });
      assert.equal(t.statusCode, 200);
      assert.deepEqual(json(t)["holder"], inst("i-9"));
      const byBody = await b.app.inject({ method: "DELETE", url: `/v1/leases/${vf1}`, headers: b.headers, payload: { holder: inst("i-9") } });
      assert.deepEqual(json(byBody), { vf: vf1, released: true });
    } finally {
      await b.close();
    }
  });

  test("expired migration leases are reclaimed by the agent's periodic tick (injected clock)", async () => {
    const host = await newHost();
    const clock = new FakeClock();
    const a = await boot(host, { clock });
    try {
      const r = await a.app.inject({ method: "POST", url: "/v1/leases", headers: a.headers, payload: { vf: host.vfs[2], holder: { kind: "migration", migrationId: "m-7", vmUuid: VM, ttlMs: 5_000 } } });
      assert.equal((json(r)["holder"] as Json)["expiresAt"], clock.now() + 5_000);
      clock.advance(9_000);
      await new Promise((res) => setImmediate(res));
      assert.equal(a.agent.listLeases().length, 1, "not reclaimed before the tick");
      clock.advance(1_000); // the 10 s tick
      for (let i = 0; i < 10 && a.agent.listLeases().length > 0; i++) await new Promise((res) => setImmediate(res));
      assert.deepEqual(a.agent.listLeases(), []);
    } finally {
      await a.close();
    }
  });

  test("an instance that died while the agent was down is reported gone: runtime dir removed, its leases released", async () => {
    const host = await newHost();
    const a = await boot(host);
    a.agent.acquireLease(host.vfs[0]!, { kind: "instance", vmUuid: VM, instanceId: "i-deadbeef" });
    a.agent.acquireLease(host.vfs[1]!, { kind: "instance", vmUuid: VM2, instanceId: "i-0ther000" });
    await a.close();
    const dir = join(host.config.runDir, VM, "i-deadbeef");
    await mkdir(dir, { recursive: true });
    // a pid above the kernel's maximum (2^22): certainly not running
    await writeFile(join(dir, "meta.json"), JSON.stringify({ instanceId: "i-deadbeef", vmUuid: VM, vmName: "vm1", pid: 4_194_305, startedAt: 0 }));

    const b = await boot(host);
    try {
      assert.deepEqual(b.agent.recovery.gone.map((g) => [g.instanceId, g.releasedVfs]), [["i-deadbeef", [host.vfs[0]]]]);
      await assert.rejects(stat(dir));
      await assert.rejects(stat(join(host.config.runDir, VM)));
      // a lease of an instance with no runtime dir is reported, not released
      assert.deepEqual(b.agent.recovery.orphanLeases.map((l) => l.vf), [host.vfs[1]]);
      assert.deepEqual(b.agent.listLeases().map((l) => l.vf), [host.vfs[1]]);
      const list = json(await b.app.inject({ method: "GET", url: "/v1/instances", headers: b.headers })) as { instances: unknown[]; gone: Json[] };
      assert.deepEqual(list.instances, []);
      assert.equal(list.gone[0]!["instanceId"], "i-deadbeef");
    } finally {
      await b.close();
    }
  });

  test("GET /openapi.json is an OpenAPI 3.1 document listing every route with its schemas", async () => {
    const a = await boot(await newHost());
    try {
      const r = await a.app.inject({ method: "GET", url: "/openapi.json", headers: a.headers });
      assert.equal(r.statusCode, 200);
      const doc = json(r) as { openapi: string; paths: Record<string, Record<string, Json>>; components: Json };
      assert.equal(doc.openapi, "3.1.0");
      const ops = Object.entries(doc.paths).flatMap(([p, m]) => Object.keys(m).map((k) => `${k.toUpperCase()} ${p}`)).sort();
      assert.deepEqual(ops, [
        "DELETE /v1/faults",
        "DELETE /v1/leases/{vf}",
        "GET /metrics",
        "GET /openapi.json",
        "GET /v1/faults",
        "GET /v1/health",
        "GET /v1/instances",
        "GET /v1/instances/{id}",
        "GET /v1/instances/{id}/migration",
        "GET /v1/inventory",
        "GET /v1/leases",
        "POST /v1/faults",
        "POST /v1/instances",
        "POST /v1/instances/restore",
        "POST /v1/instances/{id}/dirty-rate",
        "POST /v1/instances/{id}/local-migrate",
        "POST /v1/instances/{id}/migration/parameters",
        "POST /v1/instances/{id}/save",
        "POST /v1/instances/{id}/stop",
        "POST /v1/leases",
        "POST /v1/leases/{vf}/transfer",
        "POST /v1/migrations/{id}/abort",
        "POST /v1/migrations/{id}/begin",
        "POST /v1/migrations/{id}/cancel",
        "POST /v1/migrations/{id}/confirm",
        "POST /v1/migrations/{id}/finish",
        "POST /v1/migrations/{id}/perform",
        "POST /v1/migrations/{id}/precheck",
        "POST /v1/migrations/{id}/prepare",
        "POST /v1/migrations/{id}/switchover",
      ]);
      const post = doc.paths["/v1/leases"]!["post"]!;
      const schema = ((post["requestBody"] as Json)["content"] as Record<string, Json>)["application/json"]!["schema"] as { properties: Json; required: string[] };
      assert.deepEqual(schema.required, ["vf", "holder"]);
      assert.ok(((post["responses"] as Json)["200"]));
      const del = doc.paths["/v1/leases/{vf}"]!["delete"]!;
      assert.deepEqual((del["parameters"] as Json[]).filter((p) => p["in"] === "path").map((p) => p["name"]), ["vf"]);
      assert.ok(del["requestBody"], "the optional holder body is documented");
      assert.deepEqual(doc.components["securitySchemes"], { bearer: { type: "http", scheme: "bearer" } });
    } finally {
      await a.close();
    }
  });
});

describe("migration-step routes", () => {
  test("validate their bodies and path ids before any step runs", async () => {
    const a = await boot(await newHost());
    try {
      const bad = [
        { url: "/v1/migrations/m1/perform", payload: { instanceId: "i-00000000", uri: "tcp:127.0.0.1:1; rm -rf /", unplugMs: 1000, convergeMs: 1000 }, field: "uri" },
        { url: "/v1/migrations/m1/perform", payload: { instanceId: "../../etc", uri: "tcp:127.0.0.1:1", unplugMs: 1000, convergeMs: 1000 }, field: "instanceId" },
        { url: "/v1/migrations/m1/finish", payload: { primaryBackMs: -5 }, field: "primaryBackMs" },
        { url: "/v1/migrations/m1/precheck", payload: { timeoutMs: 0 }, field: "timeoutMs" },
        { url: "/v1/migrations/m1/precheck", payload: { timeoutMs: 500, extra: 1 }, field: "extra" },
        { url: "/v1/migrations/m1/prepare", payload: { spec: { uuid: "nope" }, nics: [], leaseTtlMs: 1000 }, field: "uuid" },
        { url: "/v1/migrations/..%2F..%2Fetc/abort", payload: {}, field: "id" },
      ];
      for (const b of bad) {
        const r = await a.app.inject({ method: "POST", url: b.url, payload: b.payload, headers: a.headers });
        assert.equal(r.statusCode, 400, `${b.url} ${JSON.stringify(b.payload)} → ${r.body}`);
        assert.match(r.body, new RegExp(b.field));
      }
      const r = await a.app.inject({ method: "POST", url: "/v1/migrations/m1/begin", payload: { instanceId: "i-00000000" }, headers: a.headers });
      assert.equal(r.statusCode, 404, "an unknown instance is named");
      assert.match(r.body, /i-00000000/);
      for (const payload of [{}, { timeoutMs: 500 }]) {
        const pre = await a.app.inject({ method: "POST", url: "/v1/migrations/m-unknown/precheck", payload, headers: a.headers });
        assert.equal(pre.statusCode, 200, `${JSON.stringify(payload)}: ${pre.body}`);
        assert.equal((JSON.parse(pre.body) as { ok: boolean }).ok, false);
      }
      const noAuth = await a.app.inject({ method: "POST", url: "/v1/migrations/m1/abort", payload: {} });
      assert.equal(noAuth.statusCode, 401);
    } finally {
      await a.close();
    }
  });

  test("a migration that ended here answers its last step again and refuses every other; once the controller says it ended, everything of it is refused and its leases released", async () => {
    const host = await newHost();
    let a = await boot(host);
    try {
      const post = (url: string, payload: unknown) => a.app.inject({ method: "POST", url, payload: payload as Json, headers: a.headers });
      // a VF leased to migration m-old (as prepare would), then the rollback's abort
      const held = await a.app.inject({ method: "POST", url: "/v1/leases", headers: a.headers, payload: { vf: host.vfs[1]!, holder: { kind: "migration", vmUuid: VM, migrationId: "m-gone", ttlMs: 3_600_000 } } });
      assert.equal(held.statusCode, 200, held.body);
      const abort = await post("/v1/migrations/m-old/abort", {});
      assert.equal(abort.statusCode, 200);
      assert.deepEqual(json(await post("/v1/migrations/m-old/abort", {})), json(abort), "a re-sent abort answers again");
      const prepare = { spec: { uuid: VM, name: "r1", memoryMiB: 64, vcpus: 1, kernel: "/k", initrd: "/i", cmdline: "", nics: [], noOs: true }, nics: [], leaseTtlMs: 60_000 };
      for (const [step, body] of [["prepare", prepare], ["finish", { primaryBackMs: 100 }], ["precheck", {}]] as const) {
        const r = await post(`/v1/migrations/m-old/${step}`, body);
        assert.equal(r.statusCode, 409, `${step}: ${r.body}`);
        assert.equal(json(r)["code"], "FERRY_ERR_STATE");
        assert.match(String(json(r)["message"]), /m-old has ended on host host-a.*nothing was changed/);
      }
      assert.deepEqual((json(await a.app.inject({ method: "GET", url: "/v1/instances", headers: a.headers })) as { instances: unknown[] }).instances, [], "no QEMU started");
      // the heartbeat names both; the controller says both ended (after a restart: the state file remembers)
      await a.close();
      a = await boot(host);
      assert.deepEqual(a.agent.knownMigrations(), ["m-gone", "m-old"]);
      await a.agent.reconcileEnded(["m-gone", "m-old"]);
      assert.deepEqual(a.agent.listLeases(), [], "the ended migration's VF is free at once, not at lease expiry");
      assert.deepEqual(a.agent.knownMigrations(), []);
      const again = await post("/v1/migrations/m-old/abort", {});
      assert.equal(again.statusCode, 409, "confirmed ended: even its own last step is refused");
      assert.match(String(json(again)["message"]), /the controller reports it ended/);
    } finally {
      await a.close();
    }
  });
});

describe("fault switches", () => {
  test("are refused on a host that is not a lab host, naming the setting to change", async () => {
    const a = await boot(await newHost());
    try {
      const r = await a.app.inject({ method: "POST", url: "/v1/faults", payload: { name: "replug-fail" }, headers: a.headers });
      assert.equal(r.statusCode, 409);
      assert.match(r.body, /lab: true/);
      const bad = await a.app.inject({ method: "POST", url: "/v1/faults", payload: { name: "rm -rf" }, headers: a.headers });
      assert.equal(bad.statusCode, 400);
      const list = await a.app.inject({ method: "GET", url: "/v1/faults", headers: a.headers });
      assert.deepEqual(JSON.parse(list.body), { enabled: false, armed: [], holding: [] });
    } finally {
      await a.close();
    }
  });
});
