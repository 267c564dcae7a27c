// What the etcd store costs a migration (issue 15 item 6): two labs up at
// once on this machine, each with two hosts apart and mutual TLS, one with
// one controller on SQLite (the default), one with three controllers on a
// three-member etcd (`ferry lab up --controllers 3 --store etcd`). The same
// VM in each (no-OS guest, 64 MiB, no NIC: the time is orchestration and
// store writes, not RAM or devices), migrated back and forth, the two labs
// interleaved round by round (which goes first alternates). Every migration is sent to the leader (a
// follower would add its forwarding hop). Prints the end-to-end medians, the
// ratio and the per-phase medians from the journal; writes
// bench/results/store-cost.json.
//   scripts/rt node bench/store-cost.ts [--quick]    FERRY_BENCH_ROUNDS=N (default 10; --quick 3)
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ControllerClient } from "../src/api/client.ts";
import { labClient, labDown, labSpec, labUp } from "../src/lab/lab.ts";
import type { LabState } from "../src/lab/lab.ts";
import { follow } from "../src/lab/lab-demo.ts";
import type { Phase } from "../src/migration/types.ts";
import { detectAccel } from "../src/qemu/accel.ts";
import { benchRounds, machine, median, table, writeResult } from "./lib/report.ts";

const ROUNDS = benchRounds(10, 3);
const LABS = [
  { store: "sqlite", name: "bstore-sq", label: "SQLite, 1 controller", controllers: 1 },
  { store: "etcd", name: "bstore-etcd", label: "etcd (3 members), 3 controllers", controllers: 3 },
] as const;

/** A client of the lab's leader (SQLite: its only controller). */
async function leaderClient(state: LabState): Promise<{ client: ControllerClient; leader: string }> {
  const view = await (await labClient(state)).controllers();
  if (!view.leader) throw new Error(`lab ${state.name}: no controller leads (ferry controllers)`);
  return { client: await labClient(state, { only: view.leader.url }), leader: view.leader.url };
}

async function main(): Promise<void> {
  process.env["FERRY_CONTEXT"] = join(tmpdir(), `ferry-bench-context-${process.pid}.json`);
  const { accel } = await detectAccel();
  for (const l of LABS) await labDown(l.name).catch(() => undefined);
  const rows: { label: string; store: string; ms: number[]; phases: Record<string, number[]> }[] = LABS.map((l) => ({ label: l.label, store: l.store, ms: [], phases: {} }));
  try {
    const clients: ControllerClient[] = [];
    for (const l of LABS) {
      const state = await labUp(labSpec({ name: l.name, hosts: 2, controllers: l.controllers, store: l.store, configText: "networks: [physnet1]\nvfs: { physnet1: 2 }\n" }));
      const { client } = await leaderClient(state);
      await client.createVm({ name: "sc", host: "host1", memoryMiB: 64, nics: [], noOs: true });
      clients.push(client);
    }
    for (let i = 0; i < ROUNDS; i++) {
      // the order alternates: the first of a round is not always the same store
      for (const k of i % 2 === 0 ? [0, 1] : [1, 0]) {
        const client = clients[k]!;
        const vm = await client.vm("sc");
        const to = vm.host === "host1" ? "host2" : "host1";
        const t0 = performance.now();
        const started = await client.migrate({ vm: "sc", to });
        if (started.kind !== "started") throw new Error("plan instead of a migration");
        const rec = await follow(client, started.migration.id, () => undefined, 10);
        const ms = performance.now() - t0;
        if (rec.outcome !== "succeeded") throw new Error(`${LABS[k]!.label}: migration ${rec.id}: ${rec.outcome} ${rec.reason ?? ""}`);
        rows[k]!.ms.push(ms);
        for (const [p, t] of Object.entries(rec.timings) as [Phase, { ms?: number } | undefined][]) if (t?.ms !== undefined) (rows[k]!.phases[p] ??= []).push(t.ms);
        console.log(`round ${i + 1}/${ROUNDS} ${LABS[k]!.store}: ${ms.toFixed(0)} ms (${vm.host} → ${to})`);
      }
    }
  } finally {
    for (const l of LABS) await labDown(l.name).catch((e: unknown) => console.error(`lab down ${l.name}: ${e instanceof Error ? e.message : String(e)}`));
  }
  const f = (x: number): string => x.toFixed(0);
  const [sq, et] = rows as [(typeof rows)[number], (typeof rows)[number]];
  console.log(`\nPer-migration cost of the store (${accel}, ${ROUNDS} interleaved rounds, no-OS 64 MiB guest, no NIC, hosts apart, TLS)\n`);
  console.log(table(["store", "median ms", "min–max ms", "÷ SQLite"], rows.map((r) => [r.label, f(median(r.ms)), `${f(Math.min(...r.ms))}–${f(Math.max(...r.ms))}`, (median(r.ms) / median(sq.ms)).toFixed(2)])));
  const phases = Object.keys(sq.phases);
  console.log("\nPer-phase medians (ms, from the journal):");
  console.log(table(["store", ...phases], rows.map((r) => [r.store, ...phases.map((p) => (r.phases[p] ? f(median(r.phases[p])) : "-"))])));
  console.log(`\netcd adds ${f(median(et.ms) - median(sq.ms))} ms per migration (median)`);
  console.log(`wrote ${writeResult("store-cost", { machine: machine(accel), rounds: ROUNDS, results: rows })}`);
}

await main();
