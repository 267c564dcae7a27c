import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { EventBus } from "./events.ts";
import type { ControllerEvent } from "../wire/events.ts";
import { SqliteEventLog } from "../store/events.ts";

describe("event log", () => {
  it("a restarted controller still shows earlier events, and numbers continue after them", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ferry-events-"));
    try {
      const file = join(dir, "ferry.db");
      const log1 = new SqliteEventLog<ControllerEvent>(file);
      const bus1 = new EventBus(10, { log: log1 });
      bus1.publish({ type: "host-registered", host: "host-a", reason: "agent", at: 1 });
      bus1.publish({ type: "host-down", host: "host-a", reason: "no heartbeat for 3000 ms", at: 2 });
      log1.close();

      const log2 = new SqliteEventLog<ControllerEvent>(file);
      const bus2 = new EventBus(10, { log: log2 });
      const next = bus2.publish({ type: "host-up", host: "host-a", reason: "heartbeat received", at: 3 });
      assert.equal(next.seq, 3);
      assert.deepEqual(bus2.since().map((e) => [e.seq, e.type]), [[1, "host-registered"], [2, "host-down"], [3, "host-up"]]);
      assert.deepEqual(bus2.since(2).map((e) => e.type), ["host-up"]);
      log2.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("keeps the newest rows and replays at most the bus's capacity, newest last", () => {
    const log = new SqliteEventLog<ControllerEvent>(":memory:", { keep: 150 });
    const bus = new EventBus(20, { log });
    for (let i = 1; i <= 400; i++) bus.publish({ type: "host-up", host: `h${i}`, reason: "r", at: i });
    const all = log.since(0, 10_000);
    assert.ok(all.length >= 150 && all.length < 250, `kept ${all.length} rows`);
    assert.equal(all.at(-1)!.seq, 400);
    const replay = bus.since(0);
    assert.equal(replay.length, 20);
    assert.deepEqual([replay[0]!.seq, replay.at(-1)!.seq], [381, 400]);
    log.close();
  });

  it("a failing log does not fail publishing: the event is still delivered and kept in memory", () => {
    const errors: unknown[] = [];
    const broken = { lastSeq: () => 7, append: () => { throw new Error("disk full"); }, since: () => { throw new Error("disk full"); } };
    const bus = new EventBus(5, { log: broken, onLogError: (e) => errors.push(e) });
    const seen: number[] = [];
    bus.subscribe((e) => seen.push(e.seq));
    bus.publish({ type: "host-up", host: "h", reason: "r", at: 1 });
    assert.deepEqual(seen, [8]);
    assert.deepEqual(bus.since().map((e) => e.seq), [8]);
    assert.equal(errors.length, 2);
  });
});
