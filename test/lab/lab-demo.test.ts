// The lab and its demo end to end: namespace, bridges, controller and agents
// as processes, a real guest probed every ≈ 16 ms through four migrations (one
// with replug-fail armed), then nothing left behind.
import assert from "node:assert/strict";
import { access } from "node:fs/promises";
import { describe, it } from "node:test";
import { run } from "../../src/core/run.ts";
import { demoProblems, runLabDemo } from "../../src/lab/lab-demo.ts";
import { labDir, labDown } from "../../src/lab/lab.ts";

describe("lab", { timeout: 300_000 }, () => {
  it("up, four migrations with measured connectivity and a recovery, down: nothing left behind", async () => {
    process.env["FERRY_CONTEXT"] = `/tmp/ferry-lab-test-context-${process.pid}.json`;
    const lines: string[] = [];
    const rows = await runLabDemo((l) => lines.push(l));
    assert.ok(lines.some((l) => l.startsWith("mutual TLS: ")), "the demo says it runs with mutual TLS");
    assert.deepEqual(rows.map((r) => r.outcome), ["succeeded", "succeeded", "succeeded", "recovered"], lines.join("\n"));
    assert.deepEqual(rows.map((r) => r.runsOn), ["host2", "host3", "host1", "host1"]);
    assert.deepEqual(rows.slice(0, 3).map((r) => r.reachableAfter), [true, true, true], lines.join("\n"));
    // the guest's memory: the checksum of the region it filled at boot, asked after every migration (the recovery included)
    assert.deepEqual(rows.map((r) => r.memory), ["same", "same", "same", "same"], lines.join("\n"));
    for (const r of rows.slice(0, 3)) {
      const [failover, ephemeral] = r.nics;
      assert.match(failover!.vf, new RegExp(`^${r.from}:.* → ${r.to}:`), "the failover NIC lands on a destination VF");
      assert.notEqual(failover!.lost, "-", "connectivity is reported per NIC");
      // P10: the failover NIC's outage is the switch-over, not a stale forwarding entry or an unplug/re-plug
      assert.ok(Number(failover!.gapMs) < Number(ephemeral!.gapMs), `failover gap ${failover!.gapMs} ms < ephemeral gap ${ephemeral!.gapMs} ms`);
    }
    assert.deepEqual(demoProblems(rows), [], "what 'ferry demo' fails on");
    // nothing left: namespace, processes, lab dir
    const ns = await run("ip", ["netns", "list"]);
    assert.ok(!ns.stdout.includes("ferry-lab-demo"), ns.stdout);
    await assert.rejects(access(labDir("demo")));
    const ps = await run("ps", ["-eo", "args"]);
    assert.ok(!ps.stdout.split("\n").some((l) => l.includes(labDir("demo"))), "no process of the lab survives");
    // a second down is harmless
    assert.deepEqual(await labDown("demo"), { stopped: 0 });
  });
});
