// Connectivity through migrations, per NIC mode, in a lab of two hosts: the
// real test guest with one NIC per mode (each on its own network), migrated
// back and forth; the lab's peer probes every NIC every ≈ 16 ms and the
// controller records the probes lost and the longest gap per NIC. With
// `forwarding: "unmanaged"` the agents do no forwarding-path management
// (DESIGN P10 off: ports learn, nothing pinned), i.e. raw QEMU failover.
// Used by bench/connectivity.ts and the issue-5 acceptance test.
import { FerryError } from "../core/errors.ts";
import type { NicMode } from "../model/vm.ts";
import { follow, reachable } from "./lab-demo.ts";
import { vmBootMemsum, vmMemsum } from "./lab-memcheck.ts";
import { labClient, labDown, labSpec, labUp } from "./lab.ts";

export interface ConnectivitySample {
  forwarding: "managed" | "unmanaged";
  mode: NicMode;
  migration: number;
  outcome: string;
  probes: number;
  lost: number;
  longestGapMs: number;
  downtimeMs: number | null;
  /** The checksum of the memory the guest filled at boot (src/lab/memcheck.ts). */
  bootMemsum: string;
  /** The guest's answer after this migration (equal to bootMemsum unless its memory was damaged), or why it could not be asked. */
  memsum: string;
}

export interface ConnectivityRun {
  /** Lab name (its namespace is ferry-lab-<name>). */
  name: string;
  forwarding: "managed" | "unmanaged";
  modes: readonly NicMode[];
  migrations: number;
  memoryMiB?: number;
  say?: (line: string) => void;
}

/** Bring a lab up, measure `migrations` migrations of one guest, tear the lab down (also on failure). */
export async function measureLabConnectivity(o: ConnectivityRun): Promise<ConnectivitySample[]> {
  const say = o.say ?? (() => undefined);
  const networks = o.modes.map((_, i) => `physnet${i + 1}`);
  await labDown(o.name).catch(() => undefined); // a previous run that crashed
  const configText = `networks: [${networks.join(", ")}]\nvfs: { ${networks.map((n) => `${n}: 2`).join(", ")} }\n`;
  const state = await labUp(labSpec({ name: o.name, hosts: 2, configText, forwarding: o.forwarding }), (l) => say(`  ${l}`));
  const out: ConnectivitySample[] = [];
  try {
    const client = await labClient(state);
    const nics = o.modes.map((mode, i) => ({ network: networks[i]!, mode, policy: mode === "emulated" ? ("optional" as const) : ("mandatory" as const) }));
    const vm = await client.createVm({ name: "conn", host: "host1", memoryMiB: o.memoryMiB ?? 256, nics });
    const addresses = vm.nics.map((n) => n.address.split("/")[0]!);
    /** The NICs (name, mode, address) that do not answer the peer within `timeoutMs`. */
    const silent = async (timeoutMs: number): Promise<string[]> => {
      const out: string[] = [];
      for (const [k, ip] of addresses.entries()) if (!(await reachable(state.netns, ip, timeoutMs))) out.push(`${vm.nics[k]!.name} (${o.modes[k]}, ${ip})`);
      return out;
    };
    const first = await silent(120_000);
    if (first.length > 0) throw new FerryError("FERRY_ERR_TIMEOUT", `lab ${o.name}: the new guest never answered on ${first.join(", ")}; see the agents' logs in ${state.dir}`);
    const boot = await vmBootMemsum(state, client, "conn");
    // a migration that does not succeed (e.g. rolled back when the destination check times out under
    // load) is recorded with its outcome and does not count; a few of them are tolerated
    let succeeded = 0;
    for (let i = 1; succeeded < o.migrations; i++) {
      if (i > o.migrations + 3) throw new FerryError("FERRY_ERR_MIGRATION", `lab ${o.name}: only ${succeeded} of ${i - 1} migrations succeeded; see the controller's log in ${state.dir}`);
      const current = await client.vm("conn");
      const to = current.host === "host1" ? "host2" : "host1";
      const started = await client.migrate({ vm: "conn", to });
      if (started.kind !== "started") throw new FerryError("FERRY_ERR_INTERNAL", "the controller answered with a plan instead of starting the migration");
      const r = await follow(client, started.migration.id);
      // the guest's memory after the migration, whatever its outcome (asked after the NICs' watch)
      const memsum = await vmMemsum(state, client, "conn").catch((e: unknown) => `not asked (${e instanceof Error ? e.message : String(e)})`);
      for (const [k, nic] of r.plan.nics.entries()) {
        const c = r.connectivity?.[nic.name];
        if (!c) continue;
        out.push({ forwarding: o.forwarding, mode: o.modes[k]!, migration: i, outcome: r.outcome ?? "?", probes: c.probes, lost: c.lost, longestGapMs: c.longestGapMs, downtimeMs: r.switchover?.downtimeMs ?? null, bootMemsum: boot, memsum });
      }
      say(`  ${o.forwarding} #${i} ${current.host}→${to}: ${r.outcome}; ${r.plan.nics.map((n) => `${n.name} gap ${r.connectivity?.[n.name]?.longestGapMs ?? "-"} ms`).join(", ")}`);
      if (r.outcome === "succeeded") succeeded++;
      else say(`    (not counted: ${r.reason ?? r.outcome})`);
      // every NIC answers again before the next migration (an ephemeral VF comes back after the switch-over)
      const after = await silent(30_000);
      if (after.length > 0) throw new FerryError("FERRY_ERR_TIMEOUT", `lab ${o.name}: the guest does not answer on ${after.join(", ")} 30 s after migration ${i} (${current.host}→${to}); measured so far: ${JSON.stringify(out)}`);
    }
  } finally {
    await labDown(o.name);
  }
  return out;
}
