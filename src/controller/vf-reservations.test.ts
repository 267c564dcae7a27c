import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { VfReservations } from "./vf-reservations.ts";

/** A promise and its resolve, to hold a plan's reads open. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open = (): void => {};
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

const none = (): Promise<undefined> => Promise.resolve(undefined);
const nothing = (): Promise<string[]> => Promise.resolve([]);

/** Pick the first of `free` not reserved, and hold it. */
const first = (free: readonly string[]) => (_: unknown, reserved: ReadonlySet<string>) => {
  const vf = free.find((k) => !reserved.has(k));
  return { value: vf, hold: vf === undefined ? [] : [vf] };
};

describe("VfReservations", () => {
  it("two plans reading at once never pick the same VF", async () => {
    const r = new VfReservations(nothing);
    const free = ["h/vf0", "h/vf1"];
    const [a, b, c] = await Promise.all([r.plan(none, first(free)), r.plan(none, first(free)), r.plan(none, first(free))]);
    assert.deepEqual([a.value, b.value, c.value], ["h/vf0", "h/vf1", undefined]);
    assert.deepEqual(r.held(), new Set(free));
    a.release();
    a.release();
    assert.deepEqual(r.held(), new Set(["h/vf1"]));
  });

  it("the VFs of migrations in flight are reserved", async () => {
    const r = new VfReservations(() => Promise.resolve(["h/vf0"]));
    assert.equal((await r.plan(none, first(["h/vf0", "h/vf1"]))).value, "h/vf1");
  });

  it("a hold released while a plan reads still counts for that plan (its reads may predate the record or lease that replaced the hold)", async () => {
    const r = new VfReservations(nothing);
    const held = await r.plan(none, first(["h/vf0"]));
    const g = gate();
    const reading = r.plan(() => g.wait, first(["h/vf0", "h/vf1"]));
    held.release();
    g.open();
    assert.equal((await reading).value, "h/vf1");
    // a plan that begins after the release is not kept from it: what replaced the hold shows in its reads
    assert.equal((await r.plan(none, first(["h/vf0"]))).value, "h/vf0");
  });

  it("a plan whose reads fail holds nothing and keeps no other plan waiting", async () => {
    const r = new VfReservations(nothing);
    await assert.rejects(r.plan(() => Promise.reject(new Error("agent down")), first(["h/vf0"])), /agent down/);
    await assert.rejects(r.plan(none, () => { throw new Error("no VF"); }), /no VF/);
    assert.deepEqual(r.held(), new Set());
    assert.equal((await r.plan(none, first(["h/vf0"]))).value, "h/vf0");
  });
});
