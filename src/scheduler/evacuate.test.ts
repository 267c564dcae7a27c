import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { vfKey } from "../model/cluster.ts";
import type { PlacementVm } from "../model/cluster.ts";
import { planEvacuation } from "./evacuate.ts";
import { cluster, host, nic, pf, vm } from "./fixtures.ts";

function vms(n: number, o: Partial<PlacementVm> = {}): PlacementVm[] {
  return Array.from({ length: n }, (_, i) => vm({ uuid: `uuid-${i}`, name: `vm-${i}`, host: "drain", ...o }));
}

describe("planEvacuation", () => {
  const drain = host("drain", { state: "draining" });

  it("never promises one VF to two VMs, and reports the VM that fits nowhere with its reasons", () => {
    // Three hosts with one free VF each on physnet1: four VMs need one each.
    const snap = cluster(
      [drain, host("a"), host("b"), host("c")],
      ["a", "b", "c"].map((h) => pf(h, { network: "physnet1", bus: "3b", vfs: 2, leased: 1 })),
    );
    const plan = planEvacuation(snap, vms(4));
    assert.equal(plan.kind, "partial");
    assert.equal(plan.placed.length, 3);
    const keys = plan.placed.map((p) => p.destination.nics[0]!.vf!.key);
    assert.equal(new Set(keys).size, 3);
    assert.deepEqual([...plan.reservedVfs].sort(), [...keys].sort());

    assert.equal(plan.unplaced.length, 1);
    const lost = plan.unplaced[0]!;
    assert.equal(lost.name, "vm-3");
    assert.equal(lost.code, "NO_HOST");
    assert.deepEqual(lost.rejectedByCode, { SAME_HOST: 1, NO_VF: 3 });
    assert.match(lost.message, /^no host can take vm-3 \(4 hosts\): 3 NO_VF, 1 SAME_HOST$/);
    assert.deepEqual(lost.rejections.find((r) => r.host === "a"), {
      host: "a",
      code: "NO_VF",
      message: "net0 (mandatory) needs 1 VF on physnet1: 0 free (1 more promised to other plans)",
    });
    assert.equal(lost.rejections.find((r) => r.host === "drain")!.code, "SAME_HOST");
  });

  it("counts memory and vCPUs taken by earlier placements of the plan", () => {
    const snap = cluster([drain, host("a", { mem: [16384, 4096] })], [pf("a", { network: "physnet1", bus: "3b" })]);
    const plan = planEvacuation(snap, vms(2, { memoryMiB: 8192 }));
    assert.equal(plan.placed.length, 1);
    assert.equal(plan.unplaced[0]!.rejections.find((r) => r.host === "a")!.message, "need 8192 MiB, free 4096 MiB (8192 MiB promised to earlier placements of this plan)");

    const cpu = planEvacuation(cluster([drain, host("a", { cpu: [4, 0] })], [pf("a", { network: "physnet1", bus: "3b" })]), vms(2, { vcpus: 3 }));
    assert.equal(cpu.unplaced[0]!.rejections.find((r) => r.host === "a")!.message, "need 3 vCPUs, free 1 (3 promised to earlier placements of this plan)");
  });

  it("plans the biggest VMs first and says so", () => {
    // Room for one big VM or two small ones; biggest first keeps the big one.
    const snap = cluster([drain, host("a", { mem: [16384, 0] })], [pf("a", { network: "physnet1", bus: "3b" })]);
    const list = [
      vm({ uuid: "s1", name: "small-1", host: "drain", memoryMiB: 6144 }),
      vm({ uuid: "big", name: "big", host: "drain", memoryMiB: 12288 }),
      vm({ uuid: "s2", name: "small-2", host: "drain", memoryMiB: 6144, vcpus: 4 }),
    ];
    const plan = planEvacuation(snap, list);
    assert.match(plan.order, /^biggest first/);
    assert.deepEqual(plan.placed.map((p) => [p.name, p.order]), [["big", 1]]);
    assert.deepEqual(plan.unplaced.map((p) => [p.name, p.order]), [["small-2", 2], ["small-1", 3]]);
  });

  it("respects VFs already promised to other plans and excluded hosts", () => {
    const snap = cluster([drain, host("a"), host("b")], [pf("a", { network: "physnet1", bus: "3b", vfs: 1 }), pf("b", { network: "physnet1", bus: "3b", vfs: 1 })]);
    const plan = planEvacuation(snap, vms(1), { reservedVfs: new Set([vfKey("a", "0000:3b:02.0")]), exclude: ["b"] });
    assert.equal(plan.kind, "partial");
    assert.deepEqual(plan.unplaced[0]!.rejectedByCode, { SAME_HOST: 1, NO_VF: 1, EXCLUDED: 1 });
  });

  it("is complete when everything fits, spreading over the least-loaded hosts, deterministically", () => {
    const names = ["a", "b", "c"];
    const snap = cluster([drain, ...names.map((n) => host(n))], names.map((n) => pf(n, { network: "physnet1", bus: "3b", vfs: 8 })));
    const list = vms(6, { nics: [nic("net0", "physnet1"), nic("net1", "physnet2", { mode: "emulated" })] });
    const plan = planEvacuation(snap, list);
    assert.equal(plan.kind, "complete");
    assert.deepEqual(plan.placed.map((p) => p.destination.host), ["a", "b", "c", "a", "b", "c"]);
    assert.equal(new Set(plan.reservedVfs).size, 6);
    assert.equal(JSON.stringify(planEvacuation(snap, [...list].reverse())), JSON.stringify(plan));
  });
});
