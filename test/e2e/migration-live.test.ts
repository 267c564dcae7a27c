// Issue 16 items 1-2: a migration followed live and steered. A real
// controller and two real agents in this process (stand-in VFs), real QEMU
// with no-OS guests; the migration starts capped at a few KiB/s so that its
// RAM copy lasts long enough to be watched, tuned and cancelled, or to miss its
// converge deadline.
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { liveCluster, TEST_TOKEN } from "../../src/api/testing.ts";
import type { LiveCluster } from "../../src/api/testing.ts";
import { ControllerClient } from "../../src/api/client.ts";
import { systemClock } from "../../src/core/clock.ts";
import { run } from "../../src/core/run.ts";
import { EXIT } from "../../src/cli/exit-codes.ts";
import { phaseTimes } from "../../src/wire/migration-stream.ts";
import type { MigrationStreamEvent, ProgressStreamEvent } from "../../src/wire/migration-stream.ts";
import { pollUntil } from "../../src/core/poll.ts";
import { queryMigrationLimits } from "../../src/qmp/commands.ts";

const FERRY = fileURLToPath(new URL("../../bin/ferry", import.meta.url));
const SLOW = 16 * 1024; // bytes/s: a 256 MiB no-OS guest (zero pages, ~9 bytes each) takes ~40 s at this rate

describe("a migration followed live and steered", { timeout: 240_000 }, () => {
  let c: LiveCluster;
  let api: ControllerClient;
  const ferry = (...args: string[]) => run(FERRY, args, { allowFailure: true, timeoutMs: 120_000, env: c.env });
  const post = async (path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const r = await fetch(`${c.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${TEST_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, json: (await r.json()) as Record<string, unknown> };
  };
  /** Collect a migration's stream until `end` (or the signal). */
  const collect = (id: string, signal?: AbortSignal): { events: MigrationStreamEvent[]; done: Promise<void> } => {
    const events: MigrationStreamEvent[] = [];
    return { events, done: api.migrationEvents(id, (e) => events.push(e), signal ? { signal } : {}) };
  };
  const startSlow = async (vm: string): Promise<string> => (await c.controller.migrate({ vm, to: "host-b", maxBandwidthBytes: SLOW })).id;
  const until = async (what: string, probe: () => Promise<true | undefined> | true | undefined, timeoutMs = 20_000): Promise<void> => {
    if ((await pollUntil(systemClock, { timeoutMs, everyMs: 50 }, probe)) === undefined) throw new Error(`timed out waiting for ${what}`);
  };
  const inPerform = (id: string) => until(`${id} in perform`, async () => ((await api.migration(id)).phase === "perform" ? true : undefined), 30_000);

  before(async () => {
    // a no-OS guest never takes a failover primary back: the restore below waits out primaryBackMs for p2's (30 s by default)
    c = await liveCluster([{ name: "host-a", network: "physnet1", numVfs: 2 }, { name: "host-b", network: "physnet1", numVfs: 2 }], { deadlines: { primaryBackMs: 3_000 } });
    api = new ControllerClient({ baseUrl: c.url, token: TEST_TOKEN });
    // p1: an emulated NIC (a no-OS guest never takes a failover primary back: the outcome would be degraded); p2: a VF the destination leases at prepare
    await c.controller.createVm({ name: "p1", host: "host-a", memoryMiB: 256, nics: [{ network: "physnet1", mode: "emulated", policy: "optional" }], noOs: true });
    await c.controller.createVm({ name: "p2", host: "host-a", memoryMiB: 256, nics: [{ network: "physnet1", mode: "failover", policy: "optional" }], noOs: true });
  });
  after(() => c.close());

  test("the stream: every phase with its time, QEMU's progress every ~250 ms in perform; a late subscriber gets the phases so far first; set and force-complete change what the source's QEMU holds; `ferry migration watch` prints every phase", async () => {
    const id = await startSlow("p1");
    const early = collect(id);
    const watch = ferry("migration", "watch", id);
    await inPerform(id);
    await until("4 progress events while RAM streams", () => (early.events.filter((e) => e.type === "progress" && e.status === "active").length >= 4 ? true : undefined));

    const late = collect(id);
    await until("progress on the late stream", () => (late.events.some((e) => e.type === "progress") ? true : undefined));
    const lateFirst = late.events.slice(0, 4).map((e) => (e.type === "phase" ? `${e.to}${e.replayed === true ? " (replayed)" : ""}` : e.type));
    assert.deepEqual(lateFirst, ["planned (replayed)", "begin (replayed)", "prepare (replayed)", "perform (replayed)"]);

    const progress = early.events.filter((e): e is ProgressStreamEvent => e.type === "progress" && e.status === "active");
    const [p0, pN] = [progress[0]!, progress.at(-1)!];
    assert.equal(p0.phase, "perform");
    assert.ok(pN.totalBytes >= 256 * 2 ** 20 * 0.9, `total ${pN.totalBytes}: the guest's RAM`);
    assert.ok(pN.transferredBytes > p0.transferredBytes, `RAM moves: ${p0.transferredBytes} → ${pN.transferredBytes}`);
    assert.ok(pN.remainingBytes < p0.remainingBytes, `less left: ${p0.remainingBytes} → ${pN.remainingBytes}`);
    assert.equal(typeof pN.expectedDowntimeMs, "number");
    assert.ok((pN.iterations ?? 0) >= 1, "the first pass over RAM");
    const gaps = progress.slice(1).map((p, i) => p.at - progress[i]!.at);
    assert.ok(gaps.every((g) => g >= 200 && g < 2_000), `about every 250 ms: ${gaps.join(", ")}`);

    // Ferry's first downtime step while the first pass over RAM runs (it lasts ~40 s at this rate)
    const source = c.agents.get("host-a")!.getInstance((await api.vm("p1")).instanceId!);
    assert.equal((await queryMigrationLimits(source.qmp)).downtimeLimit, 50, "the source QEMU's downtime-limit");

    const set = await ferry("migration", "set", id, "--max-bandwidth", "7", "--downtime-limit", "450", "--json");
    assert.equal(set.code, EXIT.ok, set.stderr + set.stdout);
    assert.deepEqual(JSON.parse(set.stdout), { migrationId: id, phase: "perform", status: "active", maxBandwidthMiBps: 7, downtimeLimitMs: 450 });

    const force = await post(`/v1/migrations/${id}/force-complete`, {});
    assert.equal(force.status, 200, JSON.stringify(force.json));
    assert.equal(force.json["action"], "downtime-limit-raised");
    assert.ok(Number(force.json["downtimeLimitMs"]) >= 2_000, JSON.stringify(force.json));
    assert.match(String(force.json["why"]), /post-copy is not used/);

    await early.done;
    const end = early.events.at(-1);
    if (end?.type !== "end") throw new Error(`the stream's last event is ${end?.type ?? "none"}, not end`);
    const rec = end.migration;
    assert.equal(rec.outcome, "succeeded", rec.reason ?? "");
    // every phase of the record was told, in order, each once
    const told = early.events.filter((e) => e.type === "phase").map((e) => (e.type === "phase" ? e.to : ""));
    const recorded = phaseTimes(rec).map((p) => p.phase);
    assert.deepEqual(told, recorded);
    assert.deepEqual(told, ["planned", "begin", "prepare", "perform", "precheck", "switchover", "finish", "confirm", "done"]);
    const tuned = early.events.filter((e) => e.type === "tuned").map((e) => (e.type === "tuned" ? e.action : ""));
    assert.deepEqual(tuned, ["set", "force-complete"]);
    await late.done;

    const w = await watch;
    assert.equal(w.code, EXIT.ok, w.stderr + w.stdout);
    for (const p of recorded) assert.match(w.stdout, new RegExp(`^\\+[0-9.]+ s  phase ${p}\\b`, "m"), `watch printed phase ${p}`);
    assert.match(w.stdout, /^\+[0-9.]+ s {2}perform active: [0-9.]+%, [0-9.]+ MiB\/s, ETA /m);
    assert.match(w.stdout, /^PHASES\nPHASE +STARTED +TOOK\nplanned +\+0\.000 s/m);
    assert.match(w.stdout, /^done +\+[0-9.]+ s +-$/m);

    // once it has ended, a subscriber gets the phases, then end, and the stream closes
    const after = collect(id);
    await after.done;
    assert.deepEqual(after.events.map((e) => (e.type === "phase" ? e.to : e.type)), [...recorded, "end"]);
    const tooLate = await post(`/v1/migrations/${id}/parameters`, { maxBandwidthMiBps: 10 });
    assert.equal(tooLate.status, 409);
    assert.equal(tooLate.json["code"], "FERRY_ERR_STATE");
    assert.match(String(tooLate.json["message"]), /it has ended \(succeeded\).*phase perform/);
  });

  test("cancel in perform: the VM keeps running on the source, the destination's instance is gone and its VFs released; a cancel after the end says why it changed nothing", async () => {
    const vm = await api.vm("p2");
    const id = await startSlow("p2");
    await inPerform(id);
    assert.ok(c.agents.get("host-b")!.leases.list().length > 0, "host-b leased a VF to the migration");
    const r = await ferry("migration", "cancel", id, "--json");
    assert.equal(r.code, EXIT.rolledBack, r.stderr + r.stdout);
    const out = JSON.parse(r.stdout) as { result: string; migration: { outcome: string; runsOn: { host: string; instanceId: string } } };
    assert.equal(out.result, "cancelled");
    assert.equal(out.migration.outcome, "rolled-back");
    assert.deepEqual(out.migration.runsOn, { host: vm.host, instanceId: vm.instanceId });
    const src = (await c.agents.get(vm.host)!.listInstances()).instances.find((i) => i.instanceId === vm.instanceId);
    assert.equal(src?.running, true, "the source keeps running");
    const dest = c.agents.get("host-b")!;
    assert.deepEqual((await dest.listInstances()).instances.filter((i) => i.vmUuid === vm.uuid), [], "no instance of p2 left on host-b");
    assert.deepEqual(dest.leases.list(), [], "host-b's VFs released");
    await systemClock.sleep(100);
    const again = await ferry("migration", "cancel", id);
    assert.equal(again.code, EXIT.refused);
    assert.match(again.stdout, /already-done: migration already ended: rolled-back/);
  });

  test("one record for every kind: local migration, save and restore are listed by `ferry migrations` and shown by `ferry migration show` in the same shape as a migration between hosts", async () => {
    // a no-OS guest has no shared memory (the lab's real guest covers a local migration that succeeds: test/e2e/lab-vm-ops.test.ts); a failed one is recorded too
    const p1 = await api.vm("p1");
    const refused = await ferry("migrate", "p1", "--local");
    assert.notEqual(refused.code, EXIT.ok);
    assert.match(refused.stderr, /does not map its RAM from a shared file/);
    await c.controller.saveVm("p2", "p2.state");
    await c.controller.restoreVm("p2");
    const r = await ferry("migrations", "--json");
    assert.equal(r.code, EXIT.ok, r.stderr);
    const list = JSON.parse(r.stdout) as Record<string, unknown>[];
    assert.deepEqual(list.map((x) => [x["kind"], x["vm"], x["outcome"]]), [
      ["migration", "p1", "succeeded"], ["migration", "p2", "rolled-back"], ["local", "p1", "failed"], ["save", "p2", "succeeded"], ["restore", "p2", "succeeded"],
    ]);
    const keys = Object.keys(list[0]!).filter((k) => k !== "cleanup" && k !== "measuring" && k !== "file" && k !== "qemuBinary").sort();
    for (const x of list) for (const k of keys) assert.ok(k in x, `${String(x["kind"])} has ${k}`);
    const [cross, , local, save, restore] = list as unknown as { id: string; code: string | null; runsOn: { host: string; instanceId: string } | null; dataMovedBytes: number | null; timeline: { phase: string; ms: number | null }[]; file?: string; nics: { before: { host: string; vf: string } | null; after: { host: string; vf: string } | null; gapMs: number | null }[] }[];
    assert.ok((cross!.dataMovedBytes ?? 0) > 0, "a migration between hosts: the RAM QEMU sent");
    assert.deepEqual([local!.runsOn, local!.code], [{ host: p1.host, instanceId: p1.instanceId }, "FERRY_ERR_STATE"], "failed: it runs where it ran");
    assert.deepEqual(local!.timeline.map((t) => t.phase), ["planned", "perform", "done"]);
    assert.equal(save!.file, "p2.state");
    assert.equal(save!.runsOn, null);
    assert.ok((save!.dataMovedBytes ?? 0) > 0, "the state file's size");
    assert.equal(save!.nics[0]!.before?.host, "host-a");
    assert.equal(save!.nics[0]!.after, null, "its VF released");
    assert.equal(restore!.runsOn?.host, "host-a");
    assert.equal(restore!.nics[0]!.before, null);
    const show = await ferry("migration", "show", save!.id);
    assert.equal(show.code, EXIT.ok, show.stderr);
    assert.match(show.stdout, /^save s-[0-9a-f]{8} of p2: succeeded\n {2}host-a → p2\.state in its saveDir; not running: saved\n/);
    assert.match(show.stdout, /^perform +\+0\.000 s +[0-9]+ ms$/m);
    // the plan says per destination what the scheduler does not check: here, no migration network (127.0.0.1 only)
    const plan = await ferry("migrate", "p2", "--plan", "--json");
    assert.equal(plan.code, EXIT.ok, plan.stderr);
    assert.deepEqual((JSON.parse(plan.stdout) as { warnings: { host: string; message: string }[] }).warnings.map((w) => [w.host, /no migration network/.test(w.message)]), [["host-b", true]]);
    assert.match((await ferry("migrate", "p2", "--plan")).stdout, /^WARNINGS\nHOST +WHAT\nhost-b +host-b has no migration network/m);
    const events = await ferry("events", "--json");
    assert.ok(events.stdout.includes(`"migrationId":"${restore!.id}"`), "the restore's outcome is an event");
  });

  test("a migration that does not converge by its deadline: rolled back with an outcome that says so, the source's policy in the record, the VM running on the source, the destination's VFs released", async () => {
    const vm = await api.vm("p2");
    const to = vm.host === "host-a" ? "host-b" : "host-a";
    const rec = await c.controller.migrate({ vm: "p2", to, maxBandwidthBytes: SLOW, convergence: "off", deadlines: { convergeMs: 2_000 } });
    let done: Awaited<ReturnType<typeof api.migration>> | undefined;
    await until(`${rec.id} done`, async () => {
      done = await api.migration(rec.id);
      return done.phase === "done" ? true : undefined;
    }, 60_000);
    assert.equal(done?.outcome, "rolled-back", `${done?.reason ?? ""}`);
    assert.match(done?.reason ?? "", /did not converge within 2000 ms \(policy: no auto-converge\)/);
    assert.equal(done?.convergence?.autoConverge, false, "the policy the source ran with, as a converged migration's record has it");
    assert.match(done?.convergence?.reason ?? "", /convergence policy off/);
    assert.equal(done?.convergence?.downtimeLimitMs, 300, "convergence off: QEMU's default downtime limit, set and never stepped");
    assert.deepEqual(done?.runsOn, { host: vm.host, instanceId: vm.instanceId });
    const src = (await c.agents.get(vm.host)!.listInstances()).instances.find((i) => i.instanceId === vm.instanceId);
    assert.equal(src?.running, true, "the source keeps running");
    assert.deepEqual(c.agents.get(to)!.leases.list(), [], `${to}'s VFs released`);
  });
});
