// Old operations replayed after later migrations change nothing (issue 20,
// findings 1 and 4), on a cluster as an operator runs it: `ferry controller`
// and three lab `ferry agent`s as real processes, real QEMU (no-OS guests
// with a failover NIC on a stand-in VF), the `ferry` CLI.
//
// - A stale `ferry migration cancel` of a migration that ended before the VM
//   moved on leaves `ferry vm show` on the right host; exactly one QEMU of
//   the VM runs (counted in /proc by the VM's uuid, as a user would with ps);
//   `ferry vm start` is refused naming the host that runs it.
// - Old agent step requests (begin, prepare, perform, finish, confirm, abort
//   of an ended migration) are refused by the agents and change nothing.
// - A destination agent killed during a migration comes back after the
//   rollback: the VF the migration held there is free within a heartbeat
//   (no waiting for the lease to expire), its incoming QEMU stopped.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Type } from "typebox";
import { EXIT } from "../../src/cli/exit-codes.ts";
import { systemClock } from "../../src/core/clock.ts";
import { isFerryError } from "../../src/core/errors.ts";
import type { MigrationRecord } from "../../src/migration/types.ts";
import { FaultCluster, waitFor } from "../faults/cluster.ts";
import { ferryCli } from "./cluster.ts";

const Any = Type.Object({}, { additionalProperties: true });
/** A no-OS guest never brings its failover primary back: Finish gives up on it quickly (the NIC is optional). */
const DEADLINES = { precheckMs: 30_000, primaryBackMs: 300 };

/** PIDs of every process whose command line names the VM's uuid (every QEMU of it, on every host of this machine). */
async function qemuPids(uuid: string): Promise<number[]> {
  const out: number[] = [];
  for (const d of await readdir("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const argv = (await readFile(join("/proc", d, "cmdline"), "utf8").catch(() => "")).split("\0");
    const i = argv.indexOf("-uuid");
    if (i >= 0 && argv[i + 1] === uuid) out.push(Number(d));
  }
  return out.sort();
}

describe("stale operations after later migrations change nothing", { timeout: 240_000 }, () => {
  let c: FaultCluster;
  let env: NodeJS.ProcessEnv = {};
  const { ferry, json } = ferryCli(() => env);

  before(async () => {
    c = await FaultCluster.start({ hosts: [{ name: "host-a", vfs: 2 }, { name: "host-b", vfs: 2 }, { name: "host-c", vfs: 2 }] });
    env = { ...process.env, FERRY_CONTROLLER: c.controller!.url, FERRY_TOKEN_FILE: join(c.base, "controller-token"), FERRY_CONTEXT: join(c.base, "no-context.json") };
  });
  after(async () => {
    await c?.close();
  });

  async function migrate(vm: string, to: string, deadlines: Record<string, number> = DEADLINES): Promise<MigrationRecord> {
    const r = await c.api.migrate({ vm, to, deadlines });
    assert.equal(r.kind, "started");
    return c.waitDone(r.kind === "started" ? r.migration.id : "");
  }

  /** Every lease on every host, as [host, vf, holder]. */
  async function allLeases(): Promise<[string, string, string][]> {
    const out: [string, string, string][] = [];
    for (const a of c.agents.values()) for (const l of (await a.client.leases()).leases) out.push([a.name, l.vf, JSON.stringify(l.holder)]);
    return out;
  }

  let uuid = "";
  let a: MigrationRecord;
  let b: MigrationRecord;

  it("a stale cancel of migration A after B: vm show stays on B's host, one QEMU runs, vm start is refused naming that host", async () => {
    const created = await json<{ uuid: string }>("vm", "create", "r1", "--host", "host-a", "--memory", "64", "--guest", "no-os", "--nic", "physnet1:failover:optional");
    uuid = created.uuid;
    a = await migrate("r1", "host-b");
    b = await migrate("r1", "host-c");
    assert.equal(b.runsOn?.host, "host-c", `${b.outcome ?? ""}: ${b.reason ?? ""}`);
    const before = await json<{ host: string; instanceId: string }>("vm", "show", "r1");
    assert.deepEqual([before.host, before.instanceId], ["host-c", b.runsOn.instanceId]);

    const cancel = await ferry("migration", "cancel", a.id, "--json");
    assert.match(cancel.stdout, /already-done/, cancel.stderr + cancel.stdout);
    const shown = await json<{ host: string; instanceId: string; state: string }>("vm", "show", "r1");
    assert.deepEqual([shown.host, shown.instanceId, shown.state], ["host-c", b.runsOn.instanceId, "running"], "the old migration's cancel did not move the VM record");
    const events = await ferry("events", "--json");
    assert.equal(events.stdout.split("\n").filter((l) => l.includes('"type":"vm-moved"') && l.includes(a.runsOn?.instanceId ?? "none")).length, 1, "vm-moved to A's instance once (when A ended), not again");
    assert.equal((await qemuPids(uuid)).length, 1, "exactly one QEMU of the VM across the hosts");

    const start = await ferry("vm", "start", "r1");
    assert.equal(start.code, EXIT.refused, start.stderr + start.stdout);
    assert.match(start.stderr, /FERRY_ERR_VM_RUNNING/);
    assert.match(start.stderr, /already runs on host host-c/);
    assert.equal((await qemuPids(uuid)).length, 1, "vm start started nothing");

    // the VM record is right: the next migration takes the guest from where it really runs
    const next = await migrate("r1", "host-a");
    assert.equal(next.plan.source.host, "host-c");
    assert.notEqual(next.code, "FERRY_ERR_GUEST_LOST", next.reason ?? "");
    assert.equal(next.runsOn?.host, "host-a", `${next.outcome ?? ""}: ${next.reason ?? ""}`);
    assert.deepEqual(await c.checkStore(next), []);
  });

  it("old step requests of migrations A and B, replayed on their hosts, are refused and change nothing", async () => {
    const vmBefore = await c.api.vm("r1");
    const pids = await qemuPids(uuid);
    const leases = await allLeases();
    const spec = { uuid, name: "r1", memoryMiB: 64, vcpus: 1, kernel: "/k", initrd: "/i", cmdline: "", nics: [], noOs: true };
    const replays: { host: string; id: string; step: string; body: unknown }[] = [];
    for (const m of [a, b]) {
      const src = m.plan.source;
      const dst = m.plan.destination.host;
      replays.push(
        { host: src.host, id: m.id, step: "begin", body: { instanceId: src.instanceId } },
        { host: dst, id: m.id, step: "prepare", body: { spec, nics: [], leaseTtlMs: 60_000 } },
        { host: src.host, id: m.id, step: "perform", body: { instanceId: src.instanceId, uri: m.prepared?.uri ?? "tcp:127.0.0.1:1", unplugMs: 1_000, convergeMs: 5_000 } },
        { host: dst, id: m.id, step: "finish", body: { primaryBackMs: 300 } },
        { host: src.host, id: m.id, step: "confirm", body: { instanceId: src.instanceId, success: false } },
        { host: src.host, id: m.id, step: "confirm", body: { instanceId: src.instanceId, success: true } },
        { host: dst, id: m.id, step: "abort", body: {} },
      );
    }
    const answers: string[] = [];
    for (const r of replays) {
      const err = await c.agent(r.host).client.request("POST", `/v1/migrations/${r.id}/${r.step}`, Any, r.body, { timeoutMs: 15_000 }).then(() => undefined, (e: unknown) => e);
      const refused = isFerryError(err, "FERRY_ERR_STATE") && err.message.includes(`${r.id} has ended on host ${r.host}`);
      answers.push(`${r.step} of ${r.id} on ${r.host}: ${refused ? "refused" : err === undefined ? "done (200)" : err instanceof Error ? err.message : "failed"}`);
    }
    assert.deepEqual(await qemuPids(uuid), pids, "no QEMU started or stopped");
    assert.deepEqual(await allLeases(), leases, "no lease changed");
    assert.deepEqual(answers, replays.map((r) => `${r.step} of ${r.id} on ${r.host}: refused`));
    const vmAfter = await c.api.vm("r1");
    assert.deepEqual([vmAfter.host, vmAfter.instanceId, vmAfter.state], [vmBefore.host, vmBefore.instanceId, "running"]);
    assert.equal((await c.agent(vmAfter.host).client.instance(vmAfter.instanceId!)).running, true);
  });

  it("a destination agent killed during a migration, back after the rollback: the migration's VF is free within a heartbeat", async () => {
    const vm = await c.api.createVm({ name: "r2", host: "host-b", memoryMiB: 64, nics: [{ network: "physnet1", mode: "failover", policy: "optional" }], noOs: true });
    await c.arm("host-c", "hold:prepare", { once: true, holdMs: 60_000 });
    // stepMs: how long the rollback retries the unreachable destination before it gives up on it
    const r = await c.api.migrate({ vm: "r2", to: "host-c", deadlines: { ...DEADLINES, stepMs: 8_000 } });
    assert.equal(r.kind, "started");
    const id = r.kind === "started" ? r.migration.id : "";
    await c.waitHolding("host-c", "prepare", id);
    const held = (await c.agent("host-c").client.leases()).leases.filter((l) => l.holder.kind === "migration" && l.holder.migrationId === id);
    assert.equal(held.length, 1, "prepare leased the planned VF to the migration");
    await c.killAgent("host-c");
    const done = await c.waitDone(id, 60_000);
    assert.equal(done.outcome, "rolled-back", `${done.code ?? ""}: ${done.reason ?? ""}`);
    assert.equal((await qemuPids(vm.uuid)).length, 2, "the incoming QEMU outlived its agent");

    await c.restartAgent("host-c");
    const t0 = systemClock.monotonic();
    await waitFor("host-c's lease of the ended migration released", async () => {
      const l = (await c.agent("host-c").client.leases()).leases;
      return l.some((x) => x.holder.kind === "migration") ? undefined : true;
    }, 10_000, 50);
    const ms = systemClock.monotonic() - t0;
    assert.ok(ms < 1_500, `released ${Math.round(ms)} ms after the agent was back (heartbeat 500 ms; the lease would expire in minutes)`);
    assert.deepEqual(await c.leaseViolations(), []);
    assert.equal((await qemuPids(vm.uuid)).length, 1, "the incoming QEMU was stopped; the guest runs on the source only");
    const hostC = (await c.api.hosts()).find((h) => h.name === "host-c");
    assert.deepEqual(hostC?.vfs, [{ network: "physnet1", used: 0, total: 2 }], "the scheduler counts the VF free");
    assert.deepEqual(await c.checkStore(done), []);
  });
});
