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

/** A controller stand-in on loopback: `answer` gives each heartbeat's status and reply body. */
async function stubController(answer: (body: Record<string, unknown>) => { status: number; body: unknown }): Promise<{ url: string; tokenFile: string; close(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "ferry-hb-"));
  const tokenFile = join(dir, "token");
  await writeFile(tokenFile, "s3cret\n", { mode: 0o600 });
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      const a = answer(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(a.status, { "content-type": a.status === 200 ? "application/json" : "application/problem+json" }).end(JSON.stringify(a.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tokenFile,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const BODY = { name: "host-a", url: "http://127.0.0.1:7601", version: "0.1.0", accel: "tcg" };

async function until(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 50));
}

test("each heartbeat names the host's migrations; those the controller says ended are let go before the next beat", async () => {
  const bodies: Record<string, unknown>[] = [];
  const ctl = await stubController((b) => {
    bodies.push(b);
    return { status: 200, body: { intervalMs: 100, ended: ["m-old"] } };
  });
  let held = ["m-live", "m-old"];
  const endedSeen: string[][] = [];
  const stop = startHeartbeat({
    controller: { url: ctl.url, tokenFile: ctl.tokenFile, heartbeatMs: 100 }, body: BODY, clock: systemClock, log: silentLogger,
    migrations: () => held,
    onEnded: (ids) => {
      endedSeen.push(ids);
      held = held.filter((x) => !ids.includes(x));
      return Promise.resolve();
    },
  });
  try {
    await until(() => bodies.length >= 2);
    assert.deepEqual(bodies[0]!["migrations"], ["m-live", "m-old"]);
    assert.deepEqual(endedSeen[0], ["m-old"], "the first beat's answer is acted on at once");
    assert.deepEqual(bodies[1]!["migrations"], ["m-live"]);
  } finally {
    stop();
    await ctl.close();
  }
});

test("a controller older than the migrations field (it refuses the field) still gets heartbeats, without it", async () => {
  const accepted: unknown[] = [];
  const ctl = await stubController((b) => {
    if ("migrations" in b) return { status: 400, body: { code: "FERRY_ERR_INVALID", message: "migrations: unknown field", retryable: false, details: { field: "migrations" } } };
    accepted.push(b);
    return { status: 200, body: { intervalMs: 100 } };
  });
  const stop = startHeartbeat({
    controller: { url: ctl.url, tokenFile: ctl.tokenFile, heartbeatMs: 100 }, body: BODY, clock: systemClock, log: silentLogger,
    migrations: () => ["m-1"], onEnded: () => Promise.resolve(),
  });
  try {
    await until(() => accepted.length >= 2);
    assert.ok(accepted.length >= 2, `heartbeats accepted: ${accepted.length}`);
  } finally {
    stop();
    await ctl.close();
  }
});

test("the heartbeat carries the host's QEMU and its memory at each beat; a controller that refuses them gets beats without them", async () => {
  const accepted: Record<string, unknown>[] = [];
  const refused: string[] = [];
  const qemu = { version: "7.2.22", machines: [{ name: "q35", aliasOf: "pc-q35-7.2" }], cpuModels: ["qemu64"] };
  let free = 1000;
  const ctl = await stubController((b) => {
    for (const f of ["memory", "qemu"]) {
      if (f in b) {
        refused.push(f);
        return { status: 400, body: { code: "FERRY_ERR_INVALID", message: `${f}: unknown field`, retryable: false, details: { field: f } } };
      }
    }
    accepted.push(b);
    return { status: 200, body: { intervalMs: 100 } };
  });
  const modern = await stubController((b) => {
    accepted.push({ modern: true, ...b });
    return { status: 200, body: { intervalMs: 100 } };
  });
  const memory = () => Promise.resolve({ totalMiB: 4096, availableMiB: free-- });
  const stops = [
    startHeartbeat({ controller: { url: ctl.url, tokenFile: ctl.tokenFile, heartbeatMs: 100 }, body: { ...BODY, qemu }, clock: systemClock, log: silentLogger, memory }),
    startHeartbeat({ controller: { url: modern.url, tokenFile: modern.tokenFile, heartbeatMs: 100 }, body: { ...BODY, qemu }, clock: systemClock, log: silentLogger, memory }),
  ];
  try {
    await until(() => accepted.filter((b) => b["modern"] !== true).length >= 2 && accepted.filter((b) => b["modern"] === true).length >= 2);
    const old = accepted.filter((b) => b["modern"] !== true);
    assert.ok(old.length >= 2 && old.every((b) => !("memory" in b) && !("qemu" in b)), JSON.stringify(old));
    assert.deepEqual(refused.sort(), ["memory", "qemu"], "each refused once, then left out");
    const fresh = accepted.filter((b) => b["modern"] === true);
    assert.ok(fresh.length >= 2, `beats to the current controller: ${fresh.length}`);
    assert.deepEqual(fresh[0]!["qemu"], qemu);
    const avail = fresh.map((b) => (b["memory"] as { availableMiB: number }).availableMiB);
    assert.notEqual(avail[0], avail[1], "memory is read at each beat");
  } finally {
    for (const s of stops) s();
    await ctl.close();
    await modern.close();
  }
});
