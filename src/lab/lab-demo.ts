// `npm run demo` / `ferry demo`: a 3-host lab, a VM with a failover NIC on
// physnet1 (mandatory) and an ephemeral NIC on physnet2 (optional), migrated
// host1 → host2 → host3 → host1, then once more with replug-fail armed on the
// destination to show a recovery; one table row per migration, measured by
// the lab's peer probing the guest every ≈ 16 ms, and the guest's memory
// checked against the checksum it printed at boot after every migration. The
// lab is torn down at the end.
// Always with mutual TLS (whatever the lab default), and it says so.
import type { ControllerClient } from "../api/client.ts";
import { stableText } from "../api/connectivity-text.ts";
import { systemClock } from "../core/clock.ts";
import { FerryError } from "../core/errors.ts";
import { pollUntil } from "../core/poll.ts";
import { run } from "../core/run.ts";
import type { MigrationRecord } from "../migration/types.ts";
import { labClient, labDown, labFault, labSpec, labUp } from "./lab.ts";
import { vmBootMemsum, vmMemsum } from "./lab-memcheck.ts";

const NAME = "demo";

export interface DemoRow {
  n: number;
  from: string;
  to: string;
  outcome: string;
  /** The outcome the demo expects: "succeeded", or "recovered" for the hop with replug-fail armed. */
  expected: string;
  runsOn: string;
  downtimeMs: number | null;
  totalMs: number;
  /** The failover NIC answered the peer after the migration (within 30 s). */
  reachableAfter: boolean;
  /** The guest's memory check after the migration: "same" (the checksum it printed at boot), "DIFFERENT", or why it could not be asked. */
  memory: string;
  nics: { name: string; mode: string; lost: string; gapMs: string; stable: string; vf: string }[];
}

/** Whether the guest at `ip` answers a ping from the lab's peer within `timeoutMs`. */
export async function reachable(netns: string, ip: string, timeoutMs: number): Promise<boolean> {
  // no pause between pings: each waits up to 1 s for its reply
  const up = await pollUntil(systemClock, { timeoutMs, everyMs: 0 }, async () => {
    const r = await run("ip", ["netns", "exec", netns, "ping", "-c", "1", "-W", "1", ip], { allowFailure: true, timeoutMs: 5_000 });
    return r.code === 0 ? true : undefined;
  });
  return up ?? false;
}

/** How often the record is read when the event stream dropped before the migration was done. */
const FALLBACK_POLL_MS = 1_000;

/**
 * Follow a migration until it is done, settled and its connectivity measured
 * (every NIC steady past the end); `say` hears each new phase. Phases come
 * from the controller's event stream; the record is read when the migration is
 * done, and polled every `pollMs` while the controller still settles the VM
 * or measures connectivity (no event says when that ends). Should the stream
 * drop first, the record is polled every second instead.
 */
export async function follow(client: ControllerClient, id: string, say: (s: string) => void = () => undefined, pollMs = 150, timeoutMs = 900_000): Promise<MigrationRecord> {
  const start = systemClock.monotonic();
  const timedOut = (): FerryError => new FerryError("FERRY_ERR_TIMEOUT", `migration ${id} did not finish within ${timeoutMs} ms; see 'ferry migrations ${id}' and the lab's logs`);
  let last = "";
  const phase = (p: string): void => {
    if (p === last) return;
    say(`    ${p}`);
    last = p;
  };
  const deadline = systemClock.timeout(timeoutMs);
  const done = new AbortController();
  await client
    .events(
      (e) => {
        if (done.signal.aborted || e.type !== "phase" || e.migrationId !== id) return;
        phase(e.from);
        phase(e.to);
        if (e.to === "done") done.abort();
      },
      { follow: true, signal: AbortSignal.any([done.signal, deadline]) },
    )
    .catch(() => undefined); // the stream dropped: the record is polled below
  if (deadline.aborted) throw timedOut();
  const r = await pollUntil(systemClock, { timeoutMs: timeoutMs - (systemClock.monotonic() - start), everyMs: done.signal.aborted ? pollMs : FALLBACK_POLL_MS }, async () => {
    const rec = await client.migration(id, { timeoutMs: 10_000 });
    phase(rec.phase);
    return rec.phase === "done" && rec.settling !== true && rec.measuring !== true ? rec : undefined;
  });
  if (r === undefined) throw timedOut();
  return r;
}

function row(n: number, r: MigrationRecord, expected: string): DemoRow {
  return {
    n,
    expected,
    from: r.plan.source.host,
    to: r.plan.destination.host,
    outcome: r.outcome ?? "?",
    runsOn: r.runsOn?.host ?? "UNKNOWN",
    downtimeMs: r.switchover?.downtimeMs ?? null,
    totalMs: r.updatedAt - r.createdAt,
    reachableAfter: false,
    memory: "-",
    nics: r.plan.nics.map((p) => {
      const c = r.connectivity?.[p.name];
      const after = r.nics.find((x) => x.name === p.name)?.vf;
      return {
        name: p.name,
        mode: p.mode,
        lost: c ? `${c.lost}/${c.probes}` : "-",
        gapMs: c ? String(c.longestGapMs) : "-",
        stable: stableText(c),
        vf: `${p.before ? `${p.before.host}:${p.before.vf}` : "-"} → ${after ? `${after.host}:${after.vf}` : "none"}`,
      };
    }),
  };
}

export function renderRows(rows: readonly DemoRow[]): string {
  const head = ["#", "route", "outcome", "runs on", "downtime", "total", "memory", "NIC", "mode", "probes lost", "longest gap", "stable after", "VF before → after"];
  const lines: string[][] = [];
  for (const r of rows) {
    r.nics.forEach((nic, i) => {
      lines.push(i === 0
        ? [String(r.n), `${r.from}→${r.to}`, r.outcome, r.runsOn, r.downtimeMs === null ? "-" : `${r.downtimeMs} ms`, `${r.totalMs} ms`, r.memory, nic.name, nic.mode, nic.lost, `${nic.gapMs} ms`, nic.stable, nic.vf]
        : ["", "", "", "", "", "", "", nic.name, nic.mode, nic.lost, `${nic.gapMs} ms`, nic.stable, nic.vf]);
    });
  }
  const w = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  return [head, ...lines].map((l) => l.map((c, i) => c.padEnd(w[i]!)).join("  ").trimEnd()).join("\n");
}

export async function runLabDemo(say: (s: string) => void = (s) => console.log(s)): Promise<DemoRow[]> {
  await labDown(NAME).catch(() => undefined); // a previous demo that crashed
  say("Ferry demo: a 3-host lab on this machine (stand-in VFs: emulated vmxnet3 NICs with the VF's MAC; no SR-IOV hardware here)");
  // TLS on whatever the lab's default: the demo shows the deployment as it should run
  const state = await labUp(labSpec({ name: NAME, hosts: 3, tls: true }), (l) => say(`  ${l}`));
  say(`mutual TLS: every component serves HTTPS and accepts only clients with a certificate from the lab's CA (${state.tls?.ca ?? "?"})`);
  const rows: DemoRow[] = [];
  try {
    const client = await labClient(state);
    say("creating VM web on host1: net0 physnet1 failover mandatory, net1 physnet2 ephemeral optional");
    const vm = await client.createVm({ name: "web", host: "host1", memoryMiB: 256, nics: [{ network: "physnet1", mode: "failover", policy: "mandatory" }, { network: "physnet2", mode: "ephemeral", policy: "optional" }] });
    for (const nic of vm.nics) say(`  ${nic.name}: ${nic.network} ${nic.mode}/${nic.policy}, MAC ${nic.mac}, ${nic.address}, VF ${nic.vf ?? "-"}`);
    if (!(await reachable(state.netns, vm.nics[0]!.address.split("/")[0]!, 90_000))) throw new Error("the new guest never answered on its failover NIC");
    say("  the guest answers");
    const boot = await vmBootMemsum(state, client, "web");
    say(`  memory check: the guest filled 8 MiB of its RAM with random data at boot, md5 ${boot}; it is asked again after every migration`);
    const hops: { to: string; fault?: string; expected: string }[] = [
      { to: "host2", expected: "succeeded" }, { to: "host3", expected: "succeeded" }, { to: "host1", expected: "succeeded" },
      { to: "host2", fault: "replug-fail", expected: "recovered" },
    ];
    for (const [i, hop] of hops.entries()) {
      if (hop.fault) {
        await labFault(NAME, hop.to, hop.fault, true);
        say(`armed fault ${hop.fault} on ${hop.to} (once): the NICs will not come back after the switch-over`);
      }
      const current = await client.vm("web");
      say(`migration ${i + 1}: web ${current.host} → ${hop.to}`);
      const started = await client.migrate({ vm: "web", to: hop.to });
      if (started.kind !== "started") throw new Error("the controller answered with a plan");
      const r = await follow(client, started.migration.id, say);
      const done = row(i + 1, r, hop.expected);
      rows.push(done);
      say(`  ${r.outcome}: runs on ${r.runsOn?.host ?? "?"}${r.reason ? ` (${r.reason})` : ""}`);
      done.reachableAfter = await reachable(state.netns, vm.nics[0]!.address.split("/")[0]!, 30_000);
      if (!done.reachableAfter) say(`  WARNING: the guest does not answer on its failover NIC after migration ${i + 1}`);
      const now = await vmMemsum(state, client, "web").catch((e: unknown) => `not asked (${e instanceof Error ? e.message : String(e)})`);
      done.memory = now === boot ? "same" : now.startsWith("not asked") ? now : "DIFFERENT";
      say(`  memory check: md5 ${now} ${now === boot ? "= the boot checksum" : `!= the boot checksum ${boot}`}`);
    }
    say("");
    say(renderRows(rows));
    return rows;
  } finally {
    say("");
    const down = await labDown(NAME);
    say(`lab torn down (${down.stopped} processes stopped, namespace removed)`);
  }
}

/**
 * What went wrong in a demo run, one line per problem (none: the demo showed
 * what it promises): an outcome other than the one the hop expects, a guest
 * that stopped answering on its failover NIC after a migration that should
 * have succeeded, or guest memory that is not what the guest wrote at boot. `ferry demo` fails on any of them.
 */
export function demoProblems(rows: readonly DemoRow[]): string[] {
  const out: string[] = [];
  for (const r of rows) {
    if (r.outcome !== r.expected) out.push(`migration ${r.n} (${r.from}→${r.to}) ended ${r.outcome}, expected ${r.expected}`);
    // every hop the demo makes keeps the guest running: where it went (succeeded) or back on the source (recovered)
    if (!r.reachableAfter) out.push(`migration ${r.n} (${r.from}→${r.to}): the guest did not answer on its failover NIC within 30 s after it (it runs on ${r.runsOn})`);
    if (r.memory !== "same") out.push(`migration ${r.n} (${r.from}→${r.to}): the guest's memory check: ${r.memory === "DIFFERENT" ? "the checksum differs from the boot checksum (guest memory corrupted)" : r.memory}`);
  }
  return out;
}

/** Whether this machine can run the lab (root, network namespaces). */
export async function canRunLab(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "not root: the lab needs network namespaces and bridges";
  const r = await run("ip", ["netns", "list"], { allowFailure: true }).catch((e: unknown) => ({ code: 1, stdout: "", stderr: String(e) }));
  if (r.code !== 0) return `network namespaces unavailable: ${r.stderr.trim()}`;
  return undefined;
}
