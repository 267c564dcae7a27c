// Stale operations (issue 20, Deliver 2): old cancels and old agent step
// requests, replayed after later migrations, change nothing. A no-OS VM
// goes host-a → host-b (A), back (B), then is migrated to host-a with the
// destination check failing (R, rolled back), and to host-b again (C); then:
//   - `migration cancel` of A, B and R through the controller;
//   - every step request the controller sent the agents for A, B and R
//     (recorded at the proxy in front of each agent: begin, prepare,
//     perform, precheck, switchover, finish, confirm, cancel, abort — the
//     very bytes, token included) sent again, in protocol order;
//   - `vm start` of the running VM.
// After each group the VM must still run in C's instance on host-b and
// nowhere else: one QEMU process with its UUID in /proc, the VM record and
// the instances unchanged, every lease held by a running instance (FaultCluster.check);
// at the end a new migration must still succeed.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { FaultCluster } from "./cluster.ts";
import type { HttpRequest } from "./observe.ts";
import { qemuPidsOf } from "./observe.ts";
import { MATRIX_DEADLINES } from "./plan.ts";
import type { TestVm } from "./points.ts";
import { createVm, deadlinesFor } from "./points.ts";

const STEP_ORDER = ["begin", "prepare", "perform", "cancel", "precheck", "switchover", "finish", "confirm", "abort"];
const d = MATRIX_DEADLINES;

describe("stale operations after later migrations", { timeout: 300_000 }, () => {
  let c: FaultCluster;
  let vm: TestVm;
  const ids: Record<"A" | "B" | "R" | "C", string> = { A: "", B: "", R: "", C: "" };
  let where = { host: "", instanceId: "" };
  const answers: string[] = [];

  /** The VM still runs exactly where C put it, and every invariant holds. */
  const unchanged = async (what: string): Promise<void> => {
    const rec = await c.api.vm(vm.name);
    assert.deepEqual({ state: rec.state, host: rec.host, instanceId: rec.instanceId }, { state: "running", ...where }, `${what}: the VM record moved`);
    assert.equal((await qemuPidsOf(vm.uuid)).length, 1, `${what}: QEMU processes of the VM in /proc`);
    assert.deepEqual(await c.check(vm, null), [], what);
    assert.deepEqual((await c.instancesOf(vm.uuid)).map((i) => `${i.host}/${i.instanceId}`), [`${where.host}/${where.instanceId}`], `${what}: instances`);
  };

  const migrate = async (to: string, deadlines: Record<string, number> = deadlinesFor("no-os")): Promise<string> => {
    const r = await c.api.migrate({ vm: vm.name, to, deadlines });
    assert.equal(r.kind, "started");
    const id = r.kind === "started" ? r.migration.id : "";
    await c.waitDone(id);
    return id;
  };

  before(async () => {
    c = await FaultCluster.start({
      hosts: [{ name: "host-a", vfs: 2 }, { name: "host-b", vfs: 2 }], record: true,
      deadlines: `{ unplugMs: ${d.unplugMs}, convergeMs: ${d.convergeMs}, precheckMs: ${d.precheckMs}, primaryBackMs: ${d.primaryBackMs}, stepMs: ${d.stepMs} }`,
    });
    vm = await createVm(c, "no-os", "host-a", "stale");
    ids.A = await migrate("host-b");
    ids.B = await migrate("host-a");
    await c.arm("host-b", "precheck-fail", { once: true });
    ids.R = await migrate("host-b");
    assert.equal((await c.api.migration(ids.R)).outcome, "rolled-back");
    ids.C = await migrate("host-b");
    const rec = await c.api.vm(vm.name);
    where = { host: rec.host, instanceId: rec.instanceId! };
    assert.equal(where.host, "host-b");
    await unchanged("after A, B, R, C");
  });

  after(async () => {
    if (answers.length > 0) process.stdout.write(`\nreplayed step requests and their answers:\n${answers.map((a) => `  ${a}`).join("\n")}\n`);
    await c?.close();
  });

  it("cancelling ended migrations (succeeded and rolled back) changes nothing", async () => {
    for (const k of ["A", "B", "R"] as const) {
      const r = await c.api.cancelMigration(ids[k]).then((x) => JSON.stringify(x), (e: unknown) => `refused: ${e instanceof Error ? e.message : String(e)}`);
      answers.push(`controller cancel ${k} (${ids[k]}): ${r.slice(0, 160)}`);
      await unchanged(`cancel of ${k}`);
    }
    assert.equal((await c.api.migration(ids.C)).outcome, "degraded", "C's record is untouched");
  });

  it("replayed agent step requests of ended migrations change nothing", async () => {
    const sent: { host: string; step: string; key: string; req: HttpRequest }[] = [];
    for (const a of c.agents.values()) {
      for (const req of a.inbound?.requests() ?? []) {
        const m = /^\/v1\/migrations\/([^/]+)\/([a-z-]+)$/.exec(req.path);
        const key = (Object.keys(ids) as (keyof typeof ids)[]).find((k) => ids[k] === m?.[1]);
        if (req.method === "POST" && m && key !== undefined && key !== "C") sent.push({ host: a.name, step: m[2]!, key, req });
      }
    }
    const steps = new Set(sent.map((s) => s.step));
    for (const s of ["begin", "prepare", "perform", "precheck", "switchover", "finish", "confirm", "abort"]) assert.ok(steps.has(s), `a recorded ${s} request to replay (recorded: ${[...steps].join(", ")})`);
    for (const k of ["A", "B", "R"] as const) {
      const mine = sent.filter((s) => s.key === k).sort((x, y) => STEP_ORDER.indexOf(x.step) - STEP_ORDER.indexOf(y.step));
      for (const s of mine) {
        const a = c.agent(s.host);
        const headers = Object.fromEntries(Object.entries(s.req.headers).filter(([h]) => h === "authorization" || h === "content-type"));
        const res = await fetch(`${a.proc.url}${s.req.path}`, { method: "POST", headers, ...(s.req.body === "" ? {} : { body: s.req.body }), signal: AbortSignal.timeout(60_000) })
          .then(async (r) => `${r.status} ${(await r.text()).slice(0, 140)}`, (e: unknown) => `no answer: ${String(e)}`);
        answers.push(`${k} ${s.step} → ${s.host}: ${res}`);
        await unchanged(`replayed ${k} ${s.step} to ${s.host}`);
      }
    }
  });

  it("vm start of the running VM is refused and starts nothing; a new migration still succeeds", async () => {
    const r = await c.api.startVm(vm.name).then(() => "started", (e: unknown) => `refused: ${e instanceof Error ? e.message : String(e)}`);
    answers.push(`vm start: ${r.slice(0, 160)}`);
    await unchanged("vm start");
    assert.match(r, /^refused/);
    const id = await migrate("host-a");
    const rec = await c.api.migration(id);
    assert.ok(rec.outcome === "degraded" || rec.outcome === "succeeded", `${rec.outcome ?? ""}: ${rec.code ?? ""} ${rec.reason ?? ""}`);
    assert.equal((await qemuPidsOf(vm.uuid)).length, 1);
    assert.deepEqual(await c.check(vm, rec), []);
  });
});
