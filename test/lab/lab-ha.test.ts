// A lab with three controllers on etcd (issue 15 item 5), all through the
// CLI as a user drives it: `ferry lab up --controllers 3 --store etcd` (three
// etcd members and three controllers, one leader), a VM (no-OS guest: nothing
// to boot), `ferry lab kill controller` kills the leader, `ferry controllers`
// names a new leader with a higher term within seconds, and `ferry migrate`
// through the lab's context succeeds afterwards (the context lists every
// controller; the agents heartbeat on to the survivors). `ferry lab start
// controller-N` brings the killed one back as a follower; `lab down` leaves no
// etcd process and no data.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { access, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";
import { labDir, readLabState } from "../../src/lab/lab.ts";
import type { LabState } from "../../src/lab/lab.ts";
import type { ControllersViewT } from "../../src/wire/controllers.ts";
import { ownedAlive } from "../../src/lab/lab-process.ts";

const exec = promisify(execFile);
const NAME = "ha3";
const FERRY = join(import.meta.dirname, "..", "..", "bin", "ferry");
/** The lab's election lease is 2 s: a new leader within a few seconds of the kill. */
const TAKEOVER_LIMIT_MS = 8_000;

describe("lab with three controllers on etcd", { timeout: 300_000 }, () => {
  const env = { ...process.env, FERRY_CONTEXT: `/tmp/ferry-ha3-context-${process.pid}.json` };
  const ferry = async (...args: string[]): Promise<string> => (await exec(FERRY, args, { env, timeout: 120_000 })).stdout;
  const json = async <T>(...args: string[]): Promise<T> => JSON.parse(await ferry(...args, "--json")) as T;
  interface Component { name: string; kind: string; pid: number; url: string; alive: boolean; role?: string; term?: number }
  interface Status { store: string; components: Component[]; etcd: { name: string; pid: number; alive: boolean; dataDir: string }[] }
  let lab: LabState;
  const config = `/tmp/ferry-ha3-lab-${process.pid}.yaml`;

  before(async () => {
    await ferry("lab", "down", "--name", NAME);
    await writeFile(config, "networks: [physnet1]\nvfs: { physnet1: 2 }\n");
    const out = await ferry("lab", "up", "--name", NAME, "--hosts", "2", "--controllers", "3", "--store", "etcd", "--config", config);
    assert.match(out, /3 controllers on etcd \(3 members\)/);
    const s = await readLabState(NAME);
    assert.ok(s);
    lab = s;
  });
  after(async () => {
    if (!process.env["FERRY_KEEP_LAB"]) await ferry("lab", "down", "--name", NAME).catch(() => undefined);
    await rm(config, { force: true });
  });

  it("lab status: three controllers (one leader with its term, two followers) and three etcd members, all running", async () => {
    const s = await json<Status>("lab", "status", "--name", NAME);
    assert.equal(s.store, "etcd");
    const ctls = s.components.filter((c) => c.kind === "controller");
    assert.deepEqual(ctls.map((c) => c.name), ["controller-1", "controller-2", "controller-3"]);
    assert.ok(ctls.every((c) => c.alive));
    assert.deepEqual(ctls.map((c) => c.role).sort(), ["follower", "follower", "leader"]);
    assert.ok((ctls.find((c) => c.role === "leader")!.term ?? 0) >= 1);
    assert.equal(new Set(ctls.map((c) => c.url)).size, 3, "each controller its own address");
    assert.deepEqual(s.etcd.map((m) => [m.name, m.alive]), [["etcd-1", true], ["etcd-2", true], ["etcd-3", true]]);
    const table = await ferry("lab", "status", "--name", NAME);
    assert.match(table, /controller-\d .* leader \(term \d+\)/);
    assert.match(table, /etcd-1 .* etcd member/);
  });

  it("kill the leader: a new leader with a higher term within seconds, and a migration through the CLI afterwards succeeds", async () => {
    const tc = Date.now();
    // no NIC: a no-OS guest never answers the lab's connectivity probes, and 'ferry migrate' would wait the controller's
    // 60 s watch for figures that cannot come
    await ferry("vm", "create", "h1", "--host", "host1", "--memory", "64", "--guest", "no-os");
    process.stdout.write(`# vm create took ${Date.now() - tc} ms\n`);
    const before = await json<ControllersViewT>("controllers");
    assert.equal(before.store, "etcd");
    assert.equal(before.members.length, 3);
    assert.ok(before.leader);
    const killedOut = await ferry("lab", "kill", "controller", "--name", NAME);
    const t0 = Date.now();
    const killed = lab.controllers!.find((c) => c.url === before.leader!.url)!;
    assert.match(killedOut, new RegExp(`killed ${killed.name} \\(pid \\d+\\), the leader of term ${before.leader.term}`));
    // the CLI's context still works with the leader gone: each call goes on to a controller that answers
    let after: ControllersViewT | undefined;
    while (Date.now() - t0 < TAKEOVER_LIMIT_MS) {
      const v = await json<ControllersViewT>("controllers").catch(() => undefined);
      if (v?.leader && v.leader.url !== killed.url) {
        after = v;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const takeoverMs = Date.now() - t0;
    assert.ok(after?.leader, `a new leader within ${TAKEOVER_LIMIT_MS} ms of the kill (waited ${takeoverMs} ms)`);
    assert.ok(after.leader.term > before.leader.term, `the new term ${after.leader.term} is above ${before.leader.term}`);
    process.stdout.write(`# takeover seen by 'ferry controllers' ${takeoverMs} ms after 'ferry lab kill controller'; term ${before.leader.term} -> ${after.leader.term}\n`);
    const s = await json<Status>("lab", "status", "--name", NAME);
    assert.equal(s.components.find((c) => c.name === killed.name)?.alive, false);
    assert.equal(s.components.find((c) => c.role === "leader")?.url, after.leader.url);

    // the hosts heartbeat on (to the survivors) and the migration goes through the new leader
    const t1 = Date.now();
    let hosts: { name: string; state: string }[] = [];
    while (Date.now() - t1 < 20_000) {
      hosts = await json<{ name: string; state: string }[]>("hosts").catch(() => []);
      if (hosts.length === 2 && hosts.every((h) => h.state === "up")) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.deepEqual(hosts.map((h) => [h.name, h.state]), [["host1", "up"], ["host2", "up"]]);
    const t2 = Date.now();
    const rec = await json<{ outcome: string; destination: string; runsOn: { host: string } | null }>("migrate", "h1", "--to", "host2");
    process.stdout.write(`# hosts up ${t2 - t1} ms after the takeover; the migration took ${Date.now() - t2} ms\n`);
    assert.equal(rec.outcome, "succeeded");
    assert.equal(rec.runsOn?.host, "host2");
    const vm = await json<{ host: string; state: string }>("vm", "show", "h1");
    assert.deepEqual([vm.host, vm.state], ["host2", "running"]);

    // the killed controller comes back as a follower
    const t3 = Date.now();
    await ferry("lab", "start", killed.name, "--name", NAME);
    process.stdout.write(`# 'ferry lab start ${killed.name}' took ${Date.now() - t3} ms\n`);
    const back = await json<Status>("lab", "status", "--name", NAME);
    const k = back.components.find((c) => c.name === killed.name);
    assert.deepEqual([k?.alive, k?.role], [true, "follower"]);
  });

  it("lab down stops the etcd members by pid and removes their data", async () => {
    const s = await json<Status>("lab", "status", "--name", NAME);
    const pids = [...s.components.map((c) => c.pid), ...s.etcd.map((m) => m.pid)];
    await ferry("lab", "down", "--name", NAME);
    const left: number[] = [];
    for (const pid of pids) if (await ownedAlive(pid, labDir(NAME))) left.push(pid);
    assert.deepEqual(left, [], "no lab process left (a zombie not yet reaped by init is gone)");
    await assert.rejects(access(join(labDir(NAME), "etcd")), "the etcd data is gone");
  });
});
