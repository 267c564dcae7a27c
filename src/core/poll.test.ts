import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FakeClock } from "./clock.ts";
import { pollUntil } from "./poll.ts";

/** Let pending promise callbacks run (the probe's and pollUntil's awaits). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("pollUntil", () => {
  it("returns the first answer, asking every everyMs", async () => {
    const clock = new FakeClock();
    const asked: number[] = [];
    const p = pollUntil(clock, { timeoutMs: 1_000, everyMs: 100 }, () => {
      asked.push(clock.monotonic());
      return asked.length === 3 ? "up" : undefined;
    });
    for (let i = 0; i < 5; i++) {
      await settle();
      clock.advance(100);
    }
    assert.equal(await p, "up");
    assert.deepEqual(asked.map((t) => t - asked[0]!), [0, 100, 200]);
  });

  it("gives up with undefined after timeoutMs, asking once more at the deadline", async () => {
    const clock = new FakeClock();
    const asked: number[] = [];
    const p = pollUntil(clock, { timeoutMs: 250, everyMs: 100 }, () => void asked.push(clock.monotonic()));
    for (let i = 0; i < 10; i++) {
      await settle();
      clock.advance(50);
    }
    assert.equal(await p, undefined);
    assert.deepEqual(asked.map((t) => t - asked[0]!), [0, 100, 200, 250]);
  });

  it("asks at least once, even with no time at all", async () => {
    let asked = 0;
    assert.equal(await pollUntil(new FakeClock(), { timeoutMs: 0, everyMs: 100 }, () => void asked++), undefined);
    assert.equal(asked, 1);
  });

  it("awaits an async probe and ends with its error", async () => {
    const clock = new FakeClock();
    assert.equal(await pollUntil(clock, { timeoutMs: 100, everyMs: 10 }, () => Promise.resolve(0)), 0, "0 is an answer");
    await assert.rejects(pollUntil(clock, { timeoutMs: 100, everyMs: 10 }, () => Promise.reject(new Error("probe broke"))), /probe broke/);
  });

  it("stops waiting when the signal aborts", async () => {
    const clock = new FakeClock();
    const ac = new AbortController();
    const p = pollUntil(clock, { timeoutMs: 10_000, everyMs: 100, signal: ac.signal }, () => undefined);
    await settle();
    ac.abort(new Error("stop"));
    await assert.rejects(p, /stop/);
    const aborted = AbortSignal.abort(new Error("already"));
    let asked = 0;
    await assert.rejects(pollUntil(clock, { timeoutMs: 100, everyMs: 10, signal: aborted }, () => void asked++), /already/);
    assert.equal(asked, 0);
  });
});
