import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { migrateCancel, queryStatus } from "./commands.ts";
import { QmpClient, QmpCommandError } from "./client.ts";
import { continueMigration, startMigration, waitMigration } from "../qemu/migration.ts";
import { loadTranscript, replayServer, scriptedServer } from "./replay.ts";

describe("QMP client against golden transcripts from QEMU 7.2", () => {
  it("negotiates, correlates replies and reports QMP error classes", async () => {
    const srv = await replayServer(loadTranscript("basic"));
    const q = await QmpClient.connect(srv.path);
    try {
      assert.equal(q.greeting.version.qemu.major, 7);
      assert.equal(q.greeting.version.qemu.minor, 2);
      assert.deepEqual(await queryStatus(q), { status: "running", running: true });
      const v = (await q.execute("query-version")) as { qemu: { major: number } };
      assert.equal(v.qemu.major, 7);
      await assert.rejects(q.execute("no-such-command"), (e: unknown) => e instanceof QmpCommandError && e.qmpClass === "CommandNotFound" && e.code === "FERRY_ERR_QMP");
      await assert.rejects(q.execute("device_del", { id: "nope" }), (e: unknown) => e instanceof QmpCommandError && e.qmpClass === "DeviceNotFound");
      const stopped = q.waitEvent("STOP", { timeoutMs: 2000 });
      await q.execute("stop");
      assert.equal((await stopped).event, "STOP");
      const resumed = q.waitEvent({ event: "RESUME" }, { timeoutMs: 2000 });
      await q.execute("cont");
      assert.ok((await resumed).timestampUs > 0);
      assert.deepEqual(srv.mismatches, []);
    } finally {
      q.close();
      await srv.close();
    }
  });

  it("drives a recorded migration through pre-switchover to completion", async () => {
    const srv = await replayServer(loadTranscript("migration-source"));
    const q = await QmpClient.connect(srv.path);
    try {
      const statuses: string[] = [];
      const events = q.events("MIGRATION");
      await startMigration(q, "tcp:127.0.0.1:34051", { capabilities: { "pause-before-switchover": true }, parameters: { downtimeLimit: 300 } });
      const pre = await waitMigration(q, { until: ["pre-switchover"], timeoutMs: 5000, onProgress: (i) => statuses.push(i.status) });
      assert.equal(pre.status, "pre-switchover");
      assert.ok(pre.ram && pre.ram.total > 0, "RAM statistics parsed");
      const done = await continueMigration(q, { timeoutMs: 5000 });
      assert.equal(done.status, "completed");
      assert.equal(done.downtimeMs, 32);
      const seen: string[] = [];
      for await (const e of events) {
        seen.push(String(e.data["status"]));
        if (e.data["status"] === "completed") break;
      }
      assert.deepEqual(seen, ["setup", "active", "pre-switchover", "device", "completed"]);
      assert.deepEqual(srv.mismatches, []);
    } finally {
      q.close();
      await srv.close();
    }
  });
});

describe("QMP client failure handling", () => {
  it("rejects every pending call at once when QEMU dies mid-command", async () => {
    const srv = await scriptedServer(() => undefined); // never answers
    const q = await QmpClient.connect(srv.path);
    const a = q.execute("query-status", undefined, { timeoutMs: 60_000 });
    const b = q.execute("query-migrate", undefined, { timeoutMs: 60_000 });
    const ev = q.waitEvent("DEVICE_DELETED", { timeoutMs: 60_000 });
    const t0 = performance.now();
    srv.socket()!.destroy();
    for (const p of [a, b, ev]) await assert.rejects(p, (e: unknown) => isFerryError(e, "FERRY_ERR_QMP_CLOSED"));
    assert.ok(performance.now() - t0 < 1000, "rejected promptly, not at the deadline");
    assert.ok(q.closed);
    await assert.rejects(q.execute("query-status"), (e: unknown) => isFerryError(e, "FERRY_ERR_QMP_CLOSED"));
    await srv.close();
  });

  it("a call past its deadline rejects with FERRY_ERR_TIMEOUT and the connection stays usable", async () => {
    let answer = false;
    const srv = await scriptedServer((sock, cmd) => {
      if (answer) sock.write(`${JSON.stringify({ return: { status: "running", running: true }, id: cmd["id"] })}\n`);
    });
    const q = await QmpClient.connect(srv.path);
    await assert.rejects(q.execute("query-status", undefined, { timeoutMs: 50 }), (e: unknown) => isFerryError(e, "FERRY_ERR_TIMEOUT"));
    answer = true;
    assert.equal((await queryStatus(q)).status, "running");
    const ac = new AbortController();
    const waiting = q.waitEvent("STOP", { signal: ac.signal });
    ac.abort();
    await assert.rejects(waiting, (e: unknown) => isFerryError(e, "FERRY_ERR_ABORTED"));
    q.close();
    await srv.close();
  });

  for (const [name, bytes] of [
    ["malformed JSON", Buffer.from("{not json\n")],
    ["a non-object", Buffer.from("[1,2]\n")],
    ["non-UTF-8 bytes", Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a])],
    ["an oversized line", Buffer.alloc(2 * 1024 * 1024 + 10, 0x61)],
  ] as const) {
    it(`closes the connection with a clear error on ${name}, harming no other connection`, async () => {
      const bad = await scriptedServer((sock) => sock.write(bytes));
      const good = await scriptedServer((sock, cmd) => sock.write(`${JSON.stringify({ return: {}, id: cmd["id"] })}\n`));
      const q1 = await QmpClient.connect(bad.path, { maxLineBytes: 1024 * 1024 });
      const q2 = await QmpClient.connect(good.path);
      const closed = new Promise((r) => q1.onClose(r));
      await assert.rejects(q1.execute("query-status"), (e: unknown) => isFerryError(e, "FERRY_ERR_QMP_PROTOCOL"));
      assert.ok(isFerryError(await closed, "FERRY_ERR_QMP_PROTOCOL"));
      assert.ok(q1.closed);
      assert.deepEqual(await q2.execute("query-status"), {});
      q2.close();
      await bad.close();
      await good.close();
    });
  }

  it("connect fails with a deadline when nothing answers", async () => {
    await assert.rejects(QmpClient.connect("/nonexistent/ferry/qmp.sock", { timeoutMs: 200 }), (e: unknown) => isFerryError(e, "FERRY_ERR_QMP_CLOSED"));
  });

  it("migrate_cancel error surfaces the class", async () => {
    const srv = await scriptedServer((sock, cmd) => sock.write(`${JSON.stringify({ error: { class: "GenericError", desc: "nope" }, id: cmd["id"] })}\n`));
    const q = await QmpClient.connect(srv.path);
    await assert.rejects(migrateCancel(q), (e: unknown) => e instanceof QmpCommandError && e.qmpClass === "GenericError" && /migrate_cancel: nope/.test(e.message));
    q.close();
    await srv.close();
  });
});
