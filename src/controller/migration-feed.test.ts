import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { systemClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import { plan } from "../migration/testdata/scripted-port.ts";
import { newRecord } from "../migration/types.ts";
import type { MigrationProgress } from "../wire/instance-ops.ts";
import type { ProgressStreamEvent } from "../wire/migration-stream.ts";
import { MigrationFeed } from "./migration-feed.ts";
import type { FeedEvent } from "./migration-feed.ts";

describe("migration feed", () => {
  it("keeps each migration's newest progress sample for a stream opened later, until the migration ends", () => {
    const feed = new MigrationFeed({ clock: systemClock, log: silentLogger });
    const sample = (remaining: number): ProgressStreamEvent => ({
      type: "progress", migrationId: "m-1", phase: "perform", at: Date.now(),
      status: "active", transferredBytes: 100 - remaining, remainingBytes: remaining, totalBytes: 100, dirtyPagesRate: 0, mbps: 0,
    });
    assert.equal(feed.lastProgress("m-1"), undefined, "nothing sampled yet");
    const got: FeedEvent[] = [];
    const off = feed.subscribe("m-1", (e) => got.push(e));
    feed.publish(sample(100));
    feed.publish(sample(40));
    off();
    assert.equal(got.length, 2, "subscribers get every sample");
    assert.equal(feed.lastProgress("m-1")?.remainingBytes, 40, "the newest is kept after perform");
    assert.equal(feed.lastProgress("m-2"), undefined, "per migration");
    feed.publish({ type: "end", migrationId: "m-1", migration: newRecord(plan([], { id: "m-1" }), Date.now()), at: Date.now() });
    assert.equal(feed.lastProgress("m-1"), undefined, "dropped at the end");
  });

  it("takes one last sample when perform ends, so a RAM copy shorter than the tick is sampled with its totals; none after the end", async () => {
    const feed = new MigrationFeed({ clock: systemClock, log: silentLogger });
    let totals = 0;
    const sampler = (): Promise<MigrationProgress> => Promise.resolve({ status: totals > 0 ? "pre-switchover" : "none", transferredBytes: totals, remainingBytes: 0, totalBytes: totals, dirtyPagesRate: 0, mbps: 0 });
    const got: { totalBytes?: number }[] = [];
    feed.subscribe("m-2", (e) => got.push(e.type === "progress" ? e : {}));
    const life = new AbortController();
    feed.tick("m-2", sampler, life.signal);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(got.map((e) => e.totalBytes), [0], "the first tick came before the copy: no totals");
    totals = 256;
    feed.finishPerform("m-2");
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(got.map((e) => e.totalBytes), [0, 256], "the last sample, with the totals");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(got.length, 2, "no more ticks after perform");
    feed.tick("m-3", sampler, life.signal);
    feed.stop("m-3");
    feed.finishPerform("m-3");
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(feed.lastProgress("m-3"), undefined, "a migration stopped (ended) gets no last sample");
    life.abort();
  });
});
