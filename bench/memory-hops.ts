// Guest memory across many cross-host migrations (issue 14 item 5): one real
// guest whose RAM is a shared file (`sharedMemory`, the mapping a zero-copy
// local migration needs, and the kind that came out corrupted on 3 of 22
// hops, and again on the first hop between apart hosts: Ferry now refuses
// to migrate it between hosts, which this bench shows), and one with anonymous RAM, each migrated host1 ↔ host2 between
// apart lab hosts (TLS on the migration network); after every hop the guest
// is asked for the checksum of the 8 MiB it filled with random data at boot.
// Prints per guest the hops, outcomes, checksum mismatches and the heartbeat;
// JSON in bench/results/memory-hops.json.
//   scripts/rt node bench/memory-hops.ts [--quick]     FERRY_BENCH_ROUNDS=N hops per guest (default 50; --quick 6)
import { follow } from "../src/lab/lab-demo.ts";
import { labClient, labDown, labSpec, labUp } from "../src/lab/lab.ts";
import { vmBootMemsum, vmMemsum } from "../src/lab/lab-memcheck.ts";
import { detectAccel } from "../src/qemu/accel.ts";
import { benchRounds, machine, table, writeResult } from "./lib/report.ts";

const HOPS = benchRounds(50, 6);
const NAME = "bmemhops";

interface Row { guest: string; hops: number; succeeded: number; other: string[]; compared: number; mismatched: number; msPerHop: number }

async function main(): Promise<void> {
  const { accel } = await detectAccel();
  process.env["FERRY_CONTEXT"] = `/tmp/ferry-bench-memhops-context-${process.pid}.json`;
  await labDown(NAME).catch(() => undefined);
  const state = await labUp(labSpec({ name: NAME, hosts: 2, configText: "networks: [physnet1]\nvfs: { physnet1: 4 }\n", tls: true }), (l) => console.log(`  ${l}`));
  const rows: Row[] = [];
  try {
    const client = await labClient(state);
    for (const guest of [{ name: "filebacked", sharedMemory: true }, { name: "anonymous", sharedMemory: false }]) {
      await client.createVm({ name: guest.name, host: "host1", memoryMiB: 256, nics: [{ network: "physnet1", mode: "failover", policy: "mandatory" }], ...(guest.sharedMemory ? { sharedMemory: true } : {}) });
      const boot = await vmBootMemsum(state, client, guest.name);
      const row: Row = { guest: guest.name, hops: 0, succeeded: 0, other: [], compared: 0, mismatched: 0, msPerHop: 0 };
      const t0 = performance.now();
      for (let i = 1; i <= HOPS; i++) {
        const vm = await client.vm(guest.name);
        const to = vm.host === "host1" ? "host2" : "host1";
        let r: Awaited<ReturnType<typeof client.migrate>>;
        try {
          r = await client.migrate({ vm: guest.name, to });
        } catch (e) {
          // Ferry refuses cross-host migrations of file-backed guests (docs/known-issues.md)
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
        }
        if (i % 10 === 0) console.log(`  ${guest.name}: ${i} hops, ${row.mismatched} mismatches`);
      }
      row.msPerHop = Math.round((performance.now() - t0) / Math.max(1, row.hops));
      rows.push(row);
      await client.stopVm(guest.name).catch(() => undefined);
    }
  } finally {
    await labDown(NAME);
  }
  console.log(table(["guest RAM", "hops", "succeeded", "other outcomes", "checksums compared", "different", "ms per hop"],
    rows.map((r) => [r.guest, r.hops, r.succeeded, r.other.join("; ") || "-", r.compared, r.mismatched, r.msPerHop])));
  console.log(`wrote ${writeResult("memory-hops", { machine: machine(accel), hops: HOPS, rows })}`);
  if (rows.some((r) => r.mismatched > 0)) process.exitCode = 1;
}

await main();
