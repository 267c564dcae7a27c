// Guest memory across many cross-host migrations (issue 14 item 5): one real
// guest whose RAM is a shared file (`sharedMemory`, the mapping a zero-copy
// local migration needs) and one with anonymous RAM, 512 MiB each, with a
// failover NIC pinged every ≈ 16 ms, each migrated host1 ↔ host2 between
// apart lab hosts (TLS on the migration network) while two busy loops keep
// both cores loaded (the conditions the corruption showed in); after every
// hop the guest is asked for the checksum of the 8 MiB it filled with random
// data at boot. File-backed guests came out broken on 3 of 22 hops, and on
// the first hop between apart hosts, until Ferry gave them RAM 8 KiB short of
// whole MiB where QEMU before 9.0 runs under TCG (migration/preflight.ts
// tcgDirtySyncExposed: QEMU's fast dirty sync lost guest writes; fixed in
// QEMU 9.0); anonymous guests broke too (the demo's guest, 2026-12-06), and
// every guest created there now gets the trim, both rows here included.
// Prints per guest the hops, outcomes, checksum mismatches;
// JSON in bench/results/memory-hops.json.
//   scripts/rt node bench/memory-hops.ts [--quick]     FERRY_BENCH_ROUNDS=N hops per guest (default 50; --quick 6)
import { spawn } from "node:child_process";
import { startPinger } from "./lib/pinger.ts";
import { follow } from "../src/lab/lab-demo.ts";
import { labClient, labDown, labSpec, labUp } from "../src/lab/lab.ts";
import { vmBootMemsum, vmMemsum } from "../src/lab/lab-memcheck.ts";
import { detectAccel } from "../src/qemu/accel.ts";
import { benchRounds, machine, table, writeResult } from "./lib/report.ts";

const HOPS = benchRounds(50, 6);
const NAME = "bmemhops";

interface Row { guest: string; ramTrimKiB: number | null; hops: number; succeeded: number; other: string[]; compared: number; mismatched: number; msPerHop: number }

async function main(): Promise<void> {
  const { accel } = await detectAccel();
  process.env["FERRY_CONTEXT"] = `/tmp/ferry-bench-memhops-context-${process.pid}.json`;
  await labDown(NAME).catch(() => undefined);
  const state = await labUp(labSpec({ name: NAME, hosts: 2, configText: "networks: [physnet1]\nvfs: { physnet1: 4 }\n", tls: true }), (l) => console.log(`  ${l}`));
  const rows: Row[] = [];
  // two busy loops (`yes` into nothing: a core each), stopped by pid in the finally below
  const hogs = [0, 1].map(() => spawn("yes", [], { stdio: "ignore" }));
  try {
    const client = await labClient(state);
    for (const guest of [{ name: "filebacked", sharedMemory: true }, { name: "anonymous", sharedMemory: false }]) {
      const created = await client.createVm({ name: guest.name, host: "host1", memoryMiB: 512, nics: [{ network: "physnet1", mode: "failover", policy: "mandatory" }], ...(guest.sharedMemory ? { sharedMemory: true } : {}) });
      const boot = await vmBootMemsum(state, client, guest.name);
      const pinger = startPinger({ netns: state.netns, target: created.nics[0]!.address.split("/")[0]! });
      const row: Row = { guest: guest.name, ramTrimKiB: created.ramTrimKiB ?? null, hops: 0, succeeded: 0, other: [], compared: 0, mismatched: 0, msPerHop: 0 };
      const t0 = performance.now();
      for (let i = 1; i <= HOPS; i++) {
        const vm = await client.vm(guest.name);
        const to = vm.host === "host1" ? "host2" : "host1";
        let r: Awaited<ReturnType<typeof client.migrate>>;
        try {
          r = await client.migrate({ vm: guest.name, to });
        } catch (e) {
          // Ferry refuses cross-host migrations of file-backed guests of whole MiB under TCG on QEMU < 9.0
          const m = e instanceof Error ? e.message : String(e);
          row.other.push(`refused: ${m.slice(0, 120)}`);
          console.log(`  ${guest.name}: migration refused: ${m}`);
          break;
        }
        if (r.kind !== "started") throw new Error("the controller answered with a plan");
        const rec = await follow(client, r.migration.id);
        row.hops++;
        if (rec.outcome === "succeeded") row.succeeded++;
        else row.other.push(`#${i} ${rec.outcome} ${rec.code ?? ""}`);
        const now = await vmMemsum(state, client, guest.name).catch((e: unknown) => `unanswered: ${e instanceof Error ? e.message : String(e)}`);
        row.compared++;
        if (now !== boot) {
          row.mismatched++;
          console.log(`  ${guest.name} hop ${i} (${vm.host} → ${to}): checksum ${now}, boot ${boot}`);
          break;
        }
        if (i % 10 === 0) console.log(`  ${guest.name}: ${i} hops, ${row.mismatched} mismatches`);
      }
      row.msPerHop = Math.round((performance.now() - t0) / Math.max(1, row.hops));
      await pinger.stop();
      rows.push(row);
      await client.stopVm(guest.name).catch(() => undefined);
    }
  } finally {
    for (const h of hogs) h.kill("SIGKILL");
    await labDown(NAME);
  }
  console.log(table(["guest RAM", "trim KiB", "hops", "succeeded", "other outcomes", "checksums compared", "different", "ms per hop"],
    rows.map((r) => [r.guest, r.ramTrimKiB ?? "-", r.hops, r.succeeded, r.other.join("; ") || "-", r.compared, r.mismatched, r.msPerHop])));
  console.log(`wrote ${writeResult("memory-hops", { machine: machine(accel), hops: HOPS, rows })}`);
  if (rows.some((r) => r.mismatched > 0)) process.exitCode = 1;
}

await main();
