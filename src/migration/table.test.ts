import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { migrateBackPlan } from "./back.ts";
import { cancellable, checkPlan, classifyFinish, EVENTS, failureEvent, PHASE_SPECS, stepDeadlineMs, TABLE, transition } from "./table.ts";
import type { Phase } from "./types.ts";
import { newRecord, PHASES } from "./types.ts";
import { DEADLINES, nic, plan } from "./testdata/scripted-port.ts";

const nonTerminal = PHASES.filter((p) => p !== "done");

describe("transition table", () => {
  test("is total: every non-terminal phase has a success and a failure transition, and a step", () => {
    for (const p of nonTerminal) {
      assert.ok(transition(p, "ok"), `${p} × ok`);
      assert.ok(transition(p, "failed"), `${p} × failed`);
      assert.notEqual(PHASE_SPECS[p].step, null, `${p} has a step`);
      assert.ok(PHASE_SPECS[p].attempts >= 1);
    }
    assert.deepEqual(TABLE.done, {});
    assert.equal(PHASE_SPECS.done.step, null);
  });

  test("every row names a known phase and event", () => {
    for (const p of PHASES) {
      for (const [event, row] of Object.entries(TABLE[p])) {
        assert.ok((EVENTS as readonly string[]).includes(event), `${p} × ${event}`);
        assert.ok(PHASES.includes(row.next), `${p} × ${event} → ${row.next}`);
      }
    }
  });

  // Journal entries are matched to a step by phase: no phase may be visited twice.
  test("is acyclic, and every path from planned reaches done with an outcome decided", () => {
    const paths: Phase[][] = [];
    const walk = (p: Phase, path: Phase[], verdict: boolean): void => {
      assert.ok(!path.includes(p), `cycle: ${[...path, p].join(" → ")}`);
      if (p === "done") {
        assert.ok(verdict, `no outcome decided on ${path.join(" → ")} → done`);
        paths.push([...path, p]);
        return;
      }
      for (const row of Object.values(TABLE[p])) {
        let v = verdict;
        for (const e of row.effects) {
          if (e.kind === "verdict") v = true;
          if (e.kind === "clear-verdict") v = false;
        }
        walk(row.next, [...path, p], v);
      }
    };
    walk("planned", [], false);
    assert.ok(paths.length > 10);
    const reached = new Set(paths.flat());
    for (const p of PHASES) assert.ok(reached.has(p), `${p} is reachable`);
  });

  test("point of no return: cancel is honoured only before switchover; after it no path resumes the source", () => {
    assert.deepEqual(
      PHASES.filter((p) => cancellable(p)),
      ["planned", "begin", "prepare", "perform", "precheck"],
    );
    // From finish on, rollback-source (confirmSource(false): resume the source's guest) is unreachable.
    const reachable = (from: Phase, seen = new Set<Phase>()): Set<Phase> => {
      seen.add(from);
      for (const row of Object.values(TABLE[from])) if (!seen.has(row.next)) reachable(row.next, seen);
      return seen;
    };
    for (const p of ["finish", "confirm", "migrate-back"] as const) {
      const r = reachable(p);
      assert.ok(!r.has("rollback-source") && !r.has("rollback-destination") && !r.has("cancel"), p);
    }
    // A failed switchover asks the source what happened before anything else.
    assert.equal(transition("switchover", "failed")?.next, "cancel");
    assert.equal(transition("cancel", "completed")?.next, "finish");
  });

  test("policy rows map to the outcomes the DESIGN table names", () => {
    const verdict = (p: Phase, e: (typeof EVENTS)[number]): string | undefined => {
      const row = transition(p, e);
      const v = row?.effects.find((x) => x.kind === "verdict");
      return v?.kind === "verdict" ? `${v.outcome}${v.refused ? " refused" : ""} ${v.code ?? ""}`.trim() : undefined;
    };
    assert.equal(verdict("planned", "refused"), "failed refused FERRY_ERR_NO_VF");
    assert.equal(verdict("prepare", "refused"), "failed refused FERRY_ERR_NO_VF");
    assert.equal(verdict("perform", "unplug-timeout"), "rolled-back FERRY_ERR_UNPLUG_TIMEOUT");
    assert.equal(transition("perform", "unplug-timeout")?.next, "cancel");
    assert.equal(verdict("precheck", "failed"), "rolled-back FERRY_ERR_PRECHECK");
    assert.equal(transition("finish", "mandatory-missing")?.next, "migrate-back");
    assert.equal(verdict("migrate-back", "ok"), "recovered FERRY_ERR_REPLUG");
    assert.equal(verdict("finish", "degraded"), "degraded FERRY_ERR_REPLUG");
    // the destination QEMU died after the switch-over: the VM is down, the source's stale copy stopped (confirm), never resumed
    assert.equal(verdict("finish", "guest-lost"), "failed FERRY_ERR_GUEST_LOST");
    assert.equal(transition("finish", "guest-lost")?.next, "confirm");
    assert.ok(transition("finish", "guest-lost")?.effects.some((e) => e.kind === "runs-on" && e.where === "unknown"));
  });

  test("step deadlines: perform covers unplug + convergence, finish covers the primaries' wait", () => {
    assert.equal(stepDeadlineMs("perform", DEADLINES), DEADLINES.unplugMs + DEADLINES.convergeMs + DEADLINES.stepMs);
    assert.equal(stepDeadlineMs("precheck", DEADLINES), DEADLINES.precheckMs);
    assert.equal(stepDeadlineMs("finish", DEADLINES), DEADLINES.primaryBackMs + DEADLINES.stepMs);
    assert.equal(stepDeadlineMs("migrate-back", DEADLINES), undefined);
  });
});

describe("classifiers", () => {
  test("checkPlan refuses a mandatory or requisite NIC without a VF, accepts an optional or emulated one", () => {
    assert.deepEqual(checkPlan(plan([nic("net0")])), { event: "ok" });
    assert.equal(checkPlan(plan([nic("net0", { after: null })])).event, "refused");
    assert.equal(checkPlan(plan([nic("net0", { policy: "requisite", mode: "ephemeral", after: null })])).event, "refused");
    assert.equal(checkPlan(plan([nic("net0", { policy: "optional", after: null })])).event, "ok");
    assert.equal(checkPlan(plan([nic("net0", { mode: "emulated", before: null, after: null })])).event, "ok");
    assert.equal(checkPlan(plan([nic("net0"), nic("net0")])).event, "failed");
  });

  test("failureEvent: NO_VF/LEASE_HELD at prepare refuse; UNPLUG_TIMEOUT at perform", () => {
    assert.equal(failureEvent("prepare", "FERRY_ERR_NO_VF"), "refused");
    assert.equal(failureEvent("prepare", "FERRY_ERR_LEASE_HELD"), "refused");
    assert.equal(failureEvent("prepare", "FERRY_ERR_QEMU_START"), "failed");
    assert.equal(failureEvent("perform", "FERRY_ERR_UNPLUG_TIMEOUT"), "unplug-timeout");
    assert.equal(failureEvent("perform", "FERRY_ERR_TIMEOUT"), "failed");
    assert.equal(failureEvent("begin", "FERRY_ERR_NO_VF"), "failed");
  });

  test("classifyFinish applies the NIC policies", () => {
    const p = plan([nic("net0"), nic("net1", { policy: "requisite", mode: "ephemeral" }), nic("net2", { mode: "emulated", before: null, after: null })]);
    assert.equal(classifyFinish(p, { nics: [{ name: "net0", attached: true }, { name: "net1", attached: true }] }).event, "ok");
    const deg = classifyFinish(p, { nics: [{ name: "net0", attached: true }, { name: "net1", attached: false, error: "device_add failed" }] });
    assert.equal(deg.event, "degraded");
    assert.deepEqual(deg.nics.map((n) => n.status), ["attached", "absent", "emulated"]);
    assert.equal(deg.nics[1]?.error, "device_add failed");
    const man = classifyFinish(p, { nics: [{ name: "net1", attached: true }] });
    assert.equal(man.event, "mandatory-missing");
    assert.equal(man.nics[0]?.status, "standby-only");
    const back = classifyFinish({ ...p, link: { kind: "migrate-back", parentId: "m-0", adoptFrom: { host: "hv-a", instanceId: "x" } } }, { nics: [] });
    assert.equal(back.event, "mandatory-lost");
    const opt = classifyFinish(plan([nic("net0", { policy: "optional", after: null })]), { nics: [] });
    assert.equal(opt.event, "degraded");
    assert.equal(opt.nics[0]?.error, "no VF reserved on the destination");
  });

  test("migrateBackPlan reverses the hosts and reuses the source's held VFs", () => {
    const p = plan([nic("net0"), nic("net1", { policy: "optional" })]);
    const rec = { ...newRecord(p, 0), phase: "migrate-back" as const, prepared: { instanceId: "i-hv-b-7", uri: "tcp:hv-b:1" } };
    rec.nics = [
      { name: "net0", policy: "mandatory", status: "standby-only", vf: null },
      { name: "net1", policy: "optional", status: "attached", vf: p.nics[1]?.after ?? null },
    ];
    const b = migrateBackPlan(rec);
    assert.equal(b.id, `${p.id}-back`);
    assert.deepEqual(b.source, { host: "hv-b", instanceId: "i-hv-b-7" });
    assert.deepEqual(b.destination, { host: "hv-a" });
    assert.deepEqual(b.link, { kind: "migrate-back", parentId: p.id, adoptFrom: p.source });
    assert.deepEqual(b.nics.map((n) => n.after), p.nics.map((n) => n.before));
    assert.deepEqual(b.nics.map((n) => n.before), [null, p.nics[1]?.after]);
    assert.throws(() => migrateBackPlan({ ...rec, plan: b }), { code: "FERRY_ERR_STATE" });
  });
});
