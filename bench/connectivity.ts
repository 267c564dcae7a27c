// Connectivity through migrations, per NIC mode: the real test guest with a
// failover, an ephemeral and an emulated NIC (stand-in VFs: emulated vmxnet3
// NICs with the VF's MAC), migrated back and forth between two lab hosts,
// the lab's peer probing every NIC every 10 ms. Once with Ferry's forwarding
// management (DESIGN P10) and once with raw QEMU failover (the lab's agents
// run with `forwarding: unmanaged`: ports learn, nothing pinned), same guest.
//   scripts/rt node bench/connectivity.ts [--quick]      FERRY_BENCH_ROUNDS=N (default 5; --quick 3)
import type { ConnectivitySample } from "../src/lab/lab-connectivity.ts";
import { measureLabConnectivity } from "../src/lab/lab-connectivity.ts";
import { detectAccel } from "../src/qemu/accel.ts";
import { benchRounds, machine, median, table, writeResult } from "./lib/report.ts";

const ROUNDS = benchRounds(5, 3);

async function main(): Promise<void> {
  const { accel } = await detectAccel();
  const say = (l: string): void => console.log(l);
  const samples: ConnectivitySample[] = [];
  const problems: string[] = [];
  // a lab whose guest stops answering is reported (with what it measured before) and the next lab still runs
  const measure = async (forwarding: "managed" | "unmanaged", modes: ("failover" | "ephemeral" | "emulated")[]): Promise<void> => {
    try {
      samples.push(...(await measureLabConnectivity({ name: "bconn", forwarding, modes, migrations: ROUNDS, say })));
    } catch (e) {
      const m = e instanceof Error ? e.message : String(e);
      problems.push(`${forwarding}: ${m}`);
      const partial = /measured so far: (\[.*\])$/.exec(m);
      if (partial) samples.push(...(JSON.parse(partial[1]!) as ConnectivitySample[]));
    }
  };
  await measure("managed", ["failover", "ephemeral", "emulated"]);
  await measure("unmanaged", ["failover"]);
  const groups = [
    { label: "failover, Ferry (P10 forwarding management)", forwarding: "managed", mode: "failover" },
    { label: "ephemeral, Ferry", forwarding: "managed", mode: "ephemeral" },
    { label: "emulated, Ferry", forwarding: "managed", mode: "emulated" },
    { label: "failover, raw QEMU (no forwarding management)", forwarding: "unmanaged", mode: "failover" },
  ] as const;
  const rows = groups.map((g) => {
    const s = samples.filter((x) => x.forwarding === g.forwarding && x.mode === g.mode && x.outcome === "succeeded");
    const gaps = s.map((x) => x.longestGapMs);
    const lost = s.map((x) => x.lost);
    return { ...g, n: s.length, gaps, lost, probes: s.map((x) => x.probes) };
  });
  const mmm = (xs: number[]): string => (xs.length === 0 ? "-" : `${median(xs).toFixed(0)} (${Math.min(...xs)}–${Math.max(...xs)})`);
  console.log(`\nConnectivity through migrations (${accel}; probes every 10 ms; ${ROUNDS} migrations each; median (min–max))\n`);
  console.log(table(["NIC mode", "migrations", "longest gap ms", "probes lost"], rows.map((r) => [r.label, r.n, mmm(r.gaps), mmm(r.lost)])));
  const managed = rows[0]!;
  const raw = rows[3]!;
  if (managed.n > 0 && raw.n > 0) console.log(`\nfailover longest gap, Ferry ÷ raw QEMU failover: ${(median(managed.gaps) / median(raw.gaps)).toFixed(2)}`);
  const failed = new Set(samples.filter((x) => x.outcome !== "succeeded").map((x) => `${x.forwarding}#${x.migration}`));
  if (failed.size > 0) console.log(`not counted (did not succeed, e.g. rolled back under load): ${[...failed].join(", ")}`);
  for (const p of problems) console.log(`PROBLEM: ${p.replace(/; measured so far: .*$/, "")}`);
  console.log(`wrote ${writeResult("connectivity", { machine: machine(accel), rounds: ROUNDS, rows, samples, problems })}`);
  if (problems.length > 0) process.exitCode = 1;
}

await main();
