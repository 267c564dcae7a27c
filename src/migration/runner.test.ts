import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { systemClock } from "../core/clock.ts";
import { FerryError } from "../core/errors.ts";
import { silentLogger } from "../core/log.ts";
import { SqliteStore } from "../store/sqlite.ts";
import type { Store } from "./store-port.ts";
import type { CoordinatorEvent, RunnerDeps } from "./runner.ts";
import { cancel, createMigration, resumeAll, runMigration } from "./runner.ts";
import { hang, hangForever, nic, noVf, plan, ScriptedPort } from "./testdata/scripted-port.ts";
import type { Script } from "./testdata/scripted-port.ts";
import type { MigrationPlan, MigrationRecord } from "./types.ts";

const base = await mkdtemp(join(tmpdir(), "ferry-runner-"));
after(() => rm(base, { recursive: true, force: true }));
let files = 0;

interface Harness {
  deps: RunnerDeps;
  port: ScriptedPort;
  store: Store;
  events: CoordinatorEvent[];
}

function harness(script: Script = {}, store: Store = new SqliteStore(":memory:"), port = new ScriptedPort(script)): Harness {
  const events: CoordinatorEvent[] = [];
  return { deps: { store, port, clock: systemClock, log: silentLogger, retryBackoffMs: 1, onEvent: (e) => events.push(e) }, port, store, events };
}

async function migrate(h: Harness, p: MigrationPlan): Promise<MigrationRecord> {
  await createMigration(p, h.deps);
  return runMigration(p.id, h.deps);
}

const ROLLBACK = ["cancelSource", "abortDestination", "confirmSource(false)"];
const POLICIES = ["mandatory", "requisite", "optional"] as const;

describe("runner: happy path", () => {
  test("the source's convergence choice lands in the record (through the store); the plan keeps the policy asked for", async () => {
    const reason = "auto-converge from 40 %, +20 % a pass: the guest dirties 200 MiB/s, 200 % of the link's 100 MiB/s (the migration's cap) (≥ 75 %)";
    const h = harness({ perform: () => Promise.resolve({ status: "pre-switchover", convergence: { requested: "auto", autoConverge: true, throttleInitial: 40, throttleIncrement: 20, dirtyBytesPerS: 200 * 2 ** 20, bandwidthBytesPerS: 100 * 2 ** 20, bandwidthFrom: "cap", reason } }) });
    const p: MigrationPlan = { ...plan([nic("net0")]), convergence: "auto" };
    const r = await migrate(h, p);
    assert.equal(r.outcome, "succeeded");
    assert.deepEqual(r.convergence, { autoConverge: true, reason, dirtyBytesPerS: 200 * 2 ** 20, bandwidthBytesPerS: 100 * 2 ** 20 });
    const stored = await h.store.getMigration(p.id);
    assert.deepEqual(stored?.convergence, r.convergence);
    assert.equal(stored?.plan.convergence, "auto");
  });

  test("a perform that did not converge: rolled back, and the source's policy is in the record as a converged one's is", async () => {
    const choice = { requested: "auto", autoConverge: true, throttleInitial: 50, throttleIncrement: 25, dirtyBytesPerS: 800 * 2 ** 20, bandwidthBytesPerS: 100 * 2 ** 20, bandwidthFrom: "cap", reason: "auto-converge from 50 %, +25 % a step: the guest dirties 800 MiB/s" };
    const h = harness({ perform: () => Promise.reject(new FerryError("FERRY_ERR_TIMEOUT", "did not converge within 30000 ms; migration cancelled, the guest keeps running on the source", { details: { notConverged: true, convergence: choice } })) });
    const p = plan([nic("net0")]);
    const r = await migrate(h, p);
    assert.equal(r.outcome, "rolled-back");
    assert.match(r.reason ?? "", /did not converge/);
    assert.deepEqual(r.convergence, { autoConverge: true, reason: choice.reason, dirtyBytesPerS: choice.dirtyBytesPerS, bandwidthBytesPerS: choice.bandwidthBytesPerS });
    assert.deepEqual((await h.store.getMigration(p.id))?.convergence, r.convergence);
  });

  test("the agents' switch-over moments land in the record (through the store) with their breakdown; agents that report none leave no timeline", async () => {
    const at = 1_764_931_200_000;
    const source = { migrateSentAtMs: at, unplugs: [{ nic: "net0", unpluggedAtMs: at + 300.5, steeredAtMs: at + 302 }], stoppedAtMs: at + 1_000.25 };
    const destination = { resumedAtMs: at + 1_040.75, steeredAtMs: at + 1_043 };
    const h = harness({
      switchover: () => Promise.resolve({ totalMs: 1200, downtimeMs: 30, timeline: source }),
      finish: (pl) => Promise.resolve({ nics: pl.nics.map((x) => ({ name: x.name, attached: true })), timeline: destination }),
    });
    const p = plan([nic("net0")]);
    assert.equal((await migrate(h, p)).outcome, "succeeded");
    const t = (await h.store.getMigration(p.id))?.switchoverTimeline;
    assert.deepEqual(t?.source, source);
    assert.deepEqual(t?.destination, destination);
    // the guest's real pause (STOP → RESUME) is longer than QEMU's downtime figure here, as it can be
    assert.equal(t?.breakdown?.pausedMs, destination.resumedAtMs - source.stoppedAtMs);
    assert.ok(t.breakdown.pausedMs > 30);
    assert.equal(t.breakdown.unplugMs?.["net0"], source.unplugs[0]!.unpluggedAtMs - source.migrateSentAtMs);
    assert.equal(t.breakdown.steerAfterResumeMs, destination.steeredAtMs - destination.resumedAtMs);
    const old = harness();
    const q = plan([nic("net0")]);
    assert.equal((await migrate(old, q)).outcome, "succeeded");
    assert.equal((await old.store.getMigration(q.id))?.switchoverTimeline, undefined);
  });

  test("succeeded: every step once, in protocol order; the VM runs on the destination instance", async () => {
    const h = harness();
    const p = plan([nic("net0"), nic("net1", { mode: "ephemeral", policy: "requisite" }), nic("net2", { mode: "emulated", policy: "optional", before: null, after: null })]);
    const r = await migrate(h, p);
    assert.equal(r.outcome, "succeeded");
    assert.deepEqual(h.port.trace(p.id), ["begin", "prepare", "perform", "precheck", "switchover", "finish", "confirmSource(true)"]);
    assert.deepEqual(r.runsOn, { host: "hv-b", instanceId: h.port.instances.get(p.id) });
    assert.deepEqual(r.nics.map((n) => [n.name, n.status, n.vf?.vf ?? null]), [["net0", "attached", "0000:5e:10.0"], ["net1", "attached", "0000:5e:10.1"], ["net2", "emulated", null]]);
    assert.deepEqual(r.switchover, { totalMs: 1200, downtimeMs: 45 });
    assert.equal(r.pastPointOfNoReturn, true);
    assert.ok(r.timings.perform?.ms !== undefined && r.timings.done?.startedAt !== undefined);
    assert.deepEqual(
      h.events.filter((e) => e.type === "phase").map((e) => e.to),
      ["begin", "prepare", "perform", "precheck", "switchover", "finish", "confirm", "done"],
    );
    assert.deepEqual(h.events.filter((e) => e.type === "outcome").map((e) => e.outcome), ["succeeded"]);
    // Every step's intent is journaled before its result.
    const j = await h.store.listJournal(p.id);
    assert.deepEqual(j.filter((e) => e.phase === "prepare").map((e) => e.kind), ["intent", "result"]);
  });
});

describe("policy row 1: no VF can be reserved on the destination", () => {
  for (const policy of ["mandatory", "requisite"] as const) {
    test(`${policy}, at Plan: refused (failed, FERRY_ERR_NO_VF, refused), no agent touched`, async () => {
      const h = harness();
      const p = plan([nic("net0", { policy, after: null })]);
      const r = await migrate(h, p);
      assert.equal(r.outcome, "failed");
      assert.equal(r.code, "FERRY_ERR_NO_VF");
      assert.equal(r.refused, true);
      assert.match(r.reason ?? "", /net0 \(/);
      assert.deepEqual(h.port.calls, []);
      assert.deepEqual(r.runsOn, p.source);
      assert.equal(r.nics[0]?.status, "attached");
    });

    test(`${policy}, at Prepare (VF taken since Plan): refused, destination cleaned, source released, never performed`, async () => {
      const h = harness({ prepare: () => Promise.reject(noVf("net0")) });
      const p = plan([nic("net0", { policy })]);
      const r = await migrate(h, p);
      assert.equal(r.outcome, "failed");
      assert.equal(r.code, "FERRY_ERR_NO_VF");
      assert.equal(r.refused, true);
      assert.deepEqual(h.port.trace(p.id), ["begin", "prepare", "abortDestination", "confirmSource(false)"]);
      assert.deepEqual(r.runsOn, p.source);
    });
  }

  test("requisite, LEASE_HELD at Prepare counts as no VF", async () => {
    const h = harness({ prepare: () => Promise.reject(new FerryError("FERRY_ERR_LEASE_HELD", "VF 0000:5e:10.0 is leased to another VM")) });
    const r = await migrate(h, plan([nic("net0", { policy: "requisite" })]));
    assert.equal(r.code, "FERRY_ERR_NO_VF");
    assert.match(r.reason ?? "", /leased to another VM/);
  });

  for (const mode of ["failover", "ephemeral"] as const) {
    test(`optional ${mode}: migrates; the NIC runs ${mode === "failover" ? "on its standby" : "absent"} (degraded)`, async () => {
      const h = harness();
      const p = plan([nic("net0"), nic("net1", { policy: "optional", mode, after: null })]);
      const r = await migrate(h, p);
      assert.equal(r.outcome, "degraded");
      assert.ok(h.port.trace(p.id).includes("switchover"));
      assert.deepEqual(r.nics.map((n) => n.status), ["attached", mode === "failover" ? "standby-only" : "absent"]);
      assert.deepEqual(
        h.events.filter((e) => e.type === "nic-degraded").map((e) => (e.type === "nic-degraded" ? e.nic : "")),
        ["net1"],
      );
    });
  }
});

describe("policy row 2: unplug past its deadline", () => {
  for (const policy of POLICIES) {
    test(`${policy}: cancel; source intact (rolled-back), destination cleaned, switchover never sent`, async () => {
      const h = harness({ perform: () => Promise.reject(new FerryError("FERRY_ERR_UNPLUG_TIMEOUT", "net0: guest did not release the device within 40 ms")) });
      const p = plan([nic("net0", { policy, mode: "ephemeral" })]);
      const r = await migrate(h, p);
      assert.equal(r.outcome, "rolled-back");
      assert.equal(r.code, "FERRY_ERR_UNPLUG_TIMEOUT");
      assert.deepEqual(h.port.trace(p.id), ["begin", "prepare", "perform", ...ROLLBACK]);
      assert.equal(h.port.count("switchover"), 0);
      assert.deepEqual(r.runsOn, p.source);
      assert.deepEqual(r.nics.map((n) => [n.status, n.vf?.host]), [["attached", "hv-a"]]);
    });
  }

  test("an agent that never answers perform (ignoring the signal) cannot hang the migration", async () => {
    const h = harness({ perform: () => hangForever() });
    const p = plan();
    const r = await migrate(h, p);
    assert.equal(r.outcome, "rolled-back");
    assert.match(r.reason ?? "", /deadline exceeded/);
    assert.deepEqual(h.port.trace(p.id).slice(3), ROLLBACK);
  });
});

describe("policy row 3: destination check fails at pre-switchover", () => {
  for (const policy of POLICIES) {
    test(`${policy}: cancel (rolled-back, FERRY_ERR_PRECHECK); switchover never sent`, async () => {
      const h = harness({ precheck: () => Promise.resolve({ ok: false, reason: "PF 0000:5e:00.0 link down" }) });
      const p = plan([nic("net0", { policy })]);
      const r = await migrate(h, p);
      assert.equal(r.outcome, "rolled-back");
      assert.equal(r.code, "FERRY_ERR_PRECHECK");
      assert.match(r.reason ?? "", /link down/);
      assert.deepEqual(h.port.trace(p.id), ["begin", "prepare", "perform", "precheck", ...ROLLBACK]);
    });
  }

  test("a precheck slower than precheckMs is a failed check (the guest is paused)", async () => {
    const h = harness({ precheck: (_p, signal) => hang(signal) });
    const r = await migrate(h, plan());
    assert.equal(r.outcome, "rolled-back");
    assert.equal(r.code, "FERRY_ERR_PRECHECK");
    assert.equal(h.port.count("switchover"), 0);
  });
});

describe("policy row 4: re-plug fails after switch-over", () => {
  for (const policy of ["requisite", "optional"] as const) {
    test(`${policy}: keeps running degraded (degraded + event); source confirmed; no migrate-back`, async () => {
      const h = harness({ finish: () => Promise.resolve({ nics: [{ name: "net0", attached: true }, { name: "net1", attached: false, error: "device_add: timeout" }] }) });
      const p = plan([nic("net0"), nic("net1", { policy, mode: "ephemeral" })]);
      const r = await migrate(h, p);
      assert.equal(r.outcome, "degraded");
      assert.deepEqual(h.port.trace(p.id), ["begin", "prepare", "perform", "precheck", "switchover", "finish", "confirmSource(true)"]);
      assert.equal(r.childId, null);
      assert.deepEqual(r.runsOn?.host, "hv-b");
      assert.deepEqual(r.nics.map((n) => n.status), ["attached", "absent"]);
      const ev = h.events.filter((e) => e.type === "nic-degraded");
      assert.equal(ev.length, 1);
      assert.ok(ev[0]?.type === "nic-degraded" && ev[0].nic === "net1" && ev[0].error === "device_add: timeout");
    });
  }

  test("mandatory: migrates back to the source onto its held VFs (recovered); the source's guest is never resumed", async () => {
    const h = harness({
      finish: (pl) => Promise.resolve({ nics: pl.link ? pl.nics.map((n) => ({ name: n.name, attached: true })) : [{ name: "net0", attached: false, error: "primary did not come back in 40 ms" }] }),
    });
    const p = plan([nic("net0")]);
    const r = await migrate(h, p);
    assert.equal(r.outcome, "recovered");
    assert.equal(r.code, "FERRY_ERR_REPLUG");
    const backId = `${p.id}-back`;
    assert.equal(r.childId, backId);
    // The parent: no rollback of the source after switchover; confirm only after the way back finished.
    assert.deepEqual(h.port.trace(p.id), ["begin", "prepare", "perform", "precheck", "switchover", "finish", "confirmSource(true)"]);
    assert.deepEqual(h.port.trace(backId), ["begin", "prepare", "perform", "precheck", "switchover", "finish", "confirmSource(true)"]);
    const idx = (id: string, m: string): number => h.port.calls.findIndex((c) => c.migrationId === id && c.method === m);
    assert.ok(idx(p.id, "confirmSource") > idx(backId, "switchover"), "the source's leases are held until the way back passed switchover");
    const back = await h.store.getMigration(backId);
    assert.deepEqual(back?.plan.source, { host: "hv-b", instanceId: h.port.instances.get(p.id) });
    assert.deepEqual(back?.plan.destination, { host: "hv-a" });
    assert.deepEqual(back?.plan.nics[0]?.after, p.nics[0]?.before);
    assert.deepEqual(back?.plan.link, { kind: "migrate-back", parentId: p.id, adoptFrom: p.source });
    assert.deepEqual(r.runsOn, { host: "hv-a", instanceId: h.port.instances.get(backId) });
    assert.deepEqual(r.nics.map((n) => [n.status, n.vf?.vf]), [["attached", "0000:3b:10.0"]]);
    assert.ok(h.events.some((e) => e.type === "nic-missing"));
  });

  test("mandatory, and the way back is refused: failed; the VM keeps running on the destination", async () => {
    const h = harness({
      finish: () => Promise.resolve({ nics: [{ name: "net0", attached: false, error: "no carrier" }] }),
      precheck: (pl) => Promise.resolve(pl.link ? { ok: false, reason: "source host PF down" } : { ok: true }),
    });
    const p = plan([nic("net0")]);
    const r = await migrate(h, p);
    assert.equal(r.outcome, "failed");
    assert.match(r.reason ?? "", /migrating back failed.*rolled-back/);
    assert.deepEqual(r.runsOn, { host: "hv-b", instanceId: h.port.instances.get(p.id) });
    assert.equal(r.nics[0]?.status, "standby-only");
    assert.equal((await h.store.getMigration(`${p.id}-back`))?.outcome, "rolled-back");
    assert.equal(h.port.calls.filter((c) => c.migrationId === p.id && c.success === false).length, 0);
  });
});

describe("runner: failures around the point of no return", () => {
  test("switchover fails but the source says it completed: finished (succeeded), nothing rolled back", async () => {
    const h = harness({ switchover: () => Promise.reject(new FerryError("FERRY_ERR_AGENT", "connection reset")), cancelSource: () => Promise.resolve("completed") });
    const p = plan();
    const r = await migrate(h, p);
    assert.equal(r.outcome, "succeeded");
    assert.deepEqual(h.port.trace(p.id).slice(4), ["switchover", "cancelSource", "finish", "confirmSource(true)"]);
  });

  test("switchover fails and the source cancelled it: rolled-back", async () => {
    const h = harness({ switchover: () => Promise.reject(new FerryError("FERRY_ERR_MIGRATION", "migration failed")) });
    const r = await migrate(h, plan());
    assert.equal(r.outcome, "rolled-back");
    assert.equal(r.code, "FERRY_ERR_MIGRATION");
  });

  test("finish keeps failing: retried, then failed; the source is not touched (leases kept for an operator)", async () => {
    const h = harness({ finish: () => Promise.reject(new FerryError("FERRY_ERR_AGENT", "destination agent unreachable")) });
    const p = plan();
    const r = await migrate(h, p);
    assert.equal(r.outcome, "failed");
    // an unreachable agent (FERRY_ERR_AGENT) is re-sent until stepMs has passed since the first failure, at least `attempts` times
    assert.ok(h.port.count("finish") >= 3, String(h.port.count("finish")));
    assert.equal(h.port.count("confirmSource"), 0);
    assert.deepEqual(r.runsOn?.host, "hv-b");
    assert.equal(h.events.filter((e) => e.type === "step-failed").length, h.port.count("finish"));
  });

  test("a flaky finish is retried and succeeds", async () => {
    const h = harness({ finish: (pl, _s, n) => (n === 1 ? Promise.reject(new FerryError("FERRY_ERR_AGENT", "503")) : Promise.resolve({ nics: pl.nics.map((x) => ({ name: x.name, attached: true })) })) });
    const r = await migrate(h, plan());
    assert.equal(r.outcome, "succeeded");
    assert.equal(h.port.count("finish"), 2);
  });

  test("a source that does not resume after rollback: failed, where the VM runs is unknown", async () => {
    const h = harness({ precheck: () => Promise.resolve({ ok: false }), confirmSource: () => Promise.reject(new FerryError("FERRY_ERR_AGENT", "down")) });
    const r = await migrate(h, plan());
    assert.equal(r.outcome, "failed");
    assert.equal(r.runsOn, null);
    assert.ok(h.port.count("confirmSource") >= 3, String(h.port.count("confirmSource")));
  });

  test("cleanup failing after a safe outcome is a warning, not a different outcome", async () => {
    const h = harness({ confirmSource: () => Promise.reject(new FerryError("FERRY_ERR_AGENT", "down")) });
    const r = await migrate(h, plan());
    assert.equal(r.outcome, "succeeded");
    assert.match(r.warnings[0] ?? "", /source cleanup .* incomplete: down/);
  });
});

describe("cancel (best effort, reports what happened)", () => {
  test("during perform: the step is aborted, rolled back, reason 'cancelled by operator'", async () => {
    let performing: () => void = () => undefined;
    const started = new Promise<void>((r) => (performing = r));
    const h = harness({
      perform: (_p, signal) => {
        performing();
        return hang(signal);
      },
    });
    const p = plan([nic("net0")], { deadlines: { unplugMs: 5000, convergeMs: 5000, precheckMs: 30, primaryBackMs: 40, stepMs: 60 } });
    await createMigration(p, h.deps);
    const run = runMigration(p.id, h.deps);
    await started;
    const report = await cancel(p.id, h.deps);
    assert.equal(report.result, "cancelled");
    assert.equal(report.record.outcome, "rolled-back");
    assert.equal(report.record.reason, "cancelled by operator");
    assert.equal(report.record.code, "FERRY_ERR_CANCELLED");
    assert.equal((await run).outcome, "rolled-back");
    assert.deepEqual(h.port.trace(p.id), ["begin", "prepare", "perform", ...ROLLBACK]);
    assert.ok(h.events.some((e) => e.type === "cancel-requested"));
  });

  test("before anything ran: done at once, nothing called", async () => {
    const h = harness();
    const p = plan();
    await createMigration(p, h.deps);
    const report = await cancel(p.id, h.deps);
    assert.equal(report.result, "cancelled");
    assert.deepEqual(h.port.calls, []);
  });

  test("after switchover: too late; reports so and finishes the migration", async () => {
    let finishing: () => void = () => undefined;
    const started = new Promise<void>((r) => (finishing = r));
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const h = harness({
      finish: async (pl) => {
        finishing();
        await gate;
        return { nics: pl.nics.map((n) => ({ name: n.name, attached: true })) };
      },
    });
    const p = plan();
    await createMigration(p, h.deps);
    const run = runMigration(p.id, h.deps);
    await started;
    const reporting = cancel(p.id, h.deps);
    release();
    const report = await reporting;
    assert.equal(report.result, "completed");
    assert.match(report.message, /point of no return/);
    assert.equal(report.record.outcome, "succeeded");
    assert.equal((await run).outcome, "succeeded");
    assert.equal(h.port.count("cancelSource"), 0);
  });

  test("after the end: already-done", async () => {
    const h = harness();
    const p = plan();
    await migrate(h, p);
    assert.equal((await cancel(p.id, h.deps)).result, "already-done");
  });
});

describe("durability: a restarted controller resumes from the journal", () => {
  test("runner stopped mid-perform: a new runner on the same file re-sends perform, never prepare, and succeeds", async () => {
    const file = join(base, `c${files++}`, "controller.db");
    const stop = new AbortController();
    // The agents outlive the controller: one port for both runs.
    const port = new ScriptedPort({
      perform: (_p, signal, n) => {
        if (n === 1) {
          queueMicrotask(() => stop.abort());
          return hang(signal);
        }
        return Promise.resolve({ status: "pre-switchover" });
      },
    });
    const p = plan();
    const store1 = new SqliteStore(file);
    const h1 = harness({}, store1, port);
    await createMigration(p, h1.deps);
    await assert.rejects(runMigration(p.id, { ...h1.deps, signal: stop.signal }), { code: "FERRY_ERR_ABORTED" });
    const mid = await store1.getMigration(p.id);
    assert.equal(mid?.phase, "perform");
    store1.close();

    const store2 = new SqliteStore(file);
    const h2 = harness({}, store2, port);
    const resumed = await resumeAll(h2.deps);
    assert.equal(resumed.length, 1);
    assert.equal(resumed[0]?.record?.outcome, "succeeded");
    assert.equal(port.count("prepare"), 1);
    assert.equal(port.count("perform"), 2);
    assert.deepEqual([...new Set(port.calls.filter((c) => c.method === "perform").map((c) => c.uri))], ["tcp:hv-b:49152"]);
    const performs = (await store2.listJournal(p.id)).filter((e) => e.phase === "perform" && e.kind === "intent");
    assert.deepEqual(performs.map((e) => e.data["resent"]), [false, true]);
    assert.deepEqual(resumed[0]?.record?.runsOn, { host: "hv-b", instanceId: port.instances.get(p.id) });
    assert.deepEqual(await store2.listActiveMigrations(), []);
    store2.close();
  });

  test("runner stopped mid-prepare: prepare is re-sent and the idempotent agent's answer is the same instance", async () => {
    const file = join(base, `c${files++}`, "controller.db");
    const stop = new AbortController();
    const answers: string[] = [];
    const made = new Map<string, string>();
    const wrapped = new ScriptedPort({
      prepare: (pl, signal, n) => {
        // An idempotent destination agent: one instance per migration id.
        const instanceId = made.get(pl.id) ?? `i-hv-b-${made.size + 1}`;
        made.set(pl.id, instanceId);
        answers.push(instanceId);
        if (n === 1) {
          stop.abort();
          return hang(signal);
        }
        return Promise.resolve({ instanceId, uri: "tcp:hv-b:49152" });
      },
    });
    const p = plan();
    const s1 = new SqliteStore(file);
    await createMigration(p, { store: s1, clock: systemClock });
    await assert.rejects(runMigration(p.id, { ...harness({}, s1, wrapped).deps, signal: stop.signal }), { code: "FERRY_ERR_ABORTED" });
    s1.close();
    const s2 = new SqliteStore(file);
    const r = await runMigration(p.id, harness({}, s2, wrapped).deps);
    assert.equal(r.outcome, "succeeded");
    assert.equal(wrapped.count("prepare"), 2);
    assert.equal(new Set(answers).size, 1);
    assert.equal(r.prepared?.instanceId, answers[0]);
    s2.close();
  });

  test("crash after prepare's result was journaled, before the phase moved: prepare is not sent again", async () => {
    const file = join(base, `c${files++}`, "controller.db");
    const port = new ScriptedPort();
    const p = plan();
    const s1 = new SqliteStore(file);
    let crashed = false;
    const crashing: Store = {
      createMigration: (r) => s1.createMigration(r),
      getMigration: (id) => s1.getMigration(id),
      listMigrations: () => s1.listMigrations(),
      listActiveMigrations: () => s1.listActiveMigrations(),
      appendJournal: (e) => s1.appendJournal(e),
      listJournal: (id) => s1.listJournal(id),
      updateMigration: (r, v) => {
        if (r.phase === "perform" && !crashed) {
          crashed = true;
          return Promise.reject(new Error("controller killed"));
        }
        return s1.updateMigration(r, v);
      },
      close: () => s1.close(),
    };
    await createMigration(p, { store: crashing, clock: systemClock });
    await assert.rejects(runMigration(p.id, harness({}, crashing, port).deps), /controller killed/);
    s1.close();
    const s2 = new SqliteStore(file);
    const r = await runMigration(p.id, harness({}, s2, port).deps);
    assert.equal(r.outcome, "succeeded");
    assert.equal(port.count("prepare"), 1);
    assert.equal(r.prepared?.instanceId, port.instances.get(p.id));
    s2.close();
  });

  test("two runs of one migration in one process join: each step is sent once", async () => {
    const h = harness();
    const p = plan();
    await createMigration(p, h.deps);
    const [a, b] = await Promise.all([runMigration(p.id, h.deps), runMigration(p.id, h.deps)]);
    assert.equal(a.version, b.version);
    assert.equal(h.port.count("prepare"), 1);
  });
});

describe("faults found by the fault matrix (test/faults)", () => {
  test("a rollback whose agent is unreachable for a while is re-sent until it answers (within stepMs), not given up after its attempts", async () => {
    const h = harness({
      perform: () => Promise.reject(new FerryError("FERRY_ERR_AGENT", "other side closed")),
      confirmSource: (_p, _s, _sig, n) => (n <= 5 ? Promise.reject(new FerryError("FERRY_ERR_AGENT", "connect ECONNREFUSED")) : Promise.resolve({ state: "running" as const })),
    });
    const p = plan([nic("net0")]);
    p.deadlines = { ...p.deadlines, stepMs: 10_000 };
    const r = await migrate(h, p);
    assert.equal(r.outcome, "rolled-back", r.reason ?? "");
    assert.deepEqual(r.runsOn, p.source);
    assert.equal(h.port.trace(p.id).filter((s) => s === "confirmSource(false)").length, 6);
  });

  test("a rollback that finds the source's QEMU gone: failed, the VM runs nowhere", async () => {
    const h = harness({ perform: () => Promise.reject(new FerryError("FERRY_ERR_QMP_CLOSED", "QMP connection closed")), confirmSource: () => Promise.resolve({ state: "gone" as const }) });
    const p = plan([nic("net0")]);
    const r = await migrate(h, p);
    assert.equal(r.outcome, "failed");
    assert.equal(r.code, "FERRY_ERR_GUEST_LOST");
    assert.equal(r.runsOn, null);
  });

  test("finish finds the destination QEMU gone after the switch-over: failed, runs nowhere, the source's stale copy is stopped (confirm), not resumed", async () => {
    const h = harness({ finish: () => Promise.reject(new FerryError("FERRY_ERR_GUEST_LOST", "the destination QEMU exited")) });
    const p = plan([nic("net0")]);
    const r = await migrate(h, p);
    assert.equal(r.outcome, "failed");
    assert.equal(r.code, "FERRY_ERR_GUEST_LOST");
    assert.equal(r.runsOn, null);
    assert.deepEqual(h.port.trace(p.id).slice(-1), ["confirmSource(true)"]);
    assert.ok(!h.port.trace(p.id).includes("confirmSource(false)"));
  });
});

describe("no pause waits on a dead process (issue 20)", () => {
  test("switchover refused with FERRY_ERR_SOURCE_GAVE_UP: rolled back with that code, the source's own pause recorded, and a warning for a pause above the downtime limit", async () => {
    const h = harness({
      switchover: () => Promise.reject(new FerryError("FERRY_ERR_SOURCE_GAVE_UP", "the source got no switch-over decision in time")),
      confirmSource: (_p, success) => Promise.resolve(success ? { state: "stopped" as const } : { state: "running" as const, pausedMs: 2_510 }),
    });
    const p = plan([nic("net0")]);
    const r = await migrate(h, p);
    assert.equal(r.outcome, "rolled-back", r.reason ?? "");
    assert.equal(r.code, "FERRY_ERR_SOURCE_GAVE_UP");
    assert.match(r.reason ?? "", /resumed the guest itself/);
    assert.deepEqual(r.runsOn, p.source);
    assert.equal(r.pausedMs, 2_510);
    assert.ok(r.warnings.some((w) => w.includes("paused 2510 ms on the source, above its downtime limit of 300 ms")), JSON.stringify(r.warnings));
    assert.ok(h.events.some((e) => e.type === "warning" && e.text.includes("downtime limit")));
    assert.deepEqual(h.port.trace(p.id).slice(-3), ROLLBACK);
  });

  test("a re-sent perform refused with FERRY_ERR_SOURCE_GAVE_UP (the controller came back late): rolled back, never switched over", async () => {
    const h = harness({ perform: () => Promise.reject(new FerryError("FERRY_ERR_SOURCE_GAVE_UP", "gave up")) });
    const p = plan([nic("net0")]);
    const r = await migrate(h, p);
    assert.equal(r.code, "FERRY_ERR_SOURCE_GAVE_UP");
    assert.ok(!h.port.trace(p.id).includes("switchover"));
  });

  test("an unreachable destination does not hold the rollback: the outcome comes at once, the cleanup is retried in the background and reported", async () => {
    let down = true;
    const h = harness({
      precheck: () => Promise.reject(new FerryError("FERRY_ERR_AGENT", "connect ECONNREFUSED")),
      abortDestination: () => (down ? Promise.reject(new FerryError("FERRY_ERR_AGENT", "connect ECONNREFUSED")) : Promise.resolve()),
    });
    const p = plan([nic("net0")]);
    p.deadlines = { ...p.deadlines, stepMs: 60_000 };
    const r = await migrate(h, p);
    assert.equal(r.outcome, "rolled-back");
    assert.deepEqual(r.runsOn, p.source);
    assert.equal(r.cleanup?.state, "pending");
    assert.equal(r.cleanup?.host, p.destination.host);
    assert.deepEqual(h.port.trace(p.id).slice(-3), ROLLBACK, "the source was confirmed after one try at the destination");
    down = false;
    let after: MigrationRecord | undefined;
    for (let i = 0; i < 200 && after?.cleanup?.state !== "done"; i++) {
      await systemClock.sleep(10);
      after = await h.store.getMigration(p.id);
    }
    assert.equal(after?.cleanup?.state, "done");
    assert.ok(after?.warnings.some((w) => /cleanup on hv-b done in the background/.test(w)), JSON.stringify(after?.warnings));
    assert.deepEqual(h.events.filter((e) => e.type === "cleanup").map((e) => e.type === "cleanup" && e.state), ["pending", "done"]);
  });

  test("a normal migration within the downtime limit has no warning", async () => {
    const h = harness();
    const r = await migrate(h, plan([nic("net0")]));
    assert.deepEqual(r.warnings, []);
  });
});

describe("a store hiccup (an etcd leader change) does not stop a migration half way", () => {
  /** `inner`, with every `every`-th write (updateMigration, appendJournal) failing as etcd's store does for a moment: before it applies, or after (the answer lost). */
  function hiccupping(inner: Store, o: { every: number; applied: boolean }): { store: Store; hiccups: () => number } {
    let writes = 0;
    let hiccups = 0;
    const store = new Proxy(inner, {
      get(target, prop, receiver) {
        const v: unknown = Reflect.get(target, prop, receiver);
        if (typeof v !== "function") return v;
        if (prop !== "updateMigration" && prop !== "appendJournal") return (v as (...a: unknown[]) => unknown).bind(target);
        /** What etcd's store throws while etcd elects a leader (storeError of "leader changed"). */
        const hiccup = (): FerryError => {
          hiccups++;
          return new FerryError("FERRY_ERR_INTERNAL", "etcd store: write: 14 UNAVAILABLE: etcdserver: leader changed", { retryable: true, details: { store: "etcd", transient: true } });
        };
        return async (...args: unknown[]) => {
          const fail = ++writes % o.every === 0;
          if (fail && !o.applied) throw hiccup();
          const out: unknown = await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          if (fail) throw hiccup();
          return out;
        };
      },
    });
    return { store, hiccups: () => hiccups };
  }

  for (const applied of [false, true]) {
    test(`every 4th write fails ${applied ? "after it applied (the answer lost)" : "before it applies"}: the migration goes on from its record and succeeds, each step sent at most twice`, async () => {
      const s = hiccupping(new SqliteStore(":memory:"), { every: 4, applied });
      const h = harness({}, s.store);
      const p = plan([nic("net0")]);
      await createMigration(p, h.deps);
      const r = await runMigration(p.id, h.deps);
      assert.ok(s.hiccups() >= 3, `only ${s.hiccups()} hiccups: the test did not test much`);
      assert.equal(r.outcome, "succeeded");
      assert.equal(r.phase, "done");
      for (const m of ["begin", "prepare", "perform", "precheck", "switchover", "finish"] as const) assert.ok(h.port.count(m) >= 1 && h.port.count(m) <= 2, `${m} sent ${h.port.count(m)} times`);
      assert.deepEqual(await s.store.listActiveMigrations(), []);
    });
  }

  /** A migration whose every record update fails with `err`: the runner must stop with it (no endless retry). */
  async function updatesFailWith(err: FerryError): Promise<void> {
    const inner = new SqliteStore(":memory:");
    const store = new Proxy(inner, {
      get(target, prop, receiver) {
        const v: unknown = Reflect.get(target, prop, receiver);
        if (typeof v !== "function") return v;
        if (prop !== "updateMigration") return (v as (...a: unknown[]) => unknown).bind(target);
        return () => Promise.reject(err);
      },
    });
    const h = harness({}, store);
    const p = plan([nic("net0")]);
    await createMigration(p, h.deps);
    await assert.rejects(runMigration(p.id, h.deps), { code: err.code, message: err.message });
  }

  test("a store error that would fail again the same way (not transient) stops the runner, as before: no endless retry", () =>
    updatesFailWith(new FerryError("FERRY_ERR_INTERNAL", "etcd store: update: etcdserver: request is too large", { retryable: true, details: { store: "etcd", transient: false } })));

  test("FERRY_ERR_NOT_LEADER (another controller leads now) still stops this runner: the new leader resumes it", () =>
    updatesFailWith(new FerryError("FERRY_ERR_NOT_LEADER", "etcd store: update refused: this controller does not lead", { retryable: true, details: { store: "etcd" } })));
});
