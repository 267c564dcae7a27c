// Issue 20 finding 5: the lab hid a 25–48 s outage after most migrations
// (its bridge answered the guests' ARP for the peer with a MAC borrowed from
// a guest's tap, which the migration deleted), and Ferry's probes, which
// stopped when the migration ended, could not see it. Here a real guest with
// a failover NIC (stand-in VF: emulated vmxnet3 with the VF's MAC) and an
// emulated NIC is migrated back and forth in a 2-host lab while an
// independent ping (iputils, bench/lib/pinger.ts) runs beside Ferry's probe
// for the whole test. For every migration and NIC:
// - the outcome is in before the connectivity figures (the watch runs past
//   the end and does not hold the outcome back);
// - Ferry's longest gap and time until stable are those of the independent
//   ping, within 50 ms;
// - no outage after the migration: the NIC answered steadily from before
//   the migration's end, by the independent ping too.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { longestGap, longestOutage, outAfter, stableSince, startPinger } from "../../bench/lib/pinger.ts";
import type { Pinger } from "../../bench/lib/pinger.ts";
import type { Connectivity, MigrationRecord } from "../../src/migration/types.ts";
import { openFabric, pinPeerNeighbor } from "../../src/lab/fabric.ts";
import { reachable } from "../../src/lab/lab-demo.ts";
import { labClient, labDown, labSpec, labUp } from "../../src/lab/lab.ts";
import { vmBootMemsum, vmSerialLog } from "../../src/lab/lab-memcheck.ts";
import { assertMemoryKept, reportMemoryChecks } from "../e2e/helpers.ts";

const NAME = "tsettle";

/** "[from–to] …" of every time of more than 40 ms without a reply, ms since `from`. */
function gapsOf(times: readonly number[], from: number, to: number): string {
  const out: string[] = [];
  let prev = from;
  for (const t of [...times.filter((x) => x > from && x < to), to]) {
    if (t - prev > 40) out.push(`${Math.round(prev - from)}–${Math.round(t - from)}`);
    prev = t;
  }
  return out.join(" ") || "none";
}
const MIGRATIONS = 3;
const TOLERANCE_MS = 50;
/** How far the outage threshold may move when the ping's readings bracket Ferry's. */
const SLACK_MS = 50;
/**
 * A failover NIC's switchover outage runs a little past the migration's end
 * (≈ 100–150 ms here: Finish deems a primary back once QEMU lists it, and the
 * guest passes traffic on it a moment later), and a TCG guest on a busy
 * 2-core host stalls for ≈ 100 ms now and then (seen 3.5 s after an end, on
 * both NICs and by both pings at once). An outage *after* the migration — the
 * lab's old bridge gave 25–48 s — is more than this time out after the end.
 * The controller warns from the same point.
 */
const PAST_END_MS = 1000;
/** A run of replies shorter than this between two gaps of more than 40 ms is a lone reply (it does not end an outage). */
const LONE = { minGapMs: 40, minRunMs: 50 };

process.env["FERRY_CONTEXT"] = `/tmp/ferry-settle-test-context-${process.pid}.json`;
after(async () => {
  await labDown(NAME);
  reportMemoryChecks("settle.test.ts");
});

describe("connectivity until stable, checked by an independent ping", { timeout: 600_000 }, () => {
  it(`${MIGRATIONS} migrations: the outcome first, Ferry's figures within ${TOLERANCE_MS} ms of an independent ping's, no outage after the end`, async (t) => {
    await labDown(NAME).catch(() => undefined);
    const state = await labUp(labSpec({ name: NAME, hosts: 2, configText: "networks: [physnet1, physnet2]\nvfs: { physnet1: 2, physnet2: 2 }\n", tls: false }));
    const client = await labClient(state);
    const vm = await client.createVm({ name: "s1", host: "host1", memoryMiB: 256, nics: [{ network: "physnet1", mode: "failover", policy: "mandatory" }, { network: "physnet2", mode: "emulated", policy: "optional" }] });
    const ips = vm.nics.map((n) => n.address.split("/")[0]!);
    // the peer knows the guest's MACs before it first pings (as the controller's watch pins them), so
    // the guest resolves the peer by its own broadcast ARP, which every port of the switch sees: the
    // old fabric's bridge answered it with a MAC borrowed from one of the guest's taps
    const fabric = await openFabric(NAME);
    assert.ok(fabric);
    for (const [i, n] of vm.nics.entries()) await pinPeerNeighbor(fabric, n.network, ips[i]!, n.mac);
    for (const ip of ips) assert.ok(await reachable(state.netns, ip, 120_000), `the new guest answers on ${ip}`);
    const boot = await vmBootMemsum(state, client, "s1");
    const pingers = new Map<string, Pinger>(vm.nics.map((n, i) => [n.name, startPinger({ netns: state.netns, target: ips[i]! })]));
    t.after(async () => {
      for (const p of pingers.values()) await p.stop();
    });

    const lines: string[] = [];
    const problems: string[] = [];
    for (let i = 1; i <= MIGRATIONS; i++) {
      const current = await client.vm("s1");
      const dest = current.host === "host1" ? "host2" : "host1";
      const started = await client.migrate({ vm: "s1", to: dest });
      assert.equal(started.kind, "started");
      if (started.kind !== "started") return;
      let outcomeFirst = false;
      let r: MigrationRecord & { settling?: boolean; measuring?: boolean };
      for (const until = Date.now() + 240_000; ; ) {
        assert.ok(Date.now() < until, `migration ${i} measured within 240 s`);
        r = await client.migration(started.migration.id, { timeoutMs: 10_000 });
        if (r.phase === "done" && r.settling !== true) {
          if (r.measuring === true) {
            outcomeFirst = true;
            assert.equal(r.connectivity, undefined, "no figures before every NIC is stable");
          } else break;
        }
        await new Promise((x) => setTimeout(x, 150));
      }
      assert.equal(r.outcome, "succeeded", `migration ${i}: ${r.reason ?? ""}`);
      assert.ok(outcomeFirst, `migration ${i}: the outcome was there while the NICs were still watched`);
      // asked once the NICs' watch is over, before the next migration starts: outside every measured window
      await assertMemoryKept(boot, await vmSerialLog(state, client, "s1"), `migration ${i} (${current.host}→${dest})`);

      for (const nic of vm.nics) {
        const c: Connectivity | undefined = r.connectivity?.[nic.name];
        assert.ok(c?.untilStableMs !== undefined && c.endMs !== undefined && c.watchedMs !== undefined && c.outageMs !== undefined && c.settleMs !== undefined && c.outAfterEndMs !== undefined, `migration ${i} ${nic.name}: ${JSON.stringify(c)}`);
        const from = r.createdAt;
        const end = from + c.endMs;
        const to = from + c.watchedMs;
        assert.ok(c.watchedMs >= c.endMs + c.settleMs, `${nic.name} watched ${c.watchedMs} ms: at least the settle window past the end (${c.endMs} + ${c.settleMs})`);
        const times = pingers.get(nic.name)!.times();
        const gap = longestGap(times, from, to);
        // the same holds for lone replies in the middle of a switch-over: one ping catches one the
        // other misses, and its longest gap is split in two; Ferry's must lie between the ping's
        // longest gap and its longest gap with lone replies (runs under 50 ms) not ending it
        const outage = longestOutage(times, from, to, LONE);
        // the two pings sample at different instants (≈ 16 ms apart each, not in step): a gap within one
        // ping interval of the threshold may be an outage to one and not to the other; what Ferry
        // reports must lie between the independent ping's readings with the threshold ± 50 ms (about
        // three intervals: one reply that one ping caught and the other missed lengthens a gap by two,
        // and CI once saw Ferry 88 ms / ping 127 ms for the same outage, either side of a 100 ms threshold).
        // And as for the longest gap, a lone reply one of them caught splits the other's outage in two:
        // Ferry may be early by an outage it split into halves under the threshold (CI: ping 152 ms in
        // one piece, Ferry 86 ms at most, stable after 0 / 1087 ms), and late by one whose lone reply only
        // the ping caught. Two independent pings beside each other agreed within 18 ms on all 24 NIC
        // figures of 12 migrations here; the lone-reply cases are what is left.
        const early = Math.max(c.outageMs + SLACK_MS, 2 * c.outageMs);
        const stableEarly = stableSince(times, from, to, early) - from;
        const stableLate = stableSince(times, from, to, c.outageMs - SLACK_MS, LONE) - from;
        const phases = Object.entries(r.timings).map(([p, x]) => `${p}@${x.startedAt - from}`).join(" ");
        const outEarly = outAfter(times, from, end, to, early);
        const outLate = outAfter(times, from, end, to, c.outageMs - SLACK_MS, LONE);
        const pingOut = outAfter(times, from, end, to, c.outageMs);
        const line = `#${i} ${current.host}→${dest} ${nic.name} (${nic.mode}): longest gap Ferry ${c.longestGapMs} / ping ${Math.round(gap)} ms (${Math.round(outage)} ms ignoring lone replies); stable after Ferry ${c.untilStableMs} / ping ${Math.round(stableSince(times, from, to, c.outageMs) - from)} ms; out after the end Ferry ${c.outAfterEndMs} / ping ${Math.round(pingOut)} ms; end ${c.endMs} ms; ping's gaps ${gapsOf(times, from, to)}; phases ${phases}`;
        lines.push(line);
        const bad = (what: string): void => void problems.push(`${what}: ${line}`);
        // a switch-over is lossy, not a clean cut: a reply Ferry caught and the ping missed splits the
        // ping's longest gap in two (CI: Ferry 254 / ping 387 ms, same stable-after), so the floor is half of it
        if (c.longestGapMs < gap / 2 - TOLERANCE_MS || c.longestGapMs > outage + TOLERANCE_MS) bad(`longest gap more than ${TOLERANCE_MS} ms outside the ping's ${Math.round(gap / 2)}…${Math.round(outage)} ms (half its longest gap … its longest ignoring lone replies)`);
        if (c.untilStableMs === null) bad("Ferry never saw the NIC steady");
        else if (c.untilStableMs < stableEarly - TOLERANCE_MS || c.untilStableMs > stableLate + TOLERANCE_MS) bad(`time until stable differs by more than ${TOLERANCE_MS} ms (the ping's, threshold +${early - c.outageMs}/−${SLACK_MS} ms, lone replies either way: ${Math.round(stableEarly)}…${Math.round(stableLate)} ms)`);
        if (c.outAfterEndMs < outEarly - TOLERANCE_MS || c.outAfterEndMs > outLate + TOLERANCE_MS) bad(`time out after the end differs by more than ${TOLERANCE_MS} ms (the ping's, threshold +${early - c.outageMs}/−${SLACK_MS} ms, lone replies either way: ${Math.round(outEarly)}…${Math.round(outLate)} ms)`);
        // no outage after the migration, by either measure
        if (c.outAfterEndMs > PAST_END_MS) bad(`Ferry saw an outage after the end: out ${c.outAfterEndMs} ms after it`);
        if (pingOut > PAST_END_MS) bad(`the independent ping saw an outage after the end: out ${Math.round(pingOut)} ms after it`);
      }
      const warned = r.warnings.filter((w) => /NIC .*(unreachable|steadily)/.test(w));
      if (warned.length > 0) problems.push(`#${i}: connectivity warnings: ${warned.join("; ")}`);
    }
    t.diagnostic(lines.join("\n"));
    assert.deepEqual(problems, [], lines.join("\n"));
  });
});
