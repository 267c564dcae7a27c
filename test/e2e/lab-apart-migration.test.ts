// Migrations between hosts that are apart (issue 14): each lab host in its
// own namespaces, the destination's QEMU listening on its migration address
// (never 127.0.0.1), the stream TLS with the Ferry CA, and the destination
// admitting only the certificate of the source the controller planned.
// Refusals are staged as an attacker or a misconfigured host would present
// them: host1's QEMU credentials (its laid-out dir, which QEMU reads at every
// migration) replaced by another host's valid certificate, then by one from
// another CA. Each must end rolled back with an outcome that says why, the
// guest running on host1 with its memory intact.
import assert from "node:assert/strict";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { caPaths, initCa, issueCert } from "../../src/core/ca.ts";
import { run } from "../../src/core/run.ts";
import type { ControllerClient } from "../../src/api/client.ts";
import { follow, reachable } from "../../src/lab/lab-demo.ts";
import { hostPath, labClient, labDown, labSpec, labUp } from "../../src/lab/lab.ts";
import type { LabState } from "../../src/lab/lab.ts";
import { vmBootMemsum, vmMemsum } from "../../src/lab/lab-memcheck.ts";
import type { MigrationRecord } from "../../src/migration/types.ts";
import { tcgDirtySyncExposed } from "../../src/migration/preflight.ts";

const NAME = "apmig";
/** Where an apart host's agent lays out QEMU's migration credentials (runDir /run/ferry). */
const CREDS = "/run/ferry/migration-tls";

describe("migrations between apart hosts over TLS", { timeout: 400_000 }, () => {
  let lab: LabState;
  let client: ControllerClient;
  let boot = "";
  let otherCa = "";
  const memchecks = { compared: 0, different: 0 };

  const migrate = async (to: string, during?: () => Promise<void>): Promise<MigrationRecord> => {
    const r = await client.migrate({ vm: "t1", to });
    assert.equal(r.kind, "started");
    if (r.kind !== "started") throw new Error("plan");
    const watching = during?.();
    const rec = await follow(client, r.migration.id);
    await watching;
    return rec;
  };
  const memoryKept = async (what: string): Promise<void> => {
    const now = await vmMemsum(lab, client, "t1");
    memchecks.compared++;
    if (now !== boot) memchecks.different++;
    assert.equal(now, boot, `${what}: the guest's memory checksum is the one it printed at boot`);
  };
  /** The record's switch-over timeline, from real QEMU events: the pause split into deciding and device state, the failover NIC unplugged before STOP and back after RESUME. */
  const switchoverTold = (rec: MigrationRecord): void => {
    const t = rec.switchoverTimeline;
    const s = t?.source;
    const d = t?.destination;
    const b = t?.breakdown;
    assert.ok(s && d && b, `a switch-over timeline: ${JSON.stringify(t)}`);
    const [migrate, stopped, cont, resumed] = [s.migrateSentAtMs, s.stoppedAtMs, s.continueSentAtMs, d.resumedAtMs];
    assert.ok(migrate !== undefined && stopped !== undefined && cont !== undefined && resumed !== undefined, JSON.stringify(t));
    assert.ok(migrate < stopped && stopped <= cont && cont < resumed, `migrate sent < STOP ≤ migrate-continue sent < RESUME: ${JSON.stringify(t)}`);
    // the lab's hosts share one clock: the pause is real time, and its two parts add up to it
    assert.ok(b.pausedMs !== undefined && b.pausedMs > 0 && b.pausedMs < 30_000, `pausedMs ${b.pausedMs}`);
    assert.ok(Math.abs((b.decisionMs ?? NaN) + (b.deviceStateMs ?? NaN) - b.pausedMs) < 0.01, JSON.stringify(b));
    const [unplug] = s.unplugs ?? [];
    assert.ok(unplug && unplug.unpluggedAtMs > migrate && unplug.unpluggedAtMs < stopped, `the guest released its primary before the source stopped: ${JSON.stringify(s)}`);
    const [back] = d.primaries ?? [];
    assert.ok(back && back.nic === unplug.nic && back.backAtMs > resumed, `the primary came back after RESUME: ${JSON.stringify(d)}`);
  };
  const creds = (host: string, file: string): string => hostPath(lab, host, join(CREDS, file));

  before(async () => {
    process.env["FERRY_CONTEXT"] = `/tmp/ferry-apmig-context-${process.pid}.json`;
    await labDown(NAME);
    lab = await labUp(labSpec({ name: NAME, hosts: 3, configText: "networks: [physnet1]\nvfs: { physnet1: 2 }\n", apart: true, tls: true }));
    client = await labClient(lab);
    const vm = await client.createVm({ name: "t1", host: "host1", memoryMiB: 256, nics: [{ network: "physnet1", mode: "failover", policy: "mandatory" }] });
    assert.ok(await reachable(lab.netns, vm.nics[0]!.address.split("/")[0]!, 90_000), "the guest answers the peer");
    boot = await vmBootMemsum(lab, client, "t1");
    otherCa = await mkdtemp(join(tmpdir(), "ferry-other-ca-"));
    await initCa(otherCa);
    await issueCert(otherCa, { name: "host1" });
  });
  after(async () => {
    process.stdout.write(`lab-apart-migration: guest memory checked ${memchecks.compared} times, ${memchecks.different} different\n`);
    await labDown(NAME);
    if (otherCa) await rm(otherCa, { recursive: true, force: true });
  });

  it("every host advertises its migration address with TLS; the destination's QEMU listens there, not on 127.0.0.1; the guest moves and back", async () => {
    const hosts = await client.hosts();
    // QEMU < 9.0 under TCG loses writes migrating RAM of whole MiB: the guest got RAM 8 KiB short there (docs/known-issues.md)
    assert.equal((await client.vm("t1")).ramTrimKiB, hosts.some((h) => tcgDirtySyncExposed(h)) ? 8 : undefined, JSON.stringify(hosts.map((h) => [h.name, h.accel, h.qemu?.version])));
    for (const h of hosts) {
      assert.ok(h.migration, `${h.name} advertises a migration network`);
      assert.equal(h.migration.tls, true);
      assert.equal(h.migration.identity, `CN=${h.name}`);
      assert.ok(!h.migration.address.startsWith("127."), h.migration.address);
    }
    const dst = hosts.find((h) => h.name === "host2")!;
    const dstNs = lab.hosts.find((h) => h.name === "host2")!.netns!;
    const seen: string[] = [];
    const rec = await migrate("host2", async () => {
      // while the migration runs: who listens inside host2
      for (let i = 0; i < 100 && seen.length === 0; i++) {
        const ss = await run("ip", ["netns", "exec", dstNs, "ss", "-ltnp"], { timeoutMs: 5_000 });
        const qemu = ss.stdout.split("\n").filter((l) => l.includes("qemu"));
        if (qemu.length > 0) seen.push(...qemu);
        else await new Promise((r) => setTimeout(r, 20));
      }
    });
    assert.equal(rec.outcome, "succeeded", `${rec.reason ?? ""}`);
    assert.ok(seen.length > 0, "host2's QEMU was seen listening during the migration");
    assert.ok(seen.every((l) => l.includes(`${dst.migration!.address}:`)), `QEMU listens on host2's migration address only:\n${seen.join("\n")}`);
    assert.ok(!seen.some((l) => l.includes("127.0.0.1")), seen.join("\n"));
    assert.deepEqual(rec.warnings, [], "no plain-TCP or loopback warning");
    switchoverTold(rec);
    await memoryKept("after host1 → host2");
    const back = await migrate("host1");
    assert.equal(back.outcome, "succeeded", `${back.reason ?? ""}`);
    await memoryKept("after host2 → host1");
  });

  it("a source presenting another host's valid certificate is refused by the destination's QEMU: rolled back, the guest runs on host1", async () => {
    // host1's QEMU now presents host3's certificate (same CA); the destination admits only CN=host1
    const ca = join(lab.dir, "tls");
    await copyFile(join(ca, "host3.crt"), creds("host1", "client-cert.pem"));
    await copyFile(join(ca, "host3.key"), creds("host1", "client-key.pem"));
    const rec = await migrate("host2");
    assert.equal(rec.outcome, "rolled-back", JSON.stringify({ reason: rec.reason, code: rec.code }));
    process.stdout.write(`refused (another host's certificate): ${rec.code} ${rec.reason}\n`);
    assert.match(`${rec.code} ${rec.reason}`, /TLS|authz|refused/i, "the outcome says the stream's TLS refused the source");
    assert.equal(rec.runsOn?.host, "host1");
    assert.equal((await client.vm("t1")).host, "host1");
    await memoryKept("after the refused migration (another host's certificate)");
  });

  it("a source presenting a certificate from another CA is refused: rolled back, the guest runs on host1", async () => {
    // trust both CAs on the source (so it accepts host2's certificate) and present the other CA's certificate
    const ours = await readFile(caPaths(join(lab.dir, "tls")).cert, "utf8");
    const theirs = await readFile(caPaths(otherCa).cert, "utf8");
    await writeFile(creds("host1", "ca-cert.pem"), `${ours}${theirs}`, { mode: 0o600 });
    await copyFile(join(otherCa, "host1.crt"), creds("host1", "client-cert.pem"));
    await copyFile(join(otherCa, "host1.key"), creds("host1", "client-key.pem"));
    const rec = await migrate("host2");
    assert.equal(rec.outcome, "rolled-back", JSON.stringify({ reason: rec.reason, code: rec.code }));
    process.stdout.write(`refused (another CA): ${rec.code} ${rec.reason}\n`);
    assert.match(`${rec.code} ${rec.reason}`, /TLS|issuer|refused/i, "the outcome says the stream's TLS refused the source");
    assert.equal((await client.vm("t1")).host, "host1");
    await memoryKept("after the refused migration (another CA)");
  });
});
