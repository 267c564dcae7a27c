// The durable coordinator driving two real agents over their HTTP API
// (loopback, bearer tokens), real QEMU, the real guest.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Type } from "typebox";
import { Agent } from "../../src/agent/agent.ts";
import { AgentClient } from "../../src/wire/agent-client.ts";
import { buildAgentApp } from "../../src/agent/http/app.ts";
import type { TestHost } from "../../src/agent/testing.ts";
import { makeTestHost } from "../../src/agent/testing.ts";
import { loadOrCreateToken } from "../../src/core/http/token.ts";
import { systemClock } from "../../src/core/clock.ts";
import { silentLogger } from "../../src/core/log.ts";
import { HttpAgentPort, agentDirectory } from "../../src/controller/agent-port.ts";
import { createMigration, runMigration } from "../../src/migration/runner.ts";
import type { MigrationPlan, NicPlan } from "../../src/migration/types.ts";
import type { VmSpec } from "../../src/model/vm.ts";
import { lastHeartbeat, readConsole, waitForConsole, waitForHeartbeat } from "../../src/qemu/console.ts";
import { SqliteStore } from "../../src/store/sqlite.ts";
import { bootMemsum } from "../../src/lab/memcheck.ts";
import { assertMemoryKept, guestSpec, mac, reportMemoryChecks } from "./helpers.ts";

interface Live {
  host: TestHost;
  agent: Agent;
  client: AgentClient;
  close(): Promise<void>;
}

async function live(name: string): Promise<Live> {
  const host = await makeTestHost({ name, lab: true });
  const agent = await Agent.open({ config: host.config });
  const { token } = await loadOrCreateToken(host.config.authTokenFile);
  const app = buildAgentApp({ agent, token });
  const address = await app.listen({ host: "127.0.0.1", port: 0 });
  return {
    host, agent, client: new AgentClient({ baseUrl: address, token }),
    async close() {
      for (const i of (await agent.listInstances()).instances) await agent.stopInstance(i.instanceId).catch(() => undefined);
      await app.close();
      await agent.close();
      await host.cleanup();
    },
  };
}

const DEADLINES = { unplugMs: 10_000, convergeMs: 120_000, precheckMs: 2_000, primaryBackMs: 20_000, stepMs: 60_000 };

function plan(id: string, spec: VmSpec, instanceId: string, a: Live, b: Live, after: Record<string, string | null>, policy: NicPlan["policy"] = "mandatory"): MigrationPlan {
  const pfA = a.host.fixture.pfs[0]!.bdf;
  const pfB = b.host.fixture.pfs[0]!.bdf;
  return {
    id,
    vm: { uuid: spec.uuid, name: spec.name, memoryMiB: spec.memoryMiB, vcpus: spec.vcpus },
    source: { host: a.host.config.name, instanceId },
    destination: { host: b.host.config.name },
    nics: spec.nics.map((n) => {
      const vfB = after[n.name] ?? null;
      return {
        name: n.name, network: "physnet1", mode: n.mode, policy, mac: n.mac, guestPorts: n.guestPorts,
        before: n.primary?.kind === "stand-in" ? { host: a.host.config.name, vf: n.primary.vf, pf: pfA } : null,
        after: vfB === null ? null : { host: b.host.config.name, vf: vfB, pf: pfB },
      };
    }),
    deadlines: DEADLINES,
  };
}

describe("coordinator + two agents over HTTP", { timeout: 300_000 }, () => {
  let a: Live;
  let b: Live;
  let store: SqliteStore;
  before(async () => {
    a = await live("host-a");
    b = await live("host-b");
    store = new SqliteStore(join(a.host.dir, "controller.db"));
  });
  after(async () => {
    await a.close();
    await b.close();
    store.close();
    reportMemoryChecks("coordinator.test.ts");
  });
  const deps = () => ({ store, port: new HttpAgentPort(agentDirectory(new Map([[a.host.config.name, a.client], [b.host.config.name, b.client]]))), clock: systemClock, log: silentLogger });

  it("a failover migration succeeds: the heartbeat continues and the NIC ends on a destination VF", async () => {
    const spec = await guestSpec("coord-ok", [
      { name: "net0", mode: "failover", mac: mac(0x31), standby: { kind: "none" }, primary: { kind: "stand-in", model: "rtl8139", backend: { kind: "none" }, vf: a.host.vfs[0]! }, guestPorts: { standby: 1, primary: 2 } },
      { name: "net1", mode: "emulated", mac: mac(0x32), standby: { kind: "none" }, guestPorts: { standby: 3 } },
    ]);
    const started = await a.client.startInstance(spec);
    await waitForConsole(started.serialLog, /ferry-ready/, { timeoutMs: 60_000 });
    const boot = await bootMemsum(started.serialLog, { timeoutMs: 10_000 });
    const p = plan("mig-ok", spec, started.instanceId, a, b, { net0: b.host.vfs[2]! });
    await createMigration(p, deps());
    const hbBefore = lastHeartbeat(await readConsole(started.serialLog)) ?? 0;
    const rec = await runMigration(p.id, deps());
    assert.equal(rec.outcome, "succeeded", `${rec.reason ?? ""} ${rec.code ?? ""}`);
    assert.equal(rec.runsOn?.host, "host-b");
    const dst = await b.client.instance(rec.runsOn?.instanceId ?? "");
    assert.equal(dst.running, true);
    assert.ok((await waitForHeartbeat(dst.serialLog, hbBefore, { timeoutMs: 30_000 })) > hbBefore, "heartbeat continued on host-b");
    await assertMemoryKept(boot, dst.serialLog, "the guest migrated to host-b");
    assert.deepEqual(dst.vfs, [b.host.vfs[2]], "the NIC holds the planned destination VF");
    assert.notEqual(b.host.vfs[2], a.host.vfs[0]);
    assert.deepEqual((await a.client.instances()).instances.map((i) => i.instanceId), [], "source instance gone");
    assert.deepEqual((await a.client.leases()).leases, [], "source leases released");
    assert.deepEqual((await b.client.leases()).leases.map((l) => [l.vf, l.holder.kind]), [[b.host.vfs[2], "instance"]]);
    const journal = await store.listJournal(p.id);
    assert.ok(journal.some((j) => j.phase === "switchover" && j.kind === "result"), "journaled");
    await b.client.stopInstance(dst.instanceId);
  });

  it("a guest that never releases its VF: rolled back, the source keeps running, nothing left on the destination", async () => {
    const spec = await guestSpec("coord-noos", [
      { name: "net0", mode: "ephemeral", mac: mac(0x33), primary: { kind: "stand-in", model: "rtl8139", backend: { kind: "none" }, vf: a.host.vfs[1]! }, guestPorts: { primary: 1 } },
    ], { noOs: true });
    const started = await a.client.startInstance(spec);
    const p = { ...plan("mig-noos", spec, started.instanceId, a, b, { net0: b.host.vfs[3]! }), deadlines: { ...DEADLINES, unplugMs: 1_500 } };
    await createMigration(p, deps());
    const rec = await runMigration(p.id, deps());
    assert.equal(rec.outcome, "rolled-back");
    assert.equal(rec.code, "FERRY_ERR_UNPLUG_TIMEOUT");
    assert.equal(rec.runsOn?.host, "host-a");
    const src = await a.client.instance(started.instanceId);
    assert.equal(src.state, "running");
    assert.deepEqual(src.vfs, [a.host.vfs[1]]);
    assert.deepEqual((await b.client.instances()).instances, []);
    assert.deepEqual((await b.client.leases()).leases, []);
    await a.client.stopInstance(started.instanceId);
  });

  it("a mandatory NIC with no destination VF is refused at Plan: no agent call, nothing changes", async () => {
    const spec = await guestSpec("coord-refused", [
      { name: "net0", mode: "failover", mac: mac(0x34), standby: { kind: "none" }, primary: { kind: "stand-in", model: "rtl8139", backend: { kind: "none" }, vf: a.host.vfs[0]! }, guestPorts: { standby: 1, primary: 2 } },
    ], { noOs: true });
    const started = await a.client.startInstance(spec);
    const p = plan("mig-refused", spec, started.instanceId, a, b, { net0: null });
    await createMigration(p, deps());
    const rec = await runMigration(p.id, deps());
    assert.equal(rec.outcome, "failed");
    assert.equal(rec.refused, true);
    assert.equal(rec.runsOn?.host, "host-a");
    assert.equal((await a.client.instance(started.instanceId)).state, "running");
    assert.deepEqual((await b.client.instances()).instances, []);
    await a.client.stopInstance(started.instanceId);
  });

  const arm = (l: Live, name: string) => l.client.request("POST", "/v1/faults", Type.Object({}, { additionalProperties: true }), { name, once: true });

  async function bootOnA(name: string, policy: NicPlan["policy"], vfA: string, vfB: string, id: string) {
    const spec = await guestSpec(name, [
      { name: "net0", mode: "ephemeral", mac: mac(0x40 + Number(vfA.slice(-1))), primary: { kind: "stand-in", model: "rtl8139", backend: { kind: "none" }, vf: vfA }, guestPorts: { primary: 1 } },
    ]);
    const started = await a.client.startInstance(spec);
    await waitForConsole(started.serialLog, /ferry-ready/, { timeoutMs: 60_000 });
    const boot = await bootMemsum(started.serialLog, { timeoutMs: 10_000 });
    const p = plan(id, spec, started.instanceId, a, b, { net0: vfB }, policy);
    await createMigration(p, deps());
    return { spec, started, p, boot };
  }

  it("the destination check fails at pre-switchover: rolled back, the source runs with its VF, the destination is clean", async () => {
    const { started, p, boot } = await bootOnA("coord-precheck", "mandatory", a.host.vfs[2]!, b.host.vfs[0]!, "mig-precheck");
    await arm(b, "precheck-fail");
    const rec = await runMigration(p.id, deps());
    assert.equal(rec.outcome, "rolled-back");
    assert.equal(rec.runsOn?.host, "host-a");
    const src = await a.client.instance(started.instanceId);
    assert.equal(src.state, "running");
    assert.deepEqual(src.vfs, [a.host.vfs[2]]);
    assert.ok(src.devices.includes("net0-primary"), "the ephemeral NIC is back on the source");
    await assertMemoryKept(boot, src.serialLog, "the source guest after the rollback");
    assert.deepEqual((await b.client.instances()).instances, []);
    assert.deepEqual((await b.client.leases()).leases, []);
    await a.client.stopInstance(started.instanceId);
  });

  it("re-plug fails after switch-over for a requisite NIC: degraded, the guest runs on the destination without it, one instance", async () => {
    const { started, p, boot } = await bootOnA("coord-degraded", "requisite", a.host.vfs[2]!, b.host.vfs[1]!, "mig-degraded");
    const hb = lastHeartbeat(await readConsole(started.serialLog)) ?? 0;
    await arm(b, "replug-fail");
    const rec = await runMigration(p.id, deps());
    assert.equal(rec.outcome, "degraded");
    assert.equal(rec.runsOn?.host, "host-b");
    const dst = await b.client.instance(rec.runsOn?.instanceId ?? "");
    assert.ok(!dst.devices.includes("net0-primary"));
    assert.ok((await waitForHeartbeat(dst.serialLog, hb, { timeoutMs: 30_000 })) > hb);
    await assertMemoryKept(boot, dst.serialLog, "the degraded guest on host-b");
    assert.deepEqual((await a.client.instances()).instances, [], "the source instance is gone");
    assert.deepEqual((await a.client.leases()).leases, []);
    await b.client.stopInstance(dst.instanceId);
  });

  it("re-plug fails after switch-over for a mandatory NIC: migrated back to the source's held VF, recovered", async () => {
    const { started, p, boot } = await bootOnA("coord-back", "mandatory", a.host.vfs[3]!, b.host.vfs[2]!, "mig-back");
    const hb = lastHeartbeat(await readConsole(started.serialLog)) ?? 0;
    await arm(b, "replug-fail");
    const rec = await runMigration(p.id, deps());
    assert.equal(rec.outcome, "recovered", `${rec.reason ?? ""}`);
    assert.equal(rec.runsOn?.host, "host-a");
    const back = await a.client.instance(rec.runsOn?.instanceId ?? "");
    assert.notEqual(back.instanceId, started.instanceId, "a new instance on the source");
    assert.equal(back.running, true);
    assert.deepEqual(back.vfs, [a.host.vfs[3]], "the guest has its old VF again");
    assert.ok((await waitForHeartbeat(back.serialLog, hb, { timeoutMs: 20_000 })) > hb, "memory survived both moves");
    await assertMemoryKept(boot, back.serialLog, "the guest migrated back to host-a");
    assert.deepEqual((await a.client.instances()).instances.map((i) => i.instanceId), [back.instanceId], "exactly one instance");
    assert.deepEqual((await b.client.instances()).instances, []);
    assert.deepEqual((await b.client.leases()).leases, []);
    await a.client.stopInstance(back.instanceId);
  });
});
