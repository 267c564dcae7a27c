// The controller as an operator runs it: `ferry controller` and three
// `ferry agent`s as real processes on loopback, real QEMU guests, the `ferry`
// CLI talking to the controller API. Agents register with the controller
// and heartbeat on their own (the `controller:` section of host.yaml).
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { systemClock } from "../../src/core/clock.ts";
import { run } from "../../src/core/run.ts";
import type { MigrationRecord } from "../../src/migration/types.ts";
import { lastHeartbeat, readConsole, waitForConsole, waitForHeartbeat } from "../../src/qemu/console.ts";
import { bootMemsum } from "../../src/lab/memcheck.ts";
import { EXIT } from "../../src/cli/exit-codes.ts";
import type { MigrationSummary } from "../../src/cli/render/migration.ts";
import { FERRY, ferryCli, TestCluster, waitFor } from "./cluster.ts";
import type { TestAgent } from "./cluster.ts";
import { assertMemoryKept, reportMemoryChecks } from "./helpers.ts";
/** What `ferry migrate --json` prints. */
type MigrateJson = MigrationSummary;
interface VmJson {
  uuid: string;
  name: string;
  host: string;
  instanceId: string | null;
  state: string;
  nics: { name: string; network: string; mode: string; mac: string; vf: string | null; guestPorts: { standby?: number; primary?: number } }[];
}
interface PlanJson {
  destinations: { host: string; rank: number }[];
  rejections: { host: string; code: string; message: string }[];
}

describe("ferry controller + three agents, driven by the ferry CLI", { timeout: 170_000 }, () => {
  let c: TestCluster;
  const orphanPids: number[] = [];

  const { ferry, json } = ferryCli(() => c.env);
  const agent = (n: string): TestAgent => c.agent(n);

  before(async () => {
    c = await TestCluster.up({
      prefix: "fc-",
      hosts: [
        { name: "host-a", uplinks: [{ network: "physnet1", numVfs: 2 }, { network: "physnet2", numVfs: 1 }] },
        { name: "host-b", uplinks: [{ network: "physnet1", numVfs: 2 }] },
        { name: "host-c", uplinks: [{ network: "physnet1", numVfs: 1 }] },
      ],
    });
  });

  after(async () => {
    for (const pid of orphanPids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await c?.close();
    reportMemoryChecks("controller.test.ts");
  });

  it("agents register by heartbeat; ferry hosts lists them up", async () => {
    const hosts = await waitFor(
      "three hosts up",
      async () => {
        const h = await json<{ name: string; state: string; url: string }[]>("hosts");
        return h.length === 3 && h.every((x) => x.state === "up") ? h : undefined;
      },
      10_000,
    );
    assert.deepEqual(hosts.map((h) => h.name), ["host-a", "host-b", "host-c"]);
    assert.equal(hosts[0]!.url, agent("host-a").proc.url);
    const devices = await json<{ host: string; vf: string; network: string }[]>("devices", "--network", "physnet2");
    assert.deepEqual(devices.map((d) => [d.host, d.vf]), [["host-a", agent("host-a").vfs["physnet2"]![0]]]);
  });

  let web: VmJson;
  /** The checksum of the memory web filled at boot (src/lab/memcheck.ts). */
  let webBoot = "";
  it("ferry vm create starts a guest with a failover NIC on a VF of its network; the context file is read", async () => {
    const ctx = join(c.base, "context.json");
    await writeFile(ctx, JSON.stringify({ controller: c.controller!.url, tokenFile: "controller-token" }));
    const r = await run(FERRY, ["vm", "create", "web", "--host", "host-a", "--memory", "256", "--nic", "physnet1:failover:mandatory", "--json"], {
      allowFailure: true, timeoutMs: 120_000, env: { ...process.env, FERRY_CONTEXT: ctx, FERRY_CONTROLLER: "", FERRY_TOKEN_FILE: "" },
    });
    assert.equal(r.code, EXIT.ok, r.stderr);
    web = JSON.parse(r.stdout) as VmJson;
    assert.equal(web.host, "host-a");
    assert.equal(web.state, "running");
    assert.match(web.nics[0]!.mac, /^52:54:00:/);
    assert.deepEqual(web.nics[0]!.guestPorts, { standby: 1, primary: 2 });
    assert.ok(agent("host-a").vfs["physnet1"]!.includes(web.nics[0]!.vf!), `VF ${web.nics[0]!.vf} is a physnet1 VF of host-a`);
    const inst = await agent("host-a").client.instance(web.instanceId!);
    assert.deepEqual(inst.vfs, [web.nics[0]!.vf]);
    await waitForConsole(c.hostPath("host-a", inst.serialLog), /ferry-ready/, { timeoutMs: 60_000 });
    webBoot = await bootMemsum(c.hostPath("host-a", inst.serialLog), { timeoutMs: 10_000 });

    // fill host-c's only VF (a no-OS guest) so that host-c cannot take web
    const filler = await json<VmJson>("vm", "create", "filler", "--host", "host-c", "--memory", "128", "--nic", "physnet1:ephemeral:mandatory", "--guest", "no-os");
    orphanPids.push((await agent("host-c").client.instance(filler.instanceId!)).pid);
  });

  it("ferry migrate --plan ranks destinations and says why the others were rejected", async () => {
    const plan = await json<PlanJson>("migrate", "web", "--plan");
    assert.deepEqual(plan.destinations.map((d) => d.host), ["host-b"]);
    const why = Object.fromEntries(plan.rejections.map((r) => [r.host, r.code]));
    assert.deepEqual(why, { "host-a": "SAME_HOST", "host-c": "NO_VF" });
    const text = await ferry("migrate", "web", "--plan");
    assert.match(text.stdout, /^host-c\s+NO_VF\s+/m);
  });

  it("ferry migrate --json: succeeded, the heartbeat continues, the NIC ends on a destination VF of the same network", async () => {
    const src = await agent("host-a").client.instance(web.instanceId!);
    const hbBefore = lastHeartbeat(await readConsole(c.hostPath("host-a", src.serialLog))) ?? 0;
    const r = await ferry("migrate", "web", "--json");
    assert.equal(r.code, EXIT.ok, r.stderr + r.stdout);
    const out = JSON.parse(r.stdout) as MigrateJson;
    assert.equal(out.outcome, "succeeded", out.reason ?? "");
    assert.equal(out.source, "host-a");
    assert.equal(out.destination, "host-b");
    assert.equal(out.runsOn?.host, "host-b");
    assert.ok(out.timings.totalMs! > 0 && out.timings.downtimeMs !== null && out.timings.phases["perform"]! >= 0, JSON.stringify(out.timings));
    const nic = out.nics[0]!;
    assert.deepEqual([nic.name, nic.network, nic.mode, nic.policy], ["net0", "physnet1", "failover", "mandatory"]);
    assert.deepEqual(nic.before, { host: "host-a", vf: web.nics[0]!.vf, pf: agent("host-a").pfs["physnet1"] });
    assert.equal(nic.after?.host, "host-b");
    assert.ok(agent("host-b").vfs["physnet1"]!.includes(nic.after.vf));
    assert.equal(nic.after?.pf, agent("host-b").pfs["physnet1"], "the destination VF's PF uplinks physnet1");
    const dst = await agent("host-b").client.instance(out.runsOn.instanceId);
    assert.deepEqual(dst.vfs, [nic.after.vf]);
    assert.ok((await waitForHeartbeat(c.hostPath("host-b", dst.serialLog), hbBefore, { timeoutMs: 15_000 })) > hbBefore, "heartbeat continued on host-b");
    await assertMemoryKept(webBoot, c.hostPath("host-b", dst.serialLog), "web migrated to host-b");
    assert.deepEqual((await agent("host-a").client.leases()).leases.filter((l) => l.vf === web.nics[0]!.vf), [], "source VF released");
    const vms = await json<VmJson[]>("vms");
    const moved = vms.find((v) => v.name === "web")!;
    assert.deepEqual([moved.host, moved.instanceId, moved.state, moved.nics[0]!.vf], ["host-b", out.runsOn.instanceId, "running", nic.after.vf]);
    const listed = await json<{ id: string; outcome: string }[]>("migrations");
    assert.deepEqual(listed.map((m) => [m.id, m.outcome]), [[out.id, "succeeded"]]);
    web = moved;
  });

  it("a mandatory NIC with no free VF on any other host: exit 3, nothing changed", async () => {
    const db = await json<VmJson & { convergence?: string }>("vm", "create", "db", "--host", "host-a", "--memory", "128", "--nic", "physnet2:ephemeral:mandatory", "--guest", "no-os", "--convergence", "off");
    assert.equal(db.convergence, "off", "the VM's convergence policy, from vm create");
    const leasesBefore = (await agent("host-a").client.leases()).leases.map((l) => [l.vf, l.holder]);
    const r = await ferry("migrate", "db", "--json");
    assert.equal(r.code, EXIT.refused, r.stderr + r.stdout);
    const out = JSON.parse(r.stdout) as MigrateJson & { rejections: { host: string; code: string }[] };
    assert.equal(out.outcome, "refused");
    assert.match(out.reason ?? "", /refused/);
    assert.deepEqual(out.rejections.map((x) => [x.host, x.code]).sort(), [["host-a", "SAME_HOST"], ["host-b", "NO_VF"], ["host-c", "NO_VF"]]);
    assert.deepEqual(out.nics[0]!.after, out.nics[0]!.before);
    const after = await json<VmJson>("vm", "show", "db");
    assert.deepEqual([after.host, after.instanceId, after.state, after.nics[0]!.vf], [db.host, db.instanceId, "running", db.nics[0]!.vf]);
    assert.equal((await agent("host-a").client.instance(db.instanceId!)).running, true);
    assert.deepEqual((await agent("host-a").client.leases()).leases.map((l) => [l.vf, l.holder]), leasesBefore);
    assert.equal((await json<unknown[]>("migrations")).length, 1, "no migration recorded");
    // the VM's policy: shown, changed, back to the default
    assert.match((await ferry("vm", "show", "db")).stdout, /^migrations converge with: off \(the VM's policy/m);
    assert.match((await ferry("vm", "set", "db", "--convergence", "auto-converge")).stdout, /^migrations converge with: auto-converge /m);
    assert.equal((await json<{ convergence?: string }>("vm", "set", "db", "--convergence", "default")).convergence, undefined);
    assert.match((await ferry("vm", "show", "db")).stdout, /^migrations converge with: auto \(the default/m);
    assert.equal((await ferry("vm", "delete", "db")).code, EXIT.ok);
  });

  it("a host whose agent is killed is marked down and never chosen", async () => {
    await c.killAgent("host-c");
    await waitFor(
      "host-c down",
      async () => ((await json<{ name: string; state: string }[]>("hosts")).find((h) => h.name === "host-c")?.state === "down" ? true : undefined),
      8_000,
    );
    const plan = await json<PlanJson>("migrate", "web", "--plan");
    assert.ok(!plan.destinations.some((d) => d.host === "host-c"));
    assert.equal(plan.rejections.find((x) => x.host === "host-c")?.code, "HOST_DOWN");
    const events = await ferry("events", "--json");
    assert.ok(events.stdout.split("\n").some((l) => l.includes('"type":"host-down"') && l.includes('"host":"host-c"')), events.stdout);
  });

  it("the controller SIGKILLed during Perform, restarted: the migration ends, the guest runs exactly once, no lease leaked", async () => {
    const slow = await json<VmJson>("vm", "create", "slow", "--host", "host-a", "--memory", "128", "--nic", "physnet1:ephemeral:mandatory", "--guest", "no-os");
    const started = await c.api.migrate({ vm: "slow", to: "host-b", deadlines: { unplugMs: 6_000 } });
    assert.equal(started.kind, "started");
    const id = started.kind === "started" ? started.migration.id : "";
    await waitFor("phase perform", async () => ((await c.api.migration(id)).phase === "perform" ? true : undefined), 20_000);
    await systemClock.sleep(1_000);
    await c.killController();
    await systemClock.sleep(500);
    await c.startController();
    const done = await waitFor<MigrationRecord>("a terminal outcome", async () => {
      const r = await c.api.migration(id);
      return r.phase === "done" ? r : undefined;
    }, 60_000);
    assert.ok(done.outcome !== null);
    assert.equal(done.outcome, "rolled-back", `${done.reason ?? ""}`);
    assert.equal(done.code, "FERRY_ERR_UNPLUG_TIMEOUT");
    const show = await ferry("migration", "show", id);
    assert.match(show.stdout, /rolled-back/);

    // the guest runs exactly once, where the record says
    const running: { host: string; instanceId: string }[] = [];
    for (const h of ["host-a", "host-b"]) {
      for (const i of (await agent(h).client.instances()).instances) if (i.vmUuid === slow.uuid && i.running) running.push({ host: h, instanceId: i.instanceId });
    }
    assert.deepEqual(running, [done.runsOn]);
    // every lease belongs to a running instance
    for (const h of ["host-a", "host-b"]) {
      const insts = new Set((await agent(h).client.instances()).instances.filter((i) => i.running).map((i) => i.instanceId));
      for (const l of (await agent(h).client.leases()).leases) {
        assert.equal(l.holder.kind, "instance", `${h} ${l.vf}: ${JSON.stringify(l.holder)}`);
        assert.ok(l.holder.kind === "instance" && insts.has(l.holder.instanceId), `${h} ${l.vf} held by a running instance`);
      }
    }
    const vm = await waitFor("the VM record settled", async () => {
      const v = await json<VmJson>("vm", "show", "slow");
      return v.state === "running" ? v : undefined;
    }, 10_000);
    assert.deepEqual([vm.host, vm.instanceId, vm.nics[0]!.vf], [done.runsOn!.host, done.runsOn!.instanceId, slow.nics[0]!.vf]);
  });
});
