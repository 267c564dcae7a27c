// Mutual TLS on real listening apps (the controller's and an agent's), with
// certificates made by Ferry's CA (the real openssl): a client without a
// certificate, or with one from another CA, is refused in the TLS handshake —
// no HTTP status at all; the right certificate still needs the right token;
// clients verify the server against their CA.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Agent } from "../../src/agent/agent.ts";
import { AgentClient } from "../../src/wire/agent-client.ts";
import { buildAgentApp } from "../../src/agent/http/app.ts";
import { makeTestHost } from "../../src/agent/testing.ts";
import type { TestHost } from "../../src/agent/testing.ts";
import { ControllerClient } from "../../src/api/client.ts";
import { initCa, issueCert } from "../../src/core/ca.ts";
import { FerryError, isFerryError } from "../../src/core/errors.ts";
import { loadTls, tlsFetch } from "../../src/core/tls.ts";
import { memoryController } from "../fuzz/memory-controller.ts";
import type { MemoryController } from "../fuzz/memory-controller.ts";
import type { TlsMaterial } from "../../src/core/tls.ts";
import { resolveConnection } from "../../src/cli/commands/connect.ts";
import { parseControllerConfig } from "../../src/controller/config.ts";
import { parseHostConfig } from "../../src/host/config.ts";

const TOKEN = "c".repeat(40);
const AGENT_TOKEN = "a".repeat(40);

interface Outcome {
  status?: number;
  error?: string;
}

/** One raw HTTPS GET: the status, or the error when no HTTP answer came back. */
function rawGet(url: string, o: { ca: Buffer; cert?: Buffer; key?: Buffer; token?: string }): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = request(url, { ca: o.ca, ...(o.cert ? { cert: o.cert, key: o.key } : {}), headers: o.token ? { authorization: `Bearer ${o.token}` } : {}, agent: false, signal: AbortSignal.timeout(15_000) }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0 }));
      res.on("error", (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    });
    req.on("error", (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    req.end();
  });
}

let dir: string;
let good: TlsMaterial; // server and client of CA "a"
let client: TlsMaterial; // another client of CA "a"
let evil: TlsMaterial; // a client of CA "b"
let caA: Buffer;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "ferry-tls-"));
  await initCa(join(dir, "a"));
  await initCa(join(dir, "b"));
  const s = await issueCert(join(dir, "a"), { name: "server" });
  const c = await issueCert(join(dir, "a"), { name: "cli" });
  const e = await issueCert(join(dir, "b"), { name: "cli" });
  good = await loadTls(s);
  client = await loadTls(c);
  evil = await loadTls(e);
  caA = good.ca;
});
after(() => rm(dir, { recursive: true, force: true }));

describe("the CA", () => {
  test("init makes an owner-only dir and key; issue signs a server+client certificate naming 127.0.0.1; neither overwrites", async () => {
    assert.equal((await stat(join(dir, "a"))).mode & 0o777, 0o700);
    for (const f of ["a/ca.key", "a/server.key", "a/cli.key", "b/ca.key"]) assert.equal((await stat(join(dir, f))).mode & 0o777, 0o600, f);
    const { X509Certificate } = await import("node:crypto");
    const cert = new X509Certificate(await readFile(join(dir, "a/server.crt")));
    assert.ok(cert.verify(new X509Certificate(caA).publicKey), "signed by the CA");
    assert.match(cert.subjectAltName ?? "", /IP Address:127\.0\.0\.1/);
    assert.ok(!cert.ca);
    await assert.rejects(initCa(join(dir, "a")), (e: unknown) => isFerryError(e, "FERRY_ERR_CONFLICT"));
    await assert.rejects(issueCert(join(dir, "a"), { name: "server" }), (e: unknown) => isFerryError(e, "FERRY_ERR_CONFLICT"));
    for (const name of ["../x", "a/b", "$(id)", "; rm -rf /", "", "x".repeat(64), "a\nb", "a\0b"]) {
      await assert.rejects(issueCert(join(dir, "a"), { name }), (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"), JSON.stringify(name));
    }
    await assert.rejects(issueCert(join(dir, "a"), { name: "ok", ips: ["127.0.0.1; id"] }), (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"));
    await assert.rejects(issueCert(join(dir, "a"), { name: "ok", dns: ["$(id).example"] }), (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"));
    await assert.rejects(issueCert(join(dir, "nowhere"), { name: "ok" }), (e: unknown) => isFerryError(e, "FERRY_ERR_NOT_FOUND"));
  });
});

describe("controller API over mutual TLS", () => {
  let url = "";
  let mc: MemoryController | undefined;
  before(async () => {
    mc = memoryController(TOKEN, { tls: good, agentToken: AGENT_TOKEN });
    url = await mc.app.listen({ host: "127.0.0.1", port: 0 });
  });
  after(() => mc?.close());

  test("listens on https", () => assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/));

  test("no client certificate: refused in the TLS handshake (no HTTP status), with or without the token", async () => {
    for (const token of [undefined, TOKEN]) {
      const r = await rawGet(`${url}/v1/hosts`, { ca: caA, ...(token ? { token } : {}) });
      assert.equal(r.status, undefined, `got HTTP ${r.status}`);
      assert.ok(r.error, "an error");
    }
  });

  test("a certificate from another CA: refused in the handshake, even with the right token", async () => {
    const r = await rawGet(`${url}/v1/hosts`, { ca: caA, cert: evil.cert, key: evil.key, token: TOKEN });
    assert.equal(r.status, undefined, `got HTTP ${r.status}`);
    const c = new ControllerClient({ baseUrl: url, token: TOKEN, fetch: tlsFetch({ ...evil, ca: caA }) });
    await assert.rejects(c.hosts(), (e: unknown) => isFerryError(e, "FERRY_ERR_CONTROLLER") && e.retryable);
    await assert.rejects(c.events(() => undefined), (e: unknown) => isFerryError(e, "FERRY_ERR_CONTROLLER"));
  });

  test("the right certificate and the right token work; a wrong or missing token is 401", async () => {
    const ok = new ControllerClient({ baseUrl: url, token: TOKEN, tls: client });
    assert.deepEqual(await ok.hosts(), []);
    assert.equal((await ok.heartbeat({ name: "host-t", url: "https://127.0.0.1:1", version: "1", accel: "tcg" })).intervalMs, 2000);
    const seen: string[] = [];
    await ok.events((e) => seen.push(e.type)); // the event stream (a streamed body) over TLS
    assert.deepEqual(seen, ["host-registered"]);
    await assert.rejects(new ControllerClient({ baseUrl: url, token: "w".repeat(40), tls: client }).hosts(), (e: unknown) => isFerryError(e, "FERRY_ERR_UNAUTHORIZED"));
    assert.equal((await rawGet(`${url}/v1/hosts`, { ca: caA, cert: client.cert, key: client.key })).status, 401);
    assert.equal((await rawGet(`${url}/v1/hosts`, { ca: caA, cert: client.cert, key: client.key, token: TOKEN })).status, 200);
  });

  test("the client verifies the server: a client trusting another CA refuses it", async () => {
    const c = new ControllerClient({ baseUrl: url, token: TOKEN, tls: evil }); // evil's CA is "b"; the server's cert is from "a"
    await assert.rejects(c.hosts(), (e: unknown) => isFerryError(e, "FERRY_ERR_CONTROLLER") && /certificate/i.test(e.message));
  });

  test("cleartext HTTP to the TLS port gets no API answer; a TLS client never falls back to http://", async () => {
    const plain = await new Promise<Outcome>((resolve) => {
      const req = httpRequest(url.replace("https:", "http:") + "/v1/hosts", { headers: { authorization: `Bearer ${TOKEN}` }, signal: AbortSignal.timeout(15_000) }, (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0 });
      });
      req.on("error", (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
      req.end();
    });
    assert.ok(plain.status === undefined || plain.status >= 400, JSON.stringify(plain));
    const c = new ControllerClient({ baseUrl: url.replace("https:", "http:"), token: TOKEN, tls: client });
    await assert.rejects(c.hosts(), (e: unknown) => e instanceof FerryError && /only https:\/\/ URLs/.test(e.message));
  });
});

describe("agent API over mutual TLS", () => {
  let host: TestHost;
  let agent: Agent;
  let app: ReturnType<typeof buildAgentApp> | undefined;
  let url = "";
  before(async () => {
    host = await makeTestHost({ name: "tls-host" });
    agent = await Agent.open({ config: host.config });
    app = buildAgentApp({ agent, token: AGENT_TOKEN }, { tls: good });
    url = await app.listen({ host: "127.0.0.1", port: 0 });
  });
  after(async () => {
    await app?.close();
    await agent.close();
    await host.cleanup();
  });

  test("no certificate or another CA's: refused in the handshake; right cert + token: the inventory; wrong token: 401", async () => {
    assert.equal((await rawGet(`${url}/v1/health`, { ca: caA, token: AGENT_TOKEN })).status, undefined);
    assert.equal((await rawGet(`${url}/v1/health`, { ca: caA, cert: evil.cert, key: evil.key, token: AGENT_TOKEN })).status, undefined);
    const inv = await new AgentClient({ baseUrl: url, token: AGENT_TOKEN, tls: client }).inventory();
    assert.equal(inv.host, "tls-host");
    await assert.rejects(new AgentClient({ baseUrl: url, token: "x".repeat(40), tls: client }).health(), (e: unknown) => isFerryError(e, "FERRY_ERR_UNAUTHORIZED"));
    await assert.rejects(new AgentClient({ baseUrl: url, token: AGENT_TOKEN, tls: evil }).health(), (e: unknown) => isFerryError(e, "FERRY_ERR_AGENT"));
  });
});

describe("configuring TLS", () => {
  test("host.yaml and controller.yaml: tls { cert, key, ca } resolved against the file; all three required; unknown keys refused", () => {
    const h = parseHostConfig("name: h1\ntls: { cert: tls/h1.crt, key: tls/h1.key, ca: /etc/ferry/ca.crt }\n", { source: "/etc/ferry/host.yaml" });
    assert.deepEqual(h.tls, { cert: "/etc/ferry/tls/h1.crt", key: "/etc/ferry/tls/h1.key", ca: "/etc/ferry/ca.crt" });
    assert.equal(parseHostConfig("name: h1\n").tls, null);
    const c = parseControllerConfig("stateDir: /s\nagentTokenFile: /a\ntls: { cert: c.crt, key: c.key, ca: ca.crt }\n", { source: "/etc/ferry/controller.yaml" });
    assert.deepEqual(c.tls, { cert: "/etc/ferry/c.crt", key: "/etc/ferry/c.key", ca: "/etc/ferry/ca.crt" });
    assert.throws(() => parseHostConfig("name: h1\ntls: { cert: a, key: b }\n", { source: "h.yaml" }), /h\.yaml:2: tls\.ca: required/);
    assert.throws(() => parseControllerConfig("stateDir: /s\nagentTokenFile: /a\ntls: { cert: a, key: b, ca: c, pin: d }\n"), /tls\.pin: unknown field/);
    assert.throws(() => parseControllerConfig("stateDir: /s\nagentTokenFile: /a\ntls: { cert: ../a, key: b, ca: c }\n"), /tls\.cert: must (not contain '\.\.'|be an absolute path)/);
  });

  test("unreadable or non-PEM files: FERRY_ERR_CONFIG naming the field", async () => {
    await assert.rejects(loadTls({ cert: join(dir, "nope.crt"), key: join(dir, "a/cli.key"), ca: join(dir, "a/ca.crt") }), (e: unknown) => isFerryError(e, "FERRY_ERR_CONFIG") && /tls\.cert/.test(e.message));
    await writeFile(join(dir, "junk.pem"), "not pem");
    await assert.rejects(loadTls({ cert: join(dir, "a/cli.crt"), key: join(dir, "junk.pem"), ca: join(dir, "a/ca.crt") }), (e: unknown) => isFerryError(e, "FERRY_ERR_CONFIG") && /tls\.key .*not a PEM/.test(e.message));
  });

  test("the CLI: TLS files from flags or the environment (all three), or from the context file with its controller", async () => {
    const env = { HOME: dir, FERRY_CONTEXT: "" };
    const flags = { controller: "https://127.0.0.1:1", "token-file": "/t", "tls-cert": "/c.crt", "tls-key": "/c.key", "tls-ca": "/ca.crt" };
    assert.deepEqual((await resolveConnection("hosts", flags, env)).tls, { cert: "/c.crt", key: "/c.key", ca: "/ca.crt" });
    await assert.rejects(resolveConnection("hosts", { ...flags, "tls-ca": undefined }, env), /--tls-cert, --tls-key and --tls-ca together \(missing: --tls-ca\)/);
    await assert.rejects(resolveConnection("hosts", { ...flags, controller: "http://127.0.0.1:1" }, env), /must be an https:\/\/ URL/);
    assert.deepEqual((await resolveConnection("hosts", { controller: "https://x:1", "token-file": "/t" }, { ...env, FERRY_TLS_CERT: "/e.crt", FERRY_TLS_KEY: "/e.key", FERRY_TLS_CA: "/eca.crt" })).tls, { cert: "/e.crt", key: "/e.key", ca: "/eca.crt" });
    const ctx = join(dir, "context.json");
    await writeFile(ctx, JSON.stringify({ controller: "https://127.0.0.1:2", tokenFile: "tok", tls: { cert: "c.crt", key: "c.key", ca: "ca.crt" } }));
    const c = await resolveConnection("hosts", {}, { HOME: dir, FERRY_CONTEXT: ctx });
    assert.deepEqual(c, { controller: "https://127.0.0.1:2", tokenFile: join(dir, "tok"), tls: { cert: join(dir, "c.crt"), key: join(dir, "c.key"), ca: join(dir, "ca.crt") }, from: { controller: `the context file ${ctx}`, tokenFile: `the context file ${ctx}` } });
    // another controller given on the command line: the context's certificate is not sent to it
    assert.equal((await resolveConnection("hosts", { controller: "http://127.0.0.1:3" }, { HOME: dir, FERRY_CONTEXT: ctx })).tls, null);
    await writeFile(ctx, JSON.stringify({ controller: "https://127.0.0.1:2", tokenFile: "tok", tls: { cert: "c.crt", pem: "x" } }));
    await assert.rejects(resolveConnection("hosts", {}, { HOME: dir, FERRY_CONTEXT: ctx }), (e: unknown) => isFerryError(e, "FERRY_ERR_CONFIG") && /tls\.pem: unknown field/.test(e.message));
  });
});
