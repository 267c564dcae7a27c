import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { systemClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import type { MigrationProgress } from "../wire/instance-ops.ts";
import { MigrationFeed } from "./migration-feed.ts";
import type { FeedEvent } from "./migration-feed.ts";

describe("migration feed", () => {
  it("keeps each migration's newest progress sample for a stream opened later, until the migration ends", () => {
    const feed = new MigrationFeed({ clock: systemClock, log: silentLogger });
    const sample = (remaining: number) => ({ type: "progress", migrationId: "m-1", phase: "perform", at: Date.now(), status: "active", remainingBytes: remaining } as unknown as MigrationProgress & FeedEvent);
    assert.equal(feed.lastProgress("m-1"), undefined, "nothing sampled yet");
    const got: FeedEvent[] = [];
    const off = feed.subscribe("m-1", (e) => got.push(e));
    feed.publish(sample(100));
    feed.publish(sample(40));
    off();
    assert.equal(got.length, 2, "subscribers get every sample");
    assert.equal((feed.lastProgress("m-1") as unknown as { remainingBytes: number }).remainingBytes, 40, "the newest is kept after perform");
    assert.equal(feed.lastProgress("m-2"), undefined, "per migration");
    feed.publish({ type: "end", migrationId: "m-1", at: Date.now() } as unknown as FeedEvent);
    assert.equal(feed.lastProgress("m-1"), undefined, "dropped at the end");
  });
});
