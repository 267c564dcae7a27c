import assert from "node:assert/strict";
import { test } from "node:test";
import { buildAgentApp } from "../agent/http/app.ts";
import { silentLogger } from "../core/log.ts";
import { EventBus } from "../controller/events.ts";
import { ControllerMetrics, migrationKind } from "./metrics.ts";
import type { MetricsSource } from "./metrics.ts";
import { newRecord } from "../migration/types.ts";
import type { MigrationRecord } from "../migration/types.ts";
import { contractPlan } from "../store/contract.ts";
import { liveCluster, memoryControllerApp, TEST_TOKEN } from "./testing.ts";

/** The value of one series in a Prometheus text exposition (undefined: no such series). */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const { clock, controller, app, auth, store } = memoryControllerApp();

/** A migration that ended as the coordinator ends one: the record written (outcome, timings, downtime), then its outcome event. */
async function endMigration(id: string, outcome: MigrationRecord["outcome"] & string, o: { downtimeMs?: number; link?: boolean; gapsMs?: number[] } = {}): Promise<void> {
  const start = clock.now();
  const plan = contractPlan(id);
  if (o.link) plan.link = { kind: "migrate-back", parentId: "m-parent", adoptFrom: { host: "hv-a", instanceId: "i-1" } };
  const rec = await store.createMigration(newRecord(plan, start));
  clock.advance(4_000);
  const timings = { begin: { startedAt: start, endedAt: start + 500, ms: 500 }, perform: { startedAt: start + 500, endedAt: start + 3_500, ms: 3_000 }, switchover: { startedAt: start + 3_500, endedAt: start + 3_620, ms: 120 } };
  await store.updateMigration(
    {
      ...rec, phase: "done", outcome, reason: "test", timings, updatedAt: clock.now(),
      switchover: o.downtimeMs === undefined ? null : { totalMs: 3_500, downtimeMs: o.downtimeMs },
      ...(o.gapsMs ? { connectivity: Object.fromEntries(o.gapsMs.map((g, i) => [`net${i}`, { probes: 400, lost: 10, longestGapMs: g }])) } : {}),
    },
    rec.version,
  );
  controller.events.publish({ type: "outcome", migrationId: id, outcome, reason: "test", code: null, runsOn: null, at: clock.now() });
}

async function scrape(): Promise<string> {
  const r = await app.inject({ method: "GET", url: "/metrics", headers: auth });
  assert.equal(r.statusCode, 200, r.body);
  assert.match(String(r.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
  return r.body;
}

test("/metrics needs the bearer token like every route", async () => {
  const r = await app.inject({ method: "GET", url: "/metrics" });
  assert.equal(r.statusCode, 401);
  assert.equal(r.json<{ code: string }>().code, "FERRY_ERR_UNAUTHORIZED");
});

test("an ended migration is counted by kind and outcome, with its duration, downtime, phases and NIC gaps", async () => {
  await endMigration("m-ok1", "succeeded", { downtimeMs: 80, gapsMs: [150, 40] });
  await endMigration("m-back", "rolled-back", { link: true });
  const text = await scrape();
  assert.equal(sample(text, 'ferry_migrations_total{kind="cross-host",outcome="succeeded"}'), 1);
  assert.equal(sample(text, 'ferry_migrations_total{kind="migrate-back",outcome="rolled-back"}'), 1);
  assert.equal(sample(text, 'ferry_migration_duration_seconds_sum{kind="cross-host",outcome="succeeded"}'), 4);
  assert.equal(sample(text, 'ferry_migration_duration_seconds_bucket{le="2",kind="cross-host",outcome="succeeded"}'), 0);
  assert.equal(sample(text, 'ferry_migration_duration_seconds_bucket{le="5",kind="cross-host",outcome="succeeded"}'), 1);
  // the downtime: 80 ms, within the 0.1 s bucket; the rolled-back one had no pause recorded
  assert.equal(sample(text, 'ferry_migration_downtime_seconds_sum{kind="cross-host"}'), 0.08);
  assert.equal(sample(text, 'ferry_migration_downtime_seconds_bucket{le="0.05",kind="cross-host"}'), 0);
  assert.equal(sample(text, 'ferry_migration_downtime_seconds_bucket{le="0.1",kind="cross-host"}'), 1);
  assert.equal(sample(text, 'ferry_migration_downtime_seconds_count{kind="migrate-back"}'), undefined);
  assert.equal(sample(text, 'ferry_migration_phase_duration_seconds_count{phase="perform"}'), 2);
  assert.equal(sample(text, 'ferry_migration_phase_duration_seconds_sum{phase="perform"}'), 6);
  assert.equal(sample(text, 'ferry_migration_phase_duration_seconds_sum{phase="switchover"}'), 0.24);
  assert.equal(sample(text, 'ferry_migration_connectivity_longest_gap_seconds_count{kind="cross-host"}'), 2, "one observation per NIC");
  assert.equal(sample(text, 'ferry_migration_connectivity_longest_gap_seconds_bucket{le="0.05",kind="cross-host"}'), 1);
  assert.equal(sample(text, 'ferry_migration_connectivity_longest_gap_seconds_bucket{le="0.2",kind="cross-host"}'), 2);

  // the same outcome event again (a resumed migration's) does not count it twice
  controller.events.publish({ type: "outcome", migrationId: "m-ok1", outcome: "succeeded", reason: "again", code: null, runsOn: null, at: clock.now() });
  assert.equal(sample(await scrape(), 'ferry_migrations_total{kind="cross-host",outcome="succeeded"}'), 1);
  for (const line of (await scrape()).split("\n").filter((l) => l.startsWith("# TYPE"))) assert.match(line, /^# TYPE ferry_/, "every metric is in the ferry_ namespace");
});

test("hosts by state and each agent up or down, VMs by state", async () => {
  for (const name of ["host-a", "host-b"]) await app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: auth, payload: { name, url: "http://127.0.0.1:1", version: "1", accel: "tcg" } });
  clock.advance(7_000);
  await app.inject({ method: "POST", url: "/v1/agents/heartbeat", headers: auth, payload: { name: "host-a", url: "http://127.0.0.1:1", version: "1", accel: "tcg" } });
  await controller.checkLiveness();
  const text = await scrape();
  assert.equal(sample(text, 'ferry_hosts{state="up"}'), 1);
  assert.equal(sample(text, 'ferry_hosts{state="down"}'), 1);
  assert.equal(sample(text, 'ferry_hosts{state="draining"}'), 0);
  assert.equal(sample(text, 'ferry_agent_up{host="host-a"}'), 1);
  assert.equal(sample(text, 'ferry_agent_up{host="host-b"}'), 0);
  assert.equal(sample(text, 'ferry_vms{state="running"}'), 0);
});

test("VF pools and leases per host, PF and network, from live agents; each agent's own /metrics says the same", async () => {
  const c = await liveCluster([
    { name: "met-a", network: "physnet1", numVfs: 4 },
    { name: "met-b", network: "physnet2", numVfs: 2 },
  ]);
  try {
    const a = c.hosts.get("met-a")!;
    const vmUuid = "6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab";
    c.agents.get("met-a")!.acquireLease(a.vfs[0]!, { kind: "instance", vmUuid, instanceId: "i-00000001" });
    c.agents.get("met-a")!.acquireLease(a.vfs[1]!, { kind: "migration", vmUuid, migrationId: "m-x", expiresAt: Date.now() + 60_000 });
    const pf = a.fixture.pfs[0]!.bdf;
    const r = await fetch(`${c.url}/metrics`, { headers: { authorization: `Bearer ${TEST_TOKEN}` } });
    assert.equal(r.status, 200);
    const text = await r.text();
    assert.equal(sample(text, `ferry_vf_pool_vfs{host="met-a",pf="${pf}",network="physnet1"}`), 4);
    assert.equal(sample(text, `ferry_vf_pool_leased{host="met-a",pf="${pf}",network="physnet1"}`), 2);
    assert.equal(sample(text, `ferry_vf_pool_leased{host="met-b",pf="${c.hosts.get("met-b")!.fixture.pfs[0]!.bdf}",network="physnet2"}`), 0);
    assert.equal(sample(text, 'ferry_vf_leases{host="met-a",kind="instance"}'), 1);
    assert.equal(sample(text, 'ferry_vf_leases{host="met-a",kind="migration"}'), 1);
    assert.equal(sample(text, 'ferry_hosts{state="up"}'), 2);

    const agentApp = buildAgentApp({ agent: c.agents.get("met-a")!, token: "a".repeat(32) });
    try {
      assert.equal((await agentApp.inject({ method: "GET", url: "/metrics" })).statusCode, 401);
      const ar = await agentApp.inject({ method: "GET", url: "/metrics", headers: { authorization: `Bearer ${"a".repeat(32)}` } });
      assert.equal(ar.statusCode, 200);
      assert.equal(sample(ar.body, `ferry_agent_vf_pool_vfs{pf="${pf}",network="physnet1"}`), 4);
      assert.equal(sample(ar.body, `ferry_agent_vf_pool_leased{pf="${pf}",network="physnet1"}`), 2);
      assert.equal(sample(ar.body, 'ferry_agent_vf_leases{kind="migration"}'), 1);
      assert.match(ar.body, /^# TYPE ferry_agent_qemu_instances gauge$/m);
    } finally {
      await agentApp.close();
    }
  } finally {
    await c.close();
  }
});

test("a NIC's connectivity written after the outcome (lab: once the NIC is steady) is observed at the next scrape", async () => {
  const rec = { ...newRecord(contractPlan("m-late"), 0), phase: "done" as const, outcome: "succeeded" as const, updatedAt: 2_000 };
  let now: MigrationRecord & { measuring: boolean; settling: boolean } = { ...rec, measuring: true, settling: false };
  const events = new EventBus();
  const source = { events, getMigration: () => Promise.resolve(now), listHosts: () => Promise.resolve([]), listVms: () => Promise.resolve([]), devices: () => Promise.resolve([]) } as unknown as MetricsSource;
  const m = new ControllerMetrics(source, silentLogger);
  const gapCount = async (): Promise<number | undefined> => sample(await m.registry.metrics(), 'ferry_migration_connectivity_longest_gap_seconds_count{kind="cross-host"}');
  events.publish({ type: "outcome", migrationId: "m-late", outcome: "succeeded", reason: "", code: null, runsOn: null, at: 2_000 });
  await m.settled();
  assert.equal(sample(await m.registry.metrics(), 'ferry_migrations_total{kind="cross-host",outcome="succeeded"}'), 1);
  assert.equal(await gapCount(), undefined, "still measuring: nothing yet");
  now = { ...now, measuring: false, connectivity: { net0: { probes: 300, lost: 12, longestGapMs: 140 } } };
  assert.equal(await gapCount(), 1);
  assert.equal(await gapCount(), 1, "observed once");
  await m.close();
});

test("the kind label of every record kind: local migrations, saves and restores are not counted as cross-host", () => {
  const plan = contractPlan("m-k");
  assert.deepEqual([migrationKind({ plan }), migrationKind({ plan: { ...plan, kind: "local" } }), migrationKind({ plan: { ...plan, kind: "save" } }), migrationKind({ plan: { ...plan, kind: "restore" } })], ["cross-host", "local", "save", "restore"]);
});
