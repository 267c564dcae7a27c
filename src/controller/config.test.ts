import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_DEADLINES, parseControllerConfig } from "./config.ts";

test("defaults: loopback 7600, token in the state dir, 6 s heartbeat timeout, the design's deadlines", () => {
  const c = parseControllerConfig("stateDir: /var/lib/fc\nagentTokenFile: /etc/ferry/agent-token\n", { source: "/etc/ferry/controller.yaml" });
  assert.deepEqual(c.listen, { address: "127.0.0.1", port: 7600 });
  assert.equal(c.tokenFile, "/var/lib/fc/token");
  assert.equal(c.heartbeatTimeoutMs, 6000);
  assert.deepEqual(c.deadlines, DEFAULT_DEADLINES);
  assert.deepEqual(c.deadlines, { unplugMs: 15000, convergeMs: 300000, precheckMs: 2000, primaryBackMs: 30000, stepMs: 120000 });
});

test("relative paths resolve against the config's directory; deadlines override one by one", () => {
  const c = parseControllerConfig("stateDir: state\nagentTokenFile: tok\ndeadlines: { unplugMs: 500 }\n", { source: "/srv/lab/controller.yaml" });
  assert.equal(c.stateDir, "/srv/lab/state");
  assert.equal(c.agentTokenFile, "/srv/lab/tok");
  assert.equal(c.deadlines.unplugMs, 500);
  assert.equal(c.deadlines.stepMs, 120000);
});

test("errors name the file, the line and the field", () => {
  const bad = (text: string, re: RegExp) => assert.throws(() => parseControllerConfig(text, { source: "/c.yaml" }), (e: Error) => re.test(e.message));
  bad("agentTokenFile: /t\n", /\/c\.yaml:1: stateDir: required/);
  bad("stateDir: /s\nagentTokenFile: /t\nlisten:\n  port: 99999\n", /\/c\.yaml:4: listen\.port: must be between 0 and 65535/);
  bad("stateDir: /s\nagentTokenFile: /t\ndeadlines:\n  unplugMS: 5\n", /\/c\.yaml:4: deadlines\.unplugMS: unknown field/);
  bad("stateDir: /s\nagentTokenFile: /t\nheartbeatTimeout: 5\n", /:3: heartbeatTimeout: unknown field/);
  bad("stateDir: [\n", /\/c\.yaml:\d+: YAML/);
});

test("lab: the connectivity watch's settle window (at least 5 s), its deadline past the end and the outage threshold", () => {
  const base = "stateDir: /s\nagentTokenFile: /t\n";
  assert.equal(parseControllerConfig(base).lab, null);
  assert.deepEqual(parseControllerConfig(`${base}lab: { fabric: demo }\n`).lab, { fabric: "demo", settleMs: 5000, settleDeadlineMs: 60000, outageMs: 100 });
  assert.deepEqual(parseControllerConfig(`${base}lab: { fabric: demo, settleMs: 8000, settleDeadlineMs: 20000, outageMs: 50 }\n`).lab, { fabric: "demo", settleMs: 8000, settleDeadlineMs: 20000, outageMs: 50 });
  const bad = (text: string, re: RegExp) => assert.throws(() => parseControllerConfig(base + text, { source: "/c.yaml" }), (e: Error) => re.test(e.message));
  bad("lab: { fabric: demo, settleMs: 1000 }\n", /lab\.settleMs: must be between 5000 and 600000/);
  bad("lab: { fabric: demo, settleMs: 10000, settleDeadlineMs: 9000 }\n", /lab\.settleDeadlineMs: must be at least settleMs \(10000\)/);
  bad("lab: { fabric: demo, settle: 5000 }\n", /lab\.settle: unknown field/);
});

test("store: sqlite by default; etcd endpoints with tls and auth, paths resolved; clear errors", () => {
  const base = "stateDir: /s\nagentTokenFile: /t\n";
  assert.deepEqual(parseControllerConfig(base, { source: "/c.yaml" }).store, { kind: "sqlite" });
  assert.deepEqual(parseControllerConfig(`${base}store: etcd://10.0.0.1:2379,etcd-b:2379\n`, { source: "/c.yaml" }).store, { kind: "etcd", endpoints: ["10.0.0.1:2379", "etcd-b:2379"] });
  const full = "store:\n  url: etcd://127.0.0.1:2379\n  tls: { ca: etcd/ca.crt, cert: etcd/c.crt, key: etcd/c.key }\n  username: ferry\n  passwordFile: etcd/pw\n  prefix: lab1/\n";
  assert.deepEqual(parseControllerConfig(base + full, { source: "/srv/c.yaml" }).store, {
    kind: "etcd", endpoints: ["127.0.0.1:2379"], tls: { ca: "/srv/etcd/ca.crt", cert: "/srv/etcd/c.crt", key: "/srv/etcd/c.key" }, auth: { username: "ferry", passwordFile: "/srv/etcd/pw" }, prefix: "lab1/",
  });
  const bad = (text: string, re: RegExp) => assert.throws(() => parseControllerConfig(base + text, { source: "/c.yaml" }), (e: Error & { code?: string }) => e.code === "FERRY_ERR_CONFIG" && re.test(e.message));
  bad("store: mysql://x\n", /\/c\.yaml:3: store: "mysql:\/\/x" is not a store: use sqlite/);
  bad("store: etcd://host\n", /:3: store: etcd endpoint "host" is not host:port/);
  bad("store: etcd://a:1,a:1\n", /listed twice/);
  bad("store:\n  url: etcd://a:1\n  username: u\n", /:\d+: store\.passwordFile: username and passwordFile go together/);
  bad("store:\n  url: etcd://a:1\n  tls: { ca: ca.crt, cert: c.crt }\n", /store\.tls\.key: cert and key go together/);
  bad("store:\n  url: etcd://a:1\n  tls: { cert: c.crt, key: c.key }\n", /store\.tls\.ca: required/);
  bad("store:\n  url: sqlite\n  username: u\n", /store\.username: only for an etcd store/);
  bad("store:\n  url: etcd://a:1\n  prefix: /abs\n", /store\.prefix: must be/);
  bad("store:\n  url: etcd://a:1\n  passwrd: x\n", /store\.passwrd: unknown field/);
});

test("election: a 2 s lease renewed every 500 ms by default; whole-second leases, renewals at most half the lease, an http(s) advertise URL", () => {
  const base = "stateDir: /s\nagentTokenFile: /t\n";
  assert.deepEqual(parseControllerConfig(base).election, { leaseMs: 2000, renewMs: 500, advertiseUrl: null });
  assert.deepEqual(parseControllerConfig(`${base}election: { leaseMs: 4000 }\n`).election, { leaseMs: 4000, renewMs: 1000, advertiseUrl: null });
  assert.deepEqual(parseControllerConfig(`${base}election: { leaseMs: 3000, renewMs: 200, advertiseUrl: "https://10.0.0.1:7600/" }\n`).election, { leaseMs: 3000, renewMs: 200, advertiseUrl: "https://10.0.0.1:7600" });
  const bad = (text: string, re: RegExp) => assert.throws(() => parseControllerConfig(base + text, { source: "/c.yaml" }), (e: Error) => re.test(e.message));
  bad("election: { leaseMs: 1500 }\n", /:3: election\.leaseMs: must be whole seconds/);
  bad("election: { leaseMs: 2000, renewMs: 1500 }\n", /election\.renewMs: must be between 50 and 1000/);
  bad("election: { advertiseUrl: 10.0.0.1 }\n", /election\.advertiseUrl: must be http\(s\):\/\/host:port/);
  bad("election: { lease: 2 }\n", /election\.lease: unknown field/);
});
