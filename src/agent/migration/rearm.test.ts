// A source agent restarted while one of its guests migrates (DESIGN
// invariant: no guest pause depends on the controller): the new agent finds
// the journaled source record and arms the give-up deadline — when QEMU sits
// at pre-switchover, when it only gets there after the restart, and when its
// monitor did not answer the first time. Scripted QEMU monitor (testing.ts),
// real record store, real clock.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { systemClock } from "../../core/clock.ts";
import { isFerryError } from "../../core/errors.ts";
import { silentLogger } from "../../core/log.ts";
import { pollUntil } from "../../core/poll.ts";
import { keepRearming } from "../recovery.ts";
import type { AgentState } from "../state.ts";
import { rearmSources, sourcesInFlight, SRC, switchover } from "./source.ts";
import { rig, spec } from "./testing.ts";
import type { FakeQmp } from "./testing.ts";

const dir = await mkdtemp(join(tmpdir(), "ferry-rearm-"));
after(() => rm(dir, { recursive: true, force: true }));

/** What the old agent journaled: the outgoing migration started, the source may wait `waitMs` at pre-switchover. */
const journaled = (o: { waitMs?: number; giveUpAt?: number; continued?: true } = {}): Record<string, unknown> => ({ instanceId: "i-src", unplugged: [], started: true, ...o });

/** QEMU reaches pre-switchover: the guest's vCPUs stop (STOP, with QEMU's timestamp). */
function reachPreSwitchover(qmp: FakeQmp): void {
  qmp.status = "pre-switchover";
  qmp.running = false;
  qmp.emit("STOP", Date.now() * 1000);
}

async function until(what: string, f: () => boolean, ms = 5_000): Promise<void> {
  if ((await pollUntil(systemClock, { timeoutMs: ms, everyMs: 20 }, () => (f() ? true : undefined))) === undefined) throw new Error(`timed out waiting for ${what}`);
}

/**
 * A late switchover is refused: the source gave up and resumed the guest; it
 * says after what pause when it saw the guest stop (not when the STOP came
 * while no agent ran).
 */
async function assertGaveUp(r: ReturnType<typeof rig>, id: string, o: { pauseSeen: boolean }): Promise<void> {
  await assert.rejects(switchover(r.ctx, id, "i-src", 5_000, AbortSignal.timeout(5_000)), (e: unknown) => {
    assert.ok(isFerryError(e) && e.code === "FERRY_ERR_SOURCE_GAVE_UP", String(e));
    if (o.pauseSeen) assert.match(e.message, /resumed the guest itself after a pause of \d+ ms/);
    else assert.match(e.message, /resumed the guest itself;/);
    return true;
  });
}

test("a migration still streaming when the agent restarted: pending until QEMU reaches pre-switchover, then the source gives up after the wait perform journaled and resumes the guest", async () => {
  const r = rig(dir, systemClock, spec([]));
  r.qmp.status = "active";
  r.ctx.records.put(SRC, "m-stream", journaled({ waitMs: 300 }));
  assert.deepEqual(sourcesInFlight(r.ctx), ["m-stream"]);
  assert.deepEqual(await rearmSources(r.ctx, ["m-stream"]), { armed: [], pending: ["m-stream"] });
  reachPreSwitchover(r.qmp);
  const at = Date.now();
  assert.deepEqual(await rearmSources(r.ctx, ["m-stream"]), { armed: ["m-stream"], pending: [] });
  await until("the guest resumed on the source", () => r.qmp.running);
  const waited = Date.now() - at;
  assert.ok(waited >= 250 && waited < 2_000, `gave up after ${waited} ms; perform journaled a 300 ms wait`);
  assert.ok(r.qmp.sent.includes("migrate_cancel"));
  await assertGaveUp(r, "m-stream", { pauseSeen: true });
});

test("a monitor that did not answer right after the restart: pending, armed at the next round; a deadline already past gives up at once", async () => {
  const r = rig(dir, systemClock, spec([]));
  reachPreSwitchover(r.qmp);
  r.qmp.failQueries = 1;
  r.ctx.records.put(SRC, "m-slow", journaled({ waitMs: 2_500, giveUpAt: Date.now() - 1_000 }));
  assert.deepEqual(await rearmSources(r.ctx, ["m-slow"]), { armed: [], pending: ["m-slow"] });
  assert.equal(r.qmp.running, false, "nothing resumed the guest while QEMU did not answer");
  assert.deepEqual(await rearmSources(r.ctx, ["m-slow"]), { armed: ["m-slow"], pending: [] });
  await until("the guest resumed on the source", () => r.qmp.running, 1_000);
  await assertGaveUp(r, "m-slow", { pauseSeen: false });
});

test("nothing to arm: a migration continued past pre-switchover, one QEMU already ended, and one whose instance is gone (unless it is only not adopted yet)", async () => {
  const r = rig(dir, systemClock, spec([]));
  r.ctx.records.put(SRC, "m-cont", journaled({ continued: true }));
  assert.deepEqual(sourcesInFlight(r.ctx), [], "a continued migration is not in flight here");
  r.qmp.status = "cancelled";
  r.ctx.records.put(SRC, "m-ended", journaled());
  assert.deepEqual(await rearmSources(r.ctx, ["m-ended"]), { armed: [], pending: [] });
  r.ctx.records.put(SRC, "m-gone", { ...journaled(), instanceId: "i-elsewhere" });
  assert.deepEqual(await rearmSources(r.ctx, ["m-gone"]), { armed: [], pending: [] });
  assert.deepEqual(await rearmSources(r.ctx, ["m-gone"], { waitFor: (id) => id === "i-elsewhere" }), { armed: [], pending: ["m-gone"] });
});

test("the agent's re-arm loop: a migration that reaches pre-switchover a second after the restart is given up on by the source, with no controller, and the loop ends", async () => {
  const r = rig(dir, systemClock, spec([]));
  r.qmp.status = "active";
  r.ctx.records.put(SRC, "m-loop", journaled({ waitMs: 200 }));
  const s = { clock: systemClock, log: silentLogger, unreachable: new Map<string, string>(), ctx: () => r.ctx } as unknown as AgentState;
  const stop = new AbortController();
  const loop = keepRearming(s, sourcesInFlight(r.ctx), stop.signal);
  try {
    await systemClock.sleep(1_000);
    assert.equal(r.qmp.sent.includes("migrate_cancel"), false, "nothing cancelled while QEMU still streams");
    reachPreSwitchover(r.qmp);
    await until("the guest resumed on the source", () => r.qmp.running, 3_000);
    await loop;
    await assertGaveUp(r, "m-loop", { pauseSeen: true });
  } finally {
    stop.abort();
  }
});
