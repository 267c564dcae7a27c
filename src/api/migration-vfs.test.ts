// Concurrent migrations to one destination are never given the same VF
// (issue 18: found by bench/scale.ts). The controller, its SQLite stores and
// its API are the real ones; the agents are in-process fakes that answer the
// inventory and leave every migration step pending (until the controller
// closes): the migrations stay in flight with their destination VFs not
// leased yet, the window in which a second plan could pick them again.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { VmRecord } from "../store/cluster.ts";
import { memoryControllerApp } from "./testing.ts";

const NET = "physnet1";
const PF = "0000:3b:00.0";
const vfBdf = (i: number): string => `0000:3b:02.${i}`;

/** Each host's VFs on one PF; a VF's lease holder (a VM's instance) or null. */
const hosts: Record<string, (string | null)[]> = {
  src: ["i-1", "i-2", "i-3", "i-4"],
  // exactly two free VFs: the first is leased to a VM already there
  dst: ["i-9", null, null],
  dst2: [null, null],
};

function inventory(host: string): unknown {
  const vfs = hosts[host]!.map((holder, i) => ({
    bdf: vfBdf(i), pf: PF, pfIfname: "ens0", vfIndex: i, network: NET, vendor: "8086", device: "154c", numaNode: 0, mac: null, vlan: null, standIn: null,
    lease: holder === null ? null : { kind: "instance", vmUuid: `00000000-0000-4000-8000-0000000000${holder.slice(2).padStart(2, "0")}`, instanceId: holder },
  }));
  return {
    host, sysfsRoot: "/fake", problems: [], leases: [],
    pfs: [{ bdf: PF, ifname: "ens0", network: NET, vendor: "8086", device: "1572", numaNode: 0, bandwidthMbps: 25_000, totalVfs: vfs.length, numVfs: vfs.length }],
    vfs,
    networks: [{ name: NET, bridge: null, netns: null, vlan: null, vfs: vfs.length, free: vfs.filter((v) => v.lease === null).length }],
  };
}

const fakeFetch: typeof fetch = async (input, init) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const host = url.hostname.replace(/\.test$/, "");
  if (url.pathname === "/v1/inventory") {
    // a little delay, as a real agent's: plans made at once all read before any is recorded
    await new Promise((r) => setTimeout(r, 5));
    return new Response(JSON.stringify(inventory(host)), { status: 200, headers: { "content-type": "application/json" } });
  }
  // every other request (the migration steps) waits until the controller closes
  const signal = init?.signal;
  return new Promise<Response>((_, reject) => {
    const stop = (): void => reject(new Error("fake agent: request aborted"));
    if (signal?.aborted === true) stop();
    signal?.addEventListener("abort", stop, { once: true });
  });
};

const { cluster, controller, app, auth } = memoryControllerApp({ fetch: fakeFetch });
after(() => controller.close());

function vm(i: number): Omit<VmRecord, "seq"> {
  return {
    uuid: `00000000-0000-4000-8000-00000000000${i}`, name: `vm-${i}`, memoryMiB: 512, vcpus: 1, host: "src", instanceId: `i-${i}`, state: "running", noOs: true, createdAt: 0, updatedAt: 0,
    nics: [{ name: "net0", network: NET, mode: "failover", policy: "mandatory", mac: `52:54:00:00:00:0${i}`, guestPorts: { standby: 1, primary: 2 }, address: "", vf: vfBdf(i - 1) }],
  };
}

interface Started { migration: { id: string; plan: { nics: { after: { host: string; vf: string } | null }[] } } }
const migrate = (name: string, to = "dst") => app.inject({ method: "POST", url: "/v1/migrations", headers: auth, payload: { vm: name, to } });

test("two migrations started at once to a host with two free VFs get one each; a third is refused while they are in flight", async () => {
  for (const name of Object.keys(hosts)) await controller.heartbeat({ name, url: `http://${name}.test:7070`, version: "1", accel: "tcg" });
  for (const i of [1, 2, 3, 4]) await cluster.createVm(vm(i));

  const [a, b] = await Promise.all([migrate("vm-1"), migrate("vm-2")]);
  assert.equal(a.statusCode, 202, a.body);
  assert.equal(b.statusCode, 202, b.body);
  const vfs = [a, b].map((r) => r.json<Started>().migration.plan.nics[0]!.after);
  assert.deepEqual(vfs.map((v) => v?.vf).sort(), [vfBdf(1), vfBdf(2)], "each migration its own free VF of dst");

  // the destination still shows both VFs free (nothing is leased yet): the records in flight reserve them
  const c = await migrate("vm-3");
  assert.equal(c.statusCode, 409, c.body);
  const problem = c.json<{ code: string; message: string }>();
  assert.equal(problem.code, "FERRY_ERR_NO_VF");
  assert.match(problem.message, /migration of vm-3 refused, nothing changed/);

  // a plan only (nothing changes) sees the same
  const plan = await app.inject({ method: "POST", url: "/v1/migrations", headers: auth, payload: { vm: "vm-3", to: "dst", plan: true } });
  assert.equal(plan.statusCode, 200, plan.body);
  assert.deepEqual(plan.json<{ plan: { destinations: unknown[] } }>().plan.destinations, []);

  // nor does a VM created there take one: refused before any agent is asked to start it
  const created = await app.inject({ method: "POST", url: "/v1/vms", headers: auth, payload: { name: "late", host: "dst", memoryMiB: 256, noOs: true, nics: [{ network: NET, mode: "failover", policy: "mandatory" }] } });
  assert.equal(created.statusCode, 409, created.body);
  assert.equal(created.json<{ code: string }>().code, "FERRY_ERR_NO_VF");
});

test("a destination planned earlier (an evacuation's) whose VFs went to another migration since: the migration gets other free VFs on that host", async () => {
  const planned = await controller.plan({ vm: "vm-4", to: "dst2" });
  const stale = planned.destinations[0]!;
  assert.equal(stale.nics[0]!.vf?.bdf, vfBdf(0));
  const other = await migrate("vm-3", "dst2");
  assert.equal(other.statusCode, 202, other.body);
  assert.equal(other.json<Started>().migration.plan.nics[0]!.after?.vf, vfBdf(0), "the other migration took the planned VF");
  const rec = await controller.migrate({ vm: "vm-4", to: "dst2", destination: stale });
  assert.deepEqual(rec.plan.nics[0]!.after, { host: "dst2", vf: vfBdf(1), pf: PF });
});

test("a VM's convergence policy: PATCH sets and resets it (not while it migrates); a migration that asks for none runs with the VM's, one that asks runs with its own", async () => {
  const bare = (i: number): Omit<VmRecord, "seq"> => ({ ...vm(i), nics: [] });
  await cluster.createVm(bare(5));
  await cluster.createVm(bare(6));
  const patch = (name: string, body: Record<string, unknown>) => app.inject({ method: "PATCH", url: `/v1/vms/${name}`, headers: auth, payload: body });
  const set = await patch("vm-5", { convergence: "off" });
  assert.equal(set.statusCode, 200, set.body);
  assert.equal(set.json<{ convergence?: string }>().convergence, "off");
  assert.equal((await cluster.getVm("vm-5"))?.convergence, "off", "kept in the store");
  for (const bad of [{ convergence: "fast" }, {}, { convergence: "off", extra: 1 }]) assert.equal((await patch("vm-5", bad)).statusCode, 400, JSON.stringify(bad));
  assert.equal((await patch("vm-nope", { convergence: "off" })).statusCode, 404);
  const m5 = await migrate("vm-5", "dst2");
  assert.equal(m5.statusCode, 202, m5.body);
  assert.equal(m5.json<{ migration: { plan: { convergence?: string } } }>().migration.plan.convergence, "off", "the VM's policy");
  const busy = await patch("vm-5", { convergence: "auto" });
  assert.equal(busy.statusCode, 409, busy.body);
  assert.equal((await cluster.getVm("vm-5"))?.convergence, "off", "unchanged while it migrates");

  assert.equal((await patch("vm-6", { convergence: "auto-converge" })).statusCode, 200);
  const reset = await patch("vm-6", { convergence: null });
  assert.equal(reset.json<{ convergence?: string }>().convergence, undefined, "null: back to the default");
  assert.equal((await patch("vm-6", { convergence: "off" })).statusCode, 200);
  const own = await app.inject({ method: "POST", url: "/v1/migrations", headers: auth, payload: { vm: "vm-6", to: "dst2", convergence: "auto-converge" } });
  assert.equal(own.statusCode, 202, own.body);
  assert.equal(own.json<{ migration: { plan: { convergence?: string } } }>().migration.plan.convergence, "auto-converge", "the migration's own policy");
});
