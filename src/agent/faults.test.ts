import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { systemClock } from "../core/clock.ts";
import { isFerryError } from "../core/errors.ts";
import { Faults } from "./faults.ts";

describe("lab fault switches", () => {
  test("refused on a host that is not a lab host", () => {
    assert.throws(() => new Faults(false).arm("hold:perform", true), (e) => isFerryError(e, "FERRY_ERR_STATE"));
  });

  test("a failure switch fires once with --once, every time without", () => {
    const f = new Faults(true);
    f.arm("precheck-fail", true);
    assert.deepEqual([f.fire("precheck-fail"), f.fire("precheck-fail")], [true, false]);
    f.arm("replug-fail", false);
    assert.deepEqual([f.fire("replug-fail"), f.fire("replug-fail")], [true, true]);
  });

  test("hold:<step> holds the step, lists the hold, and lets it go when cleared", async () => {
    const f = new Faults(true);
    f.arm("hold:finish", true, 60_000);
    assert.deepEqual(f.list(), [{ name: "hold:finish", once: true, holdMs: 60_000 }]);
    let done = false;
    const held = f.hold("finish", "m-1", systemClock, AbortSignal.timeout(30_000)).then(() => (done = true));
    await systemClock.sleep(50);
    assert.equal(done, false);
    assert.deepEqual(f.holding().map((h) => [h.step, h.migrationId, h.until - h.since]), [["finish", "m-1", 60_000]]);
    f.clear();
    await held;
    assert.deepEqual(f.holding(), []);
    // once: the next finish goes straight through
    await f.hold("finish", "m-1", systemClock, AbortSignal.timeout(1_000));
  });

  test("a hold ends by itself at its deadline or the step's own", async () => {
    const f = new Faults(true);
    f.arm("hold:begin", false, 30);
    await f.hold("begin", "m-2", systemClock, AbortSignal.timeout(10_000));
    f.arm("hold:begin", false, 60_000);
    await f.hold("begin", "m-3", systemClock, AbortSignal.timeout(30));
    assert.deepEqual(f.holding(), []);
  });

  test("holdMs is for hold switches only, and bounded", () => {
    const f = new Faults(true);
    assert.throws(() => f.arm("replug-fail", true, 100), (e) => isFerryError(e, "FERRY_ERR_INVALID"));
    assert.throws(() => f.arm("hold:begin", true, 10_000_000), (e) => isFerryError(e, "FERRY_ERR_INVALID"));
  });
});
