import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ClusterSnapshot } from "../model/cluster.ts";
import { buildIndex } from "./cluster-index.ts";
import { cluster, host, pf } from "./fixtures.ts";

function deepFreeze<T>(x: T): T {
  if (typeof x === "object" && x !== null) {
    for (const v of Object.values(x)) deepFreeze(v);
    Object.freeze(x);
  }
  return x;
}

describe("buildIndex", () => {
  const snap: ClusterSnapshot = deepFreeze(
    cluster(
      [host("b"), host("a")],
      [
        pf("a", { network: "physnet1", bus: "5e", vfs: 4, leased: 1, vendor: "15b3" }),
        pf("a", { network: "physnet1", bus: "3b", vfs: 4, leased: 3 }),
        pf("b", { network: "physnet2", bus: "3b", vfs: 2 }),
      ],
    ),
  );

  it("indexes a frozen snapshot without touching it: hosts by name, free VFs per key", () => {
    const index = buildIndex(snap);
    assert.deepEqual(index.names, ["a", "b"]);
    const free = (net: string, vendor?: string, h = 0): number => index.keyFree[index.keyFor(net, vendor)]![h]!;
    assert.equal(free("physnet1"), 4);
    assert.equal(free("physnet1", "15b3"), 3);
    assert.equal(free("physnet1", "8086"), 1);
    assert.equal(free("physnet2", undefined, 1), 2);
    assert.equal(index.keyFor("physnet9"), -1);
    assert.deepEqual(index.hostPfs[0]!.map((p) => [p.pf.bdf, p.used, p.total]), [["0000:3b:00.0", 3, 4], ["0000:5e:00.0", 1, 4]]);
    assert.equal(index.vfs[index.vfByKey("a/0000:5e:02.3")]!.bdf, "0000:5e:02.3");
    assert.equal(index.vfByKey("a/0000:99:02.0"), -1);
    assert.equal(index.vfByKey("zz/0000:5e:02.3"), -1);
    assert.deepEqual(index.problems, []);
    assert.equal(buildIndex(snap), index, "one index per snapshot object");
  });

  it("reports entries it cannot index instead of failing", () => {
    const orphanPf = pf("ghost", { network: "physnet1", bus: "3b" });
    const s = cluster([host("a"), host("a")], [pf("a", { network: "physnet1", bus: "3b" }), orphanPf]);
    const index = buildIndex({ ...s, vfs: [...s.vfs, { ...s.vfs[0]!, bdf: "0000:3b:09.0", pf: "0000:77:00.0" }] });
    assert.equal(index.hosts.length, 1);
    assert.deepEqual(index.problems.map((p) => p.split(":")[0]), ["host a", "PF ghost/0000", "VF ghost/0000", "VF ghost/0000", "VF ghost/0000", "VF ghost/0000", "VF a/0000"]);
  });
});
