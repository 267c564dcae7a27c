// POST /v1/migrations with plan: true, end to end through the controller
// (no agents: the dirty rate cannot be measured, and the plan says so):
// hosts registered by heartbeats carrying their QEMU and memory, every check
// per destination, blockers from them, and a prediction per destination with
// the bandwidth measured from a completed migration or the default.
import assert from "node:assert/strict";
import { test } from "node:test";
import { newRecord } from "../migration/types.ts";
import { plan as testPlan } from "../migration/testdata/scripted-port.ts";
import type { PlanReply } from "../wire/controller-api.ts";
import { memoryControllerApp } from "./testing.ts";

const MiB = 2 ** 20;
const qemu = (version: string, q35: string) => ({ version, machines: [{ name: "q35", aliasOf: q35 }, { name: q35 }], cpuModels: ["qemu64"] });

/** Agents as the controller sees them over HTTP: an empty inventory each; src measures its guest at `dirty` MiB/s (or fails). */
function agents(dirty: number | null): typeof fetch {
  return (input) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const host = url.pathname.split("/")[1]!;
    const json = (status: number, body: unknown) => Promise.resolve(new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } }));
    if (url.pathname.endsWith("/v1/inventory")) return json(200, { host, sysfsRoot: "/", pfs: [], vfs: [], networks: [], leases: [], problems: [] });
    if (url.pathname.endsWith("/dirty-rate") && dirty !== null) return json(200, { dirtyRateMiBps: dirty, seconds: 1, mode: "page-sampling", ramBytes: 1024 * MiB, maxBandwidthBytes: 128 * MiB, downtimeLimitMs: 300 });
    return json(503, { code: "FERRY_ERR_AGENT", message: "not in this test", retryable: true, details: {} });
  };
}

async function setUp(dirty: number | null) {
  const c = memoryControllerApp({ fetch: agents(dirty) });
  const { app, auth, cluster, store, clock } = c;
  const beat = (name: string, extra: Record<string, unknown>) => app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: auth, payload: { name, url: `http://127.0.0.1:1/${name}`, version: "0", accel: "tcg", ...extra } });
  const mem = { totalMiB: 16384, availableMiB: 8192 };
  for (const [name, extra] of [["src", { qemu: qemu("7.2.22", "pc-q35-7.2"), memory: mem }], ["same", { qemu: qemu("7.2.22", "pc-q35-7.2"), memory: mem }], ["older", { qemu: qemu("7.1.0", "pc-q35-7.1"), memory: mem }], ["silent", {}]] as const) {
    assert.equal((await beat(name, extra)).statusCode, 200);
  }
  await cluster.createVm({ uuid: "11111111-1111-4111-8111-111111111111", name: "web", memoryMiB: 1024, vcpus: 1, host: "src", instanceId: "i-00000001", state: "running", noOs: true, nics: [], createdAt: 0, updatedAt: 0 });
  // one completed migration src → same: 2 GiB moved in 4 s (512 MiB/s)
  const done = newRecord(testPlan([], { id: "m-00000001", source: { host: "src", instanceId: "i-00000000" }, destination: { host: "same" } }), clock.now());
  await store.createMigration({ ...done, phase: "done", outcome: "succeeded", switchover: { totalMs: 4000, downtimeMs: 40 }, dataMovedBytes: 2048 * MiB });
  return c;
}

test("the plan: every check per destination, blockers from them, and a prediction per destination saying what it rests on", async () => {
  const { app, auth } = await setUp(null);
  const r = await app.inject({ method: "POST", url: "/v1/migrations", headers: auth, payload: { vm: "web", plan: true } });
  assert.equal(r.statusCode, 200, r.body);
  const p = (JSON.parse(r.body) as { plan: PlanReply }).plan;
  const status = (host: string, check: string) => p.checks?.find((c) => c.host === host && c.check === check)?.status;
  assert.deepEqual(p.destinations.map((d) => d.host).sort(), ["older", "same", "silent"]);
  assert.equal(status("same", "QEMU_VERSION"), "ok");
  assert.equal(status("same", "MACHINE_TYPE"), "ok");
  assert.equal(status("same", "MEMORY"), "ok");
  assert.equal(status("older", "QEMU_VERSION"), "blocker");
  assert.equal(status("silent", "MEMORY"), "unchecked");
  assert.deepEqual(p.blockers?.filter((b) => b.host === "older").map((b) => b.check), ["QEMU_VERSION", "MACHINE_TYPE"]);
  assert.equal(p.dirtyRate?.measured, false);
  assert.match(p.dirtyRate?.detail ?? "", /src's agent could not measure it/);
  const same = p.predictions?.find((x) => x.host === "same");
  assert.equal(same?.bandwidth.source, "measured");
  assert.equal(same?.bandwidth.bytesPerSec, 512 * MiB);
  assert.equal(same?.durationMs, 2000, "1 GiB at 512 MiB/s, nothing dirtied");
  assert.match(same?.note ?? "", /dirty rate not measured.*lower bound/);
  const silent = p.predictions?.find((x) => x.host === "silent");
  assert.equal(silent?.bandwidth.source, "default");
  assert.equal(silent?.durationMs, 1024, "1 GiB at the default 1000 MiB/s");
});

test("a measured dirty rate and the instance's bandwidth cap: the prediction uses both, and warns when the guest outpaces the cap", async () => {
  const { app, auth } = await setUp(200);
  const r = await app.inject({ method: "POST", url: "/v1/migrations", headers: auth, payload: { vm: "web", plan: true } });
  assert.equal(r.statusCode, 200, r.body);
  const p = (JSON.parse(r.body) as { plan: PlanReply }).plan;
  assert.deepEqual(p.dirtyRate, { measured: true, MiBps: 200, detail: "QEMU calc-dirty-rate (page-sampling) over 1 s on src" });
  // no migration to silent yet: the default 1000 MiB/s, capped by the instance's 128 MiB/s, which the guest outpaces
  const silent = p.predictions?.find((x) => x.host === "silent");
  assert.equal(silent?.bandwidth.source, "cap");
  assert.equal(silent?.converges, false);
  assert.ok(p.warnings?.some((w) => w.host === "silent" && /will not converge at 128 MiB\/s \(cap\).*force-complete/.test(w.message)), JSON.stringify(p.warnings));
  // to same, the measured pace (512 MiB/s, which ran under that cap) outruns 200 MiB/s: it converges, and the last migration's 40 ms downtime is the floor
  const same = p.predictions?.find((x) => x.host === "same");
  assert.equal(same?.bandwidth.source, "measured");
  assert.equal(same?.converges, true);
  assert.equal(same?.downtimeFloorMs, 40);
  assert.ok((same?.downtimeMs ?? 0) >= 40);
});

test("a file-backed guest of whole MiB on TCG hosts with QEMU < 9.0: the plan names the blocker, and the migration is refused with it, nothing changed", async () => {
  const { app, auth, cluster, store } = await setUp(null);
  await cluster.createVm({ uuid: "22222222-2222-4222-8222-222222222222", name: "shm", memoryMiB: 512, vcpus: 1, host: "src", instanceId: "i-00000002", state: "running", noOs: true, sharedMemory: true, nics: [], createdAt: 0, updatedAt: 0 });
  const plan = await app.inject({ method: "POST", url: "/v1/migrations", headers: auth, payload: { vm: "shm", to: "same", plan: true } });
  assert.equal(plan.statusCode, 200, plan.body);
  const blocker = (JSON.parse(plan.body) as { plan: PlanReply }).plan.blockers?.find((b) => b.host === "same" && b.check === "SHARED_MEMORY");
  assert.match(blocker?.message ?? "", /QEMU before 9\.0 under TCG.*create it again|--local/);
  const before = (await store.listMigrations()).length;
  const r = await app.inject({ method: "POST", url: "/v1/migrations", headers: auth, payload: { vm: "shm", to: "same" } });
  assert.equal(r.statusCode, 409, r.body);
  const body = JSON.parse(r.body) as { code: string; message: string };
  assert.equal(body.code, "FERRY_ERR_STATE");
  assert.ok(body.message.includes(blocker!.message), body.message);
  assert.equal((await store.listMigrations()).length, before, "no migration recorded");
  assert.equal((await cluster.getVm("shm"))?.host, "src");
});
