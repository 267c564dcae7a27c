// The independent ping's summaries (bench/lib/pinger.ts), on reply times
// written out by hand: one every 16 ms, with the outages a switch-over makes.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { longestGap, longestGapAt, longestOutage, outAfter, outages, parseIputilsLine, silenceAround, stableSince } from "./pinger.ts";

/** Replies every 16 ms in [a, b). */
const every16 = (a: number, b: number): number[] => Array.from({ length: Math.ceil((b - a) / 16) }, (_, i) => a + i * 16);
const LONE = { minGapMs: 40, minRunMs: 50 };

describe("independent ping summaries", () => {
  it("reads iputils -D lines: seq and the stamp in ms", () => {
    assert.deepEqual(parseIputilsLine("[1795319033.680668] 64 bytes from 10.0.0.2: icmp_seq=7 ttl=64 time=0.9 ms"), [7, 1795319033680.668]);
    assert.equal(parseIputilsLine("From 10.0.0.1 icmp_seq=8 Destination Host Unreachable"), undefined);
  });

  it("one clean outage: the longest gap, stable after its end, out after the end only past it", () => {
    const t = [...every16(0, 500), ...every16(650, 2000)];
    assert.equal(longestGap(t, 0, 2000), 650 - 496);
    assert.deepEqual(outages(t, 0, 2000, 100), [[496, 650]]);
    assert.equal(stableSince(t, 0, 2000, 100), 650);
    assert.equal(stableSince(t, 0, 2000, 200), 0, "under the threshold: no outage, stable from the start");
    assert.equal(outAfter(t, 0, 600, 2000, 100), 50, "the outage's part past the end");
    assert.equal(outAfter(t, 0, 700, 2000, 100), 0);
  });

  it("a lone reply splits an outage for the raw figures and not for the lone-reply ones", () => {
    // out 496–650 with one reply at 570: two gaps of 74 and 80 ms, both under a 100 ms threshold
    const t = [...every16(0, 500), 570, ...every16(650, 2000)];
    assert.equal(longestGap(t, 0, 2000), 80);
    assert.equal(stableSince(t, 0, 2000, 100), 0);
    assert.equal(stableSince(t, 0, 2000, 100, LONE), 650);
    assert.equal(longestOutage(t, 0, 2000, LONE), 154);
    assert.equal(outAfter(t, 0, 600, 2000, 100, LONE), 50);
    // a run of 50 ms or more ends the outage: two outages then, each under the threshold
    const run = [...every16(0, 500), ...every16(570, 650), ...every16(700, 2000)];
    assert.deepEqual(outages(run, 0, 2000, 100, LONE), []);
    assert.equal(longestOutage(run, 0, 2000, LONE), 570 - 496);
  });

  it("the edges count: no reply before `to` is an outage up to it", () => {
    const t = every16(0, 500);
    assert.deepEqual(outages(t, 0, 1000, 100), [[496, 1000]]);
    assert.equal(stableSince(t, 0, 1000, 100), 1000);
    assert.equal(outAfter(t, 0, 800, 1000, 100), 200);
  });

  it("the silence around a pause: the replies on either side, none when the target answered inside it", () => {
    const times = [1000, 1016, 1032, 1300, 1316];
    assert.deepEqual(silenceAround(times, 1040, 1250), [1032, 1300]);
    assert.deepEqual(silenceAround(times, 1032, 1300), [1032, 1300], "replies at the edges bound it");
    assert.equal(silenceAround(times, 1010, 1250), undefined, "1016 and 1032 came inside");
    assert.equal(silenceAround(times, 990, 1250), undefined);
    assert.equal(silenceAround(times, 1320, 1400), undefined, "nothing after it yet");
  });

  it("where the longest gap is: the replies around it, the edges when it touches them", () => {
    const times = [1000, 1016, 1200, 1216, 1232];
    assert.deepEqual(longestGapAt(times, 990, 1240), [1016, 1200]);
    assert.equal(longestGap(times, 990, 1240), 184);
    assert.deepEqual(longestGapAt(times, 990, 1500), [1232, 1500], "no reply after 1232 up to `to`");
    assert.deepEqual(longestGapAt([], 0, 50), [0, 50]);
  });
});
