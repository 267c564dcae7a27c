import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { outageAfter, PingTally, parsePingLine, pingArgv, steadiness, summarize } from "./probe.ts";

// Recorded from iputils 20221126 (`ping -D -n -i 0.01 -W 1`) and busybox 1.35 (`busybox ping -i 0.01`).
const IPUTILS = `PING 10.91.1.10 (10.91.1.10) 56(84) bytes of data.
[1795319033.680668] 64 bytes from 10.91.1.10: icmp_seq=1 ttl=64 time=0.428 ms
[1795319033.695419] 64 bytes from 10.91.1.10: icmp_seq=2 ttl=64 time=0.050 ms
[1795319033.711372] 64 bytes from 10.91.1.10: icmp_seq=3 ttl=64 time=0.046 ms
[1795319034.120000] From 10.91.1.1 icmp_seq=30 Destination Host Unreachable
[1795319034.311372] 64 bytes from 10.91.1.10: icmp_seq=40 ttl=64 time=0.046 ms
[1795319034.311999] 64 bytes from 10.91.1.10: icmp_seq=40 ttl=64 time=0.046 ms (DUP!)
[1795319034.321372] 64 bytes from 10.91.1.10: icmp_seq=41 ttl=64 time=0.046 ms
ping: sendmsg: No buffer space available

--- 10.91.1.10 ping statistics ---
42 packets transmitted, 5 received, +1 duplicates, +1 errors, 88.0952% packet loss, time 650ms
rtt min/avg/max/mdev = 0.046/0.174/0.428/0.179 ms`;

const BUSYBOX = `PING 10.9.9.9 (10.9.9.9): 56 data bytes
64 bytes from 10.9.9.9: seq=0 ttl=64 time=0.055 ms
64 bytes from 10.9.9.9: seq=1 ttl=64 time=0.073 ms
64 bytes from 10.9.9.9: seq=3 ttl=64 time=0.064 ms

--- 10.9.9.9 ping statistics ---
5 packets transmitted, 3 packets received, 40% packet loss
round-trip min/avg/max = 0.055/0.065/0.073 ms`;

describe("parsePingLine", () => {
  it("reads iputils -D replies with their receive time", () => {
    assert.deepEqual(parsePingLine("[1795319033.680668] 64 bytes from 10.91.1.10: icmp_seq=1 ttl=64 time=0.428 ms"), {
      kind: "reply",
      seq: 1,
      atMs: 1795319033680.668,
    });
  });
  it("reads busybox replies (no timestamp)", () => {
    assert.deepEqual(parsePingLine("64 bytes from 10.9.9.9: seq=7 ttl=64 time=0.055 ms"), { kind: "reply", seq: 7, atMs: undefined });
  });
  it("does not take errors for replies", () => {
    assert.deepEqual(parsePingLine("[1795319034.120000] From 10.91.1.1 icmp_seq=30 Destination Host Unreachable"), { kind: "other" });
    assert.deepEqual(parsePingLine("ping: sendmsg: No buffer space available"), { kind: "other" });
    assert.deepEqual(parsePingLine("PING 10.91.1.10 (10.91.1.10) 56(84) bytes of data."), { kind: "other" });
  });
  it("reads both statistics lines", () => {
    assert.deepEqual(parsePingLine("42 packets transmitted, 5 received, +1 duplicates, +1 errors, 88.0952% packet loss, time 650ms"), {
      kind: "stats",
      transmitted: 42,
      received: 5,
    });
    assert.deepEqual(parsePingLine("5 packets transmitted, 3 packets received, 40% packet loss"), { kind: "stats", transmitted: 5, received: 3 });
  });
});

describe("PingTally + summarize", () => {
  it("iputils: distinct replies, duplicates ignored, statistics win, gaps from -D times", () => {
    const t = new PingTally();
    for (const l of IPUTILS.split("\n")) t.add(l, 0);
    assert.equal(t.replies.length, 5);
    assert.equal(t.transmitted, 42);
    const startedAt = 1795319033670;
    const r = summarize({ startedAt, stoppedAt: startedAt + 760, replies: t.replies, transmitted: t.transmitted, maxSeq: t.maxSeq, firstSeq: 1, minGapMs: 50, pinger: "iputils" });
    assert.equal(r.probes, 42);
    assert.equal(r.lost, 37);
    // 3rd reply at +41.4 ms, next at +641.4 ms
    assert.equal(r.longestGapMs, 600);
    assert.deepEqual(r.gaps, [
      { fromMs: 41.4, toMs: 641.4 },
      { fromMs: 651.4, toMs: 760 },
    ]);
    assert.equal(r.firstReplyMs, 10.7);
    assert.equal(r.durationMs, 760);
  });

  it("busybox: replies stamped when read; probes from the statistics line", () => {
    const t = new PingTally();
    const lines = BUSYBOX.split("\n");
    lines.forEach((l, i) => t.add(l, 1000 + i * 10));
    const r = summarize({ startedAt: 1000, stoppedAt: 1060, replies: t.replies, transmitted: t.transmitted, maxSeq: t.maxSeq, firstSeq: 0, minGapMs: 50, pinger: "busybox" });
    assert.equal(r.probes, 5);
    assert.equal(r.replies, 3);
    assert.equal(r.lost, 2);
    assert.equal(r.longestGapMs, 30);
    assert.deepEqual(r.gaps, []);
  });

  it("without a statistics line, the highest seq counts the requests", () => {
    const t = new PingTally();
    t.add("[10.000] 64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=1 ms", 0);
    t.add("[10.500] 64 bytes from 10.0.0.2: icmp_seq=9 ttl=64 time=1 ms", 0);
    const r = summarize({ startedAt: 9_990, stoppedAt: 10_510, replies: t.replies, transmitted: t.transmitted, maxSeq: t.maxSeq, firstSeq: 1, minGapMs: 50, pinger: "iputils" });
    assert.equal(r.probes, 9);
    assert.equal(r.lost, 7);
  });

  it("an unreachable target: the whole probe is one gap", () => {
    const r = summarize({ startedAt: 0, stoppedAt: 2000, replies: [], transmitted: 150, maxSeq: undefined, firstSeq: 1, minGapMs: 50, pinger: "iputils" });
    assert.equal(r.longestGapMs, 2000);
    assert.deepEqual(r.gaps, [{ fromMs: 0, toMs: 2000 }]);
    assert.equal(r.firstReplyMs, undefined);
    assert.equal(r.lost, 150);
  });

  it("undoes the 16-bit sequence wrap", () => {
    const t = new PingTally();
    t.add("[1.000] 64 bytes from 10.0.0.2: icmp_seq=65534 ttl=64 time=1 ms", 0);
    t.add("[1.010] 64 bytes from 10.0.0.2: icmp_seq=65535 ttl=64 time=1 ms", 0);
    t.add("[1.020] 64 bytes from 10.0.0.2: icmp_seq=0 ttl=64 time=1 ms", 0);
    t.add("[1.030] 64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=1 ms", 0);
    assert.deepEqual(
      t.replies.map((r) => r.seq),
      [65534, 65535, 65536, 65537],
    );
    assert.equal(t.maxSeq, 65537);
  });
});

describe("pingArgv", () => {
  it("builds the iputils and busybox command lines", () => {
    assert.deepEqual(pingArgv("iputils", "10.91.1.10", 10), ["ping", "-D", "-n", "-i", "0.01", "-W", "1", "10.91.1.10"]);
    assert.deepEqual(pingArgv("busybox", "10.91.1.10", 20), ["busybox", "ping", "-i", "0.02", "10.91.1.10"]);
    assert.deepEqual(pingArgv("iputils", "10.91.1.10", 8, { realtime: true }), ["chrt", "-f", "10", "ping", "-D", "-n", "-i", "0.008", "-W", "1", "10.91.1.10"]);
  });
});

describe("outageAfter: how long a target was out after the end", () => {
  const every = (from: number, to: number, step = 10): number[] => Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, i) => from + i * step);
  it("nothing when steady past the end, even after an outage before it", () => {
    assert.equal(outageAfter([...every(1000, 1500), ...every(1700, 9000)], { from: 1000, after: 2000, now: 9000, outageMs: 100 }), 0);
  });
  it("an outage that runs into the end counts from the end", () => {
    assert.equal(outageAfter([...every(1000, 1900), ...every(2130, 9000)], { from: 1000, after: 2000, now: 9000, outageMs: 100 }), 130);
  });
  it("sums every outage after the end; gaps up to the threshold are none", () => {
    const t = [...every(1000, 3000), ...every(3100, 4000), ...every(4250, 5000), ...every(45_000, 50_000)];
    assert.equal(outageAfter(t, { from: 1000, after: 2000, now: 50_000, outageMs: 100 }), 250 + 40_000);
  });
  it("an outage lasting until now counts up to now", () => {
    assert.equal(outageAfter(every(1000, 3000), { from: 1000, after: 2000, now: 5000, outageMs: 100 }), 2000);
  });
});

describe("steadiness", () => {
  const every = (from: number, to: number, step = 10): number[] => Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, i) => from + i * step);
  it("no outage: steady since the start", () => {
    assert.deepEqual(steadiness(every(1005, 9995), { from: 1000, now: 10_000, outageMs: 100 }), { stableSince: 1000, steadyForMs: 9000 });
  });
  it("the end of the last outage, however long ago the first one was", () => {
    const t = [...every(1005, 2000), ...every(2150, 5000), ...every(45_000, 51_000)];
    assert.deepEqual(steadiness(t, { from: 1000, now: 51_000, outageMs: 100 }), { stableSince: 45_000, steadyForMs: 6000 });
  });
  it("a gap of exactly the threshold is no outage; one more millisecond is", () => {
    assert.equal(steadiness([1000, 1100, 1200], { from: 1000, now: 1200, outageMs: 100 }).stableSince, 1000);
    assert.equal(steadiness([1000, 1101, 1200], { from: 1000, now: 1200, outageMs: 100 }).stableSince, 1101);
  });
  it("an outage that lasts until now: not steady at all", () => {
    assert.deepEqual(steadiness(every(1000, 2000), { from: 1000, now: 2500, outageMs: 100 }), { stableSince: 2500, steadyForMs: 0 });
  });
  it("replies before `from` do not count, and no reply in the first outageMs is an outage", () => {
    assert.equal(steadiness([...every(0, 990), ...every(1300, 3000)], { from: 1000, now: 3000, outageMs: 100 }).stableSince, 1300);
  });
});
