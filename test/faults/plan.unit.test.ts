// The fault matrix's table logic and parsers, no QEMU: which points each form
// runs, the pause deadlines, the downtime-warning rule, pause and heartbeat
// gaps from samples, /proc parsing, and HTTP requests from recorded bytes.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { connectivityFigures, isQemuOf, parseCmdline, parseHttpRequests, procState } from "./observe.ts";
import { applicable, downtimeViolation, durationMs, FAULT_KINDS, longestHeartbeatGap, longestPause, MATRIX_DEADLINES, matrixPoints, pauseBudgetMs, PHASES, pointKey, selects, unknownSelectors } from "./plan.ts";
import { cell, renderMatrix } from "./table.ts";
import type { PointResult } from "./points.ts";

describe("matrix plan", () => {
  it("the long form holds every held fault at every duration; the short form each pair once, plus the findings' long points", () => {
    const long = matrixPoints("long");
    const pairs = PHASES.length * FAULT_KINDS.length - 4; // no destination QEMU to kill or stop at Plan and Begin
    assert.equal(new Set(long.map((p) => `${p.phase}:${p.fault}`)).size, pairs);
    assert.equal(long.length, 152);
    assert.equal(long.filter((p) => p.duration === null).length, 14);
    assert.equal(new Set(long.map(pointKey)).size, long.length, "no point twice");
    const short = matrixPoints("short");
    assert.equal(short.length, pairs + 2);
    assert.deepEqual(short.filter((p) => p.duration === "long").map(pointKey), ["perform:controller:long", "perform:destination-agent:long"]);
    assert.ok(short.every((p) => applicable(p.phase, p.fault)));
    assert.ok(!short.some((p) => p.phase === "begin" && p.fault === "destination-qemu-stop"));
  });

  it("long outlasts the step deadline; short and medium do not", () => {
    assert.ok(durationMs("long") > MATRIX_DEADLINES.stepMs);
    assert.ok(durationMs("medium") < MATRIX_DEADLINES.stepMs && durationMs("short") < durationMs("medium"));
    assert.equal(durationMs("long", 30_000), 34_000);
  });

  it("selects points by phase, phase:fault or phase:fault:duration, and names unknown selectors", () => {
    const p = { phase: "perform", fault: "cut", duration: "long" } as const;
    assert.ok(selects([], p));
    assert.ok(selects(["perform"], p) && selects(["perform:cut"], p) && selects(["perform:cut:long"], p));
    assert.ok(!selects(["perform:cut:short"], p) && !selects(["finish"], p));
    assert.deepEqual(unknownSelectors(["perform:cut:long", "preform", "perform:cutt", "perform:cut:forever", "perform:cut:long:x"]), ["preform", "perform:cutt", "perform:cut:forever", "perform:cut:long:x"]);
  });

  it("a pause may outlast its deadline by the fault's duration only where the fault stops what ends the pause", () => {
    const base = MATRIX_DEADLINES.precheckMs + 3_000;
    assert.equal(pauseBudgetMs({ phase: "perform", fault: "controller", duration: "long" }), base, "no pause waits on the controller");
    assert.equal(pauseBudgetMs({ phase: "pre-switchover", fault: "cut", duration: "long" }), base);
    assert.equal(pauseBudgetMs({ phase: "post-switchover", fault: "controller", duration: "medium" }), base);
    assert.equal(pauseBudgetMs({ phase: "pre-switchover", fault: "source-agent", duration: "long" }), base + durationMs("long"));
    assert.equal(pauseBudgetMs({ phase: "post-switchover", fault: "destination-agent", duration: "short" }), base + 2_000);
    assert.equal(pauseBudgetMs({ phase: "begin", fault: "source-qemu-stop", duration: "medium" }), base + 6_000);
    assert.equal(pauseBudgetMs({ phase: "begin", fault: "destination-agent", duration: "medium" }), base);
    assert.equal(pauseBudgetMs({ phase: "finish", fault: "destination-qemu-stop", duration: "short" }), base + 2_000);
    assert.equal(pauseBudgetMs({ phase: "perform", fault: "destination-qemu-stop", duration: "short" }), base, "the guest still runs on the source");
  });

  it("a downtime over its limit needs a warning in the record", () => {
    const rec = (downtimeMs: number | null, warnings: string[] = [], plan: object = {}) => ({ switchover: downtimeMs === null ? null : { totalMs: 1, downtimeMs }, warnings, plan });
    assert.equal(downtimeViolation(rec(null)), null);
    assert.equal(downtimeViolation(rec(300)), null);
    assert.match(downtimeViolation(rec(301)) ?? "", /301 ms is above the limit of 300 ms/);
    assert.equal(downtimeViolation(rec(900, ["downtime 900 ms exceeded the limit of 300 ms"])), null);
    assert.equal(downtimeViolation(rec(900, [], { downtimeLimitMs: 1000 })), null);
    assert.match(downtimeViolation(rec(900, [], { deadlines: { downtimeLimitMs: 500 } })) ?? "", /limit of 500 ms/);
  });

  it("the longest pause: unknown samples continue the last state; a pause still on at the end counts", () => {
    assert.deepEqual(longestPause([]), { ms: 0, from: null });
    assert.equal(longestPause([{ at: 0, running: true }, { at: 100, running: false }, { at: 400, running: true }, { at: 500, running: false }, { at: 600, running: true }]).ms, 300);
    assert.equal(longestPause([{ at: 0, running: true }, { at: 100, running: false }, { at: 200, running: null }, { at: 900, running: null }, { at: 1000, running: true }]).ms, 900);
    assert.equal(longestPause([{ at: 0, running: true }, { at: 100, running: null }, { at: 900, running: true }]).ms, 0, "an agent away while the guest ran");
    assert.equal(longestPause([{ at: 0, running: true }, { at: 100, running: false }, { at: 2_100, running: false }]).ms, 2_000);
    assert.equal(longestHeartbeatGap([{ at: 0, n: 1 }, { at: 100, n: 2 }, { at: 1_350, n: 3 }, { at: 1_450, n: 4 }]), 1_250);
    assert.equal(longestHeartbeatGap([{ at: 5, n: 9 }]), 0);
    assert.equal(longestHeartbeatGap([{ at: 0, n: 1 }, { at: 100, n: 2 }], 5_100), 5_000, "a guest that went silent");
  });
});

describe("what the matrix observes", () => {
  it("counts a QEMU of the VM by -uuid on its command line, whatever started it", () => {
    const uuid = "0b0c9d3e-7f6a-4d4e-9c1d-2a3b4c5d6e7f";
    const argv = parseCmdline(`${["/usr/bin/qemu-system-x86_64", "-name", "vm-1,debug-threads=on", "-uuid", uuid, "-m", "256M"].join("\u0000")}\u0000`);
    assert.deepEqual(argv.slice(0, 2), ["/usr/bin/qemu-system-x86_64", "-name"]);
    assert.ok(isQemuOf(argv, uuid));
    assert.ok(!isQemuOf(argv, "11111111-7f6a-4d4e-9c1d-2a3b4c5d6e7f"));
    assert.ok(!isQemuOf(["ip", "netns", "exec", "ns", "qemu-system-x86_64", "-uuid", uuid], uuid), "a wrapper that has not exec'd QEMU yet is not QEMU");
    assert.ok(!isQemuOf(["/bin/grep", "-uuid", uuid], uuid));
    assert.ok(isQemuOf(["qemu-system-x86_64", "-uuid", uuid], uuid));
    assert.equal(procState("4242 (CPU 0/TCG (x)) T 1 2 3"), "T");
    assert.equal(procState("17 (qemu-system-x86) S 1 2"), "S");
  });

  it("connectivity: the longest gap, and how long after the migration's end the last gap ended", () => {
    assert.deepEqual(connectivityFigures([], 40, 5_000), { longestGapMs: 40, untilStableMs: 0 });
    assert.deepEqual(connectivityFigures([{ fromMs: 3_000, toMs: 3_300 }], 300, 5_000), { longestGapMs: 300, untilStableMs: 0 }, "a gap during the migration");
    assert.deepEqual(connectivityFigures([{ fromMs: 3_000, toMs: 3_300 }, { fromMs: 6_000, toMs: 47_000 }], 41_000, 5_000), { longestGapMs: 41_000, untilStableMs: 42_000 }, "the stale-ARP outage after the end (issue 20 finding 5)");
  });

  it("parses recorded HTTP/1.1 requests: keep-alive, Content-Length and chunked bodies, an unfinished one left out", () => {
    const a = '{"instanceId":"i-1"}';
    const raw = Buffer.from([
      `POST /v1/migrations/m-1/begin HTTP/1.1\r\nhost: x\r\nauthorization: Bearer t\r\ncontent-type: application/json\r\ncontent-length: ${a.length}\r\n\r\n${a}`,
      "GET /v1/instances HTTP/1.1\r\nhost: x\r\n\r\n",
      "POST /v1/migrations/m-1/abort HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
      "POST /v1/migrations/m-1/confirm HTTP/1.1\r\ncontent-length: 50\r\n\r\n{\"inst",
    ].join(""));
    const rs = parseHttpRequests(raw);
    assert.deepEqual(rs.map((r) => `${r.method} ${r.path}`), ["POST /v1/migrations/m-1/begin", "GET /v1/instances", "POST /v1/migrations/m-1/abort"]);
    assert.equal(rs[0]!.body, a);
    assert.equal(rs[0]!.headers["authorization"], "Bearer t");
    assert.equal(rs[1]!.body, "");
    assert.equal(rs[2]!.body, '{"a":1}');
  });
});

describe("matrix table", () => {
  const r = (o: Partial<PointResult>): PointResult => ({
    phase: "perform", fault: "controller", duration: "short", kind: "guest", outcome: "succeeded", reason: "", runsOn: "host-b", down: false,
    pauseMs: 120, pauseBudgetMs: 7_000, downtimeMs: 80, violations: [], migrationId: "m-1", nicGapMs: null, ms: 4_000, ...o,
  });

  it("a cell shows the outcome, a lost guest and the number of violations", () => {
    assert.equal(cell(undefined), "—");
    assert.equal(cell(r({})), "ok ✓");
    assert.equal(cell(r({ outcome: "failed", down: true, violations: ["a", "b"] })), "failed/down ✗2");
    assert.equal(cell(r({ duration: "long", outcome: "rolled-back" }), true), "l:rolled-back ✓");
  });

  it("renders every duration of a pair in its cell and lists each point's figures and violations", () => {
    const text = renderMatrix([r({}), r({ duration: "long", violations: ["the guest stood still 14000 ms (no heartbeat), past its deadline of 7000 ms"], pauseMs: 14_000 })], "long");
    assert.match(text, /s:ok ✓, l:ok ✗1/);
    assert.match(text, /1 of 2 points held every check/);
    assert.match(text, /perform:controller:long \[guest\] 4\.0 s: succeeded, runs on host-b, pause 14000 \/ 7000 ms, downtime 80 ms/);
    assert.match(text, /✗ the guest stood still 14000 ms/);
  });
});
