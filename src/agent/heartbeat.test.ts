import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { systemClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import { startHeartbeat } from "./heartbeat.ts";

test("the agent heartbeats to its controller with the controller token, and keeps trying through failures", async () => {
  const dir = await mkdtemp(join(tmpdir(), "ferry-hb-"));
  const tokenFile = join(dir, "token");
  await writeFile(tokenFile, "s3cret\n", { mode: 0o600 });
  const seen: { auth: string | undefined; body: unknown }[] = [];
  let fail = 2;
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      if (fail-- > 0) {
        res.writeHead(503).end("{}");
        return;
      }
      seen.push({ auth: req.headers.authorization, body: JSON.parse(body) as unknown });
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ intervalMs: 100 }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const stop = startHeartbeat({
    controller: { url: `http://127.0.0.1:${port}`, tokenFile, heartbeatMs: 100 },
    body: { name: "host-a", url: "http://127.0.0.1:7601", version: "0.1.0", accel: "tcg" },
    clock: systemClock,
    log: silentLogger,
  });
  try {
    for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(seen.length >= 2, `heartbeats after two failures: ${seen.length}`);
    assert.equal(seen[0]!.auth, "Bearer s3cret");
    assert.deepEqual(seen[0]!.body, { name: "host-a", url: "http://127.0.0.1:7601", version: "0.1.0", accel: "tcg" });
  } finally {
    stop();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  }
  const n = seen.length;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(seen.length, n, "no heartbeat after stop");
});

test("each heartbeat names the host's migrations; those the controller says ended are let go before the next beat", async () => {
  const dir = await mkdtemp(join(tmpdir(), "ferry-hb-"));
  const tokenFile = join(dir, "token");
  await writeFile(tokenFile, "s3cret\n", { mode: 0o600 });
  const bodies: unknown[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      bodies.push(JSON.parse(body) as unknown);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ intervalMs: 100, ended: ["m-old"] }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  let held = ["m-live", "m-old"];
  const endedSeen: string[][] = [];
  const stop = startHeartbeat({
    controller: { url: `http://127.0.0.1:${port}`, tokenFile, heartbeatMs: 100 },
    body: { name: "host-a", url: "http://127.0.0.1:7601", version: "0.1.0", accel: "tcg" },
    clock: systemClock,
    log: silentLogger,
    migrations: () => held,
    onEnded: (ids) => {
      endedSeen.push(ids);
      held = held.filter((x) => !ids.includes(x));
      return Promise.resolve();
    },
  });
  try {
    for (let i = 0; i < 100 && bodies.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual((bodies[0] as { migrations: string[] }).migrations, ["m-live", "m-old"]);
    assert.deepEqual(endedSeen[0], ["m-old"], "the first beat's answer is acted on at once");
    assert.deepEqual((bodies[1] as { migrations: string[] }).migrations, ["m-live"]);
  } finally {
    stop();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  }
});
