// The guest memory check against real QEMU and the real test guest (TCG
// here): the boot checksum, the same on request, the same on a destination
// after a live migration (tcp:127.0.0.1, two QEMUs on this machine), and a
// different one after the guest changed its region on purpose. The serial
// console keeps logging every line whether or not a client is connected.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { heartbeats, lastHeartbeat, readConsole, waitForConsole, waitForHeartbeat } from "../../src/qemu/console.ts";
import type { Instance } from "../../src/qemu/instance.ts";
import { prepareIncoming, startMigration, waitMigration } from "../../src/qemu/migration.ts";
import { queryStatus } from "../../src/qmp/commands.ts";
import { bootMemsum, guestMemsum, guestMemtouch } from "../../src/lab/memcheck.ts";
import { guestSpec, rig } from "./helpers.ts";
import type { Rig } from "./helpers.ts";

const ASK = { timeoutMs: 30_000 };

/** The heartbeats in a log are n, n+1, …: none lost, none broken by another line. */
function assertConsecutive(text: string, what: string): number[] {
  const hb = heartbeats(text);
  assert.ok(hb.length > 0, `${what}: no heartbeat`);
  const gaps = hb.slice(1).filter((n, i) => n !== hb[i]! + 1);
  assert.deepEqual(gaps, [], `${what}: heartbeats not consecutive`);
  return hb;
}

describe("guest memory check", { timeout: 300_000 }, () => {
  let r: Rig;
  let src: Instance;
  let boot: string;

  before(async () => {
    r = await rig();
    const t0 = performance.now();
    src = await r.start(await guestSpec("e2e-memcheck", []));
    await waitForConsole(src.paths.serialLog, /ferry-ready/, { timeoutMs: 120_000 });
    boot = await bootMemsum(src.paths.serialLog);
    console.log(`# guest ready in ${Math.round(performance.now() - t0)} ms (accel ${r.accel}), boot memsum ${boot}`);
  });
  after(async () => r.cleanup()); // SIGKILL by pid for every QEMU started here

  it("answers a request with the boot checksum; the console log is whole while a client is connected and after it left", async () => {
    const n = lastHeartbeat(await readConsole(src.paths.serialLog)) ?? 0;
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      assert.equal(await guestMemsum(src.paths.dir, ASK), boot);
      console.log(`# memsum request ${i + 1}: ${Math.round(performance.now() - t)} ms`);
    }
    // nobody is connected now: the guest's lines still reach serial.log
    const m = await waitForHeartbeat(src.paths.serialLog, n + 10, { timeoutMs: 15_000 });
    assert.ok(m > n + 10);
    const text = await readConsole(src.paths.serialLog);
    assertConsecutive(text, "source");
    const replies = text.match(/ferry-memsum [0-9a-f]{12} [0-9a-f]{32}\r\n/g) ?? [];
    assert.equal(replies.length, 3, "each reply on a line of its own");
    assert.doesNotMatch(text, /(^|\n)memsum /, "the guest does not echo the request");
  });

  it("is the boot checksum on the destination of a live migration; the heartbeat continues", async () => {
    const dst = await r.start(src.meta.spec, { incoming: true });
    const uri = await prepareIncoming(dst.qmp, "tcp:127.0.0.1:0");
    await startMigration(src.qmp, uri);
    const done = await waitMigration(src.qmp, { until: ["completed"], timeoutMs: 120_000 });
    assert.equal(done.status, "completed");
    const last = lastHeartbeat(await readConsole(src.paths.serialLog)) ?? 0;
    const next = await waitForHeartbeat(dst.paths.serialLog, 0, { timeoutMs: 30_000 });
    assert.ok(next > last, `heartbeat continued on the destination (${last} → ${next}), never reset`);
    assert.equal((await queryStatus(dst.qmp)).running, true);
    const t = performance.now();
    assert.equal(await guestMemsum(dst.paths.dir, ASK), boot, "guest memory survived the migration");
    console.log(`# memsum on the destination: ${Math.round(performance.now() - t)} ms`);
    const hb = assertConsecutive(await readConsole(dst.paths.serialLog), "destination");
    assert.ok(hb[0]! >= last, `the destination goes on from the source (${last} → ${hb[0]})`);
    await src.stop();
    src = dst;
  });

  it("fails when the region changed: the guest's test hook overwrites 16 bytes", async () => {
    await guestMemtouch(src.paths.dir, ASK);
    const now = await guestMemsum(src.paths.dir, ASK);
    assert.match(now, /^[0-9a-f]{32}$/);
    assert.notEqual(now, boot, "a changed region has another checksum");
    assert.equal(await guestMemsum(src.paths.dir, ASK), now, "and it is stable");
  });
});
