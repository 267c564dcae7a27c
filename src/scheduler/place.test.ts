import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { vfKey } from "../model/cluster.ts";
import type { ClusterSnapshot, PlacementRequest } from "../model/cluster.ts";
import { buildIndex } from "./cluster-index.ts";
import { place } from "./place.ts";
import { cluster, host, nic, pf, vm } from "./fixtures.ts";
import type { Placed, Placement } from "./types.ts";

function placed(p: Placement): Placed {
  if (p.kind === "unplaceable") assert.fail(p.message);
  return p;
}

const src = host("src");

describe("place: physical network and device constraints", () => {
  it("chooses only hosts with a VF on the NIC's physical network", () => {
    const snap = cluster([src, host("a"), host("b")], [pf("a", { network: "physnet2", bus: "3b" }), pf("b", { network: "physnet1", bus: "3b" })]);
    const p = placed(place(snap, { vm: vm() }));
    assert.deepEqual(p.destinations.map((d) => d.host), ["b"]);
    const vf = p.destinations[0]!.nics[0]!.vf!;
    assert.equal(vf.bdf, "0000:3b:02.0");
    assert.equal(vf.pf, "0000:3b:00.0");
    assert.equal(vf.key, vfKey("b", "0000:3b:02.0"));
    assert.deepEqual(p.rejected.get("a"), { host: "a", code: "NO_VF", message: "net0 (mandatory) needs 1 VF on physnet1: 0 free" });
    assert.equal(p.rejected.get("src")?.code, "SAME_HOST");
    assert.equal(p.rejected.get("b"), undefined);
  });

  it("honours a vendor/device constraint and says what else was free", () => {
    const snap = cluster(
      [src, host("a"), host("b")],
      [pf("a", { network: "physnet1", bus: "3b", vendor: "8086" }), pf("b", { network: "physnet1", bus: "5e", vendor: "15b3", device: "101e" })],
    );
    const p = placed(place(snap, { vm: vm({ nics: [nic("net0", "physnet1", { vendor: "15b3" })] }) }));
    assert.deepEqual(p.destinations.map((d) => d.host), ["b"]);
    assert.equal(p.destinations[0]!.nics[0]!.vf!.vendor, "15b3");
    const a = p.rejected.get("a")!;
    assert.equal(a.code, "NO_VF");
    assert.match(a.message, /vendor 15b3/);
    assert.match(a.message, /4 free on physnet1 of other models/);

    const none = place(snap, { vm: vm({ nics: [nic("net0", "physnet1", { vendor: "15b3", device: "ffff" })] }) });
    assert.equal(none.kind, "unplaceable");
    assert.match(none.rejected.get("b")!.message, /no VF in the cluster matches physnet1 \(vendor 15b3, device ffff\)/);
  });

  it("gives two NICs on one network two different VFs, and checks the count", () => {
    const snap = cluster([src, host("a"), host("b")], [pf("a", { network: "physnet1", bus: "3b", vfs: 1 }), pf("b", { network: "physnet1", bus: "3b", vfs: 2 })]);
    const p = placed(place(snap, { vm: vm({ nics: [nic("net0", "physnet1"), nic("net1", "physnet1", { policy: "requisite" })] }) }));
    assert.deepEqual(p.destinations.map((d) => d.host), ["b"]);
    const [n0, n1] = p.destinations[0]!.nics;
    assert.notEqual(n0!.vf!.bdf, n1!.vf!.bdf);
    assert.equal(p.rejected.get("a")!.message, "net0 (mandatory), net1 (requisite) need 2 VFs on physnet1: 1 free");
  });
});

describe("place: PF load and NUMA", () => {
  it("takes a VF from the least-loaded PF first", () => {
    const snap = cluster(
      [src, host("a")],
      [pf("a", { network: "physnet1", bus: "3b", vfs: 8, leased: 6 }), pf("a", { network: "physnet1", bus: "5e", vfs: 8, leased: 2 })],
    );
    const nicOut = placed(place(snap, { vm: vm() })).destinations[0]!.nics[0]!;
    assert.equal(nicOut.vf!.pf, "0000:5e:00.0");
    assert.equal(nicOut.vf!.bdf, "0000:5e:02.2");
    assert.equal(nicOut.vf!.pfUsed, 3);
    assert.match(nicOut.note, /3\/8 VFs in use after/);
  });

  it("breaks equal load by bandwidth per used VF, then by PF address", () => {
    const fast = cluster(
      [src, host("a")],
      [pf("a", { network: "physnet1", bus: "3b", leased: 1, bandwidthMbps: 10000 }), pf("a", { network: "physnet1", bus: "5e", leased: 1, bandwidthMbps: 100000 })],
    );
    assert.equal(placed(place(fast, { vm: vm() })).destinations[0]!.nics[0]!.vf!.pf, "0000:5e:00.0");
    const same = cluster([src, host("a")], [pf("a", { network: "physnet1", bus: "5e" }), pf("a", { network: "physnet1", bus: "3b" })]);
    assert.equal(placed(place(same, { vm: vm() })).destinations[0]!.nics[0]!.vf!.pf, "0000:3b:00.0");
  });

  it("spreads two NICs of one VM over equally loaded PFs", () => {
    const snap = cluster([src, host("a")], [pf("a", { network: "physnet1", bus: "3b" }), pf("a", { network: "physnet1", bus: "5e" })]);
    const d = placed(place(snap, { vm: vm({ nics: [nic("net0", "physnet1"), nic("net1", "physnet1")] }) })).destinations[0]!;
    assert.deepEqual(d.nics.map((n) => n.vf!.pf), ["0000:3b:00.0", "0000:5e:00.0"]);
  });

  it("prefers a VF on the VM's NUMA node, on the host and across hosts", () => {
    const snap = cluster(
      [src, host("a"), host("b")],
      [
        pf("a", { network: "physnet1", bus: "3b", numa: 0 }),
        pf("a", { network: "physnet1", bus: "af", numa: 1, vfs: 4, leased: 3 }),
        pf("b", { network: "physnet1", bus: "3b", numa: 0 }),
      ],
    );
    const p = placed(place(snap, { vm: vm({ numaNode: 1 }) }));
    assert.deepEqual(p.destinations.map((d) => d.host), ["a", "b"]);
    const a = p.destinations[0]!.nics[0]!;
    assert.equal(a.vf!.numaNode, 1);
    assert.match(a.note, /NUMA 1, same as the VM/);
    assert.match(p.destinations[1]!.nics[0]!.note, /NUMA 0, VM on 1/);
    // Without a NUMA node, the less loaded PF wins.
    assert.equal(placed(place(snap, { vm: vm() })).destinations[0]!.nics[0]!.vf!.numaNode, 0);
  });
});

describe("place: capacity and host state", () => {
  it("rejects hosts without memory or vCPUs, with the numbers", () => {
    const snap = cluster(
      [src, host("a", { mem: [8192, 7168] }), host("b", { cpu: [8, 7] }), host("c")],
      ["a", "b", "c"].map((h) => pf(h, { network: "physnet1", bus: "3b" })),
    );
    const p = placed(place(snap, { vm: vm() }));
    assert.deepEqual(p.destinations.map((d) => d.host), ["c"]);
    assert.deepEqual(p.rejected.get("a"), { host: "a", code: "NO_MEMORY", message: "need 4096 MiB, free 1024 MiB" });
    assert.deepEqual(p.rejected.get("b"), { host: "b", code: "NO_VCPUS", message: "need 2 vCPUs, free 1" });
    assert.deepEqual(p.rejected.byCode, { SAME_HOST: 1, NO_MEMORY: 1, NO_VCPUS: 1 });
    assert.equal(p.rejected.count, 3);
    assert.equal(p.eligible, 1);
  });

  it("never chooses a down or draining host", () => {
    const snap = cluster(
      [src, host("a", { state: "down" }), host("b", { state: "draining" })],
      ["a", "b"].map((h) => pf(h, { network: "physnet1", bus: "3b" })),
    );
    const p = place(snap, { vm: vm() });
    assert.equal(p.kind, "unplaceable");
    assert.equal(p.kind === "unplaceable" && p.code, "NO_HOST");
    assert.deepEqual(
      p.rejected.list().map((r) => [r.host, r.code]),
      [["a", "HOST_DOWN"], ["b", "HOST_DRAINING"], ["src", "SAME_HOST"]],
    );
    assert.match(p.kind === "unplaceable" ? p.message : "", /^no host can take web-1 \(3 hosts\): /);
  });

  it("ranks the host with more room left first", () => {
    const snap = cluster(
      [src, host("a", { mem: [65536, 40000] }), host("b", { mem: [65536, 1000] })],
      ["a", "b"].map((h) => pf(h, { network: "physnet1", bus: "3b" })),
    );
    const p = placed(place(snap, { vm: vm() }));
    assert.deepEqual(p.destinations.map((d) => [d.host, d.rank]), [["b", 1], ["a", 2]]);
    assert.ok(p.destinations[0]!.score > p.destinations[1]!.score);
    assert.match(p.destinations[0]!.explanation, /^rank 1, score [\d.]+; free after placement: 60440 MiB memory \(92%\), 30 vCPUs \(94%\); net0 → 0000:3b:02\.0/);
  });
});

describe("place: NIC policies", () => {
  const snap = cluster([src, host("a", { mem: [65536, 60000] }), host("b")], [pf("a", { network: "physnet1", bus: "3b" }), pf("b", { network: "physnet2", bus: "3b" })]);
  const second = (policy: "mandatory" | "requisite" | "optional", mode: "failover" | "ephemeral" = "failover"): PlacementRequest => ({
    vm: vm({ nics: [nic("net0", "physnet1", { policy: "optional" }), nic("net1", "physnet2", { policy, mode })] }),
  });

  it("rejects a host with no VF for a mandatory or requisite NIC", () => {
    for (const policy of ["mandatory", "requisite"] as const) {
      const p = placed(place(snap, second(policy)));
      assert.deepEqual(p.destinations.map((d) => d.host), ["b"], policy);
      assert.equal(p.rejected.get("a")!.message, `net1 (${policy}) needs 1 VF on physnet2: 0 free`);
    }
  });

  it("keeps a host with no VF for an optional NIC, NIC on standby (failover) or absent (ephemeral), ranked below complete hosts", () => {
    const onlyOptional = cluster([src, host("a"), host("b", { mem: [65536, 60000] })], [pf("a", { network: "physnet2", bus: "3b" }), pf("b", { network: "physnet1", bus: "3b" })]);
    const p = placed(place(onlyOptional, { vm: vm({ nics: [nic("net0", "physnet1", { policy: "optional" })] }) }));
    // b has far less memory left but has the VF: it ranks first.
    assert.deepEqual(p.destinations.map((d) => [d.host, d.complete]), [["b", true], ["a", false]]);
    const standby = p.destinations[1]!.nics[0]!;
    assert.equal(standby.vf, null);
    assert.equal(standby.note, "runs on its standby: no free VF on physnet1");
    assert.match(p.destinations[1]!.explanation, /1 optional NIC without a VF: ranked below complete hosts/);

    const eph = placed(place(onlyOptional, { vm: vm({ nics: [nic("net0", "physnet1", { policy: "optional", mode: "ephemeral" })] }) }));
    assert.equal(eph.destinations[1]!.nics[0]!.note, "absent: no free VF on physnet1");
  });

  it("places a VM with only emulated NICs anywhere with room, no VF", () => {
    const p = placed(place(snap, { vm: vm({ nics: [nic("net0", "physnet9", { mode: "emulated" })] }) }));
    assert.deepEqual(p.destinations.map((d) => d.host), ["b", "a"]);
    assert.deepEqual(p.destinations[0]!.nics[0], { nic: "net0", network: "physnet9", mode: "emulated", policy: "mandatory", vf: null, note: "emulated: no VF needed" });
  });
});

describe("place: request options", () => {
  const snap = cluster(
    [src, host("a"), host("b", { mem: [8192, 6000] }), host("c")],
    ["src", "a", "b", "c"].map((h) => pf(h, { network: "physnet1", bus: "3b" })),
  );

  it("to restricts to one host and explains why it was rejected", () => {
    const p = place(snap, { vm: vm(), options: { to: "b" } });
    assert.equal(p.kind, "unplaceable");
    assert.equal(p.kind === "unplaceable" && p.message, "b cannot take web-1: NO_MEMORY: need 4096 MiB, free 2192 MiB");
    assert.deepEqual(p.rejected.byCode, { NOT_REQUESTED: 3, NO_MEMORY: 1 });
    assert.equal(p.rejected.get("a")!.message, "not the requested host (to: b)");

    assert.deepEqual(placed(place(snap, { vm: vm(), options: { to: "c" } })).destinations.map((d) => d.host), ["c"]);
    const same = place(snap, { vm: vm(), options: { to: "src" } });
    assert.equal(same.kind === "unplaceable" && same.message, "src cannot take web-1: SAME_HOST: web-1 runs here now; a migration needs another host");
    const unknown = place(snap, { vm: vm(), options: { to: "zz" } });
    assert.equal(unknown.kind === "unplaceable" && unknown.code, "UNKNOWN_HOST");
  });

  it("exclude removes hosts, with reason EXCLUDED", () => {
    const p = placed(place(snap, { vm: vm(), options: { exclude: ["a", "nope"] } }));
    assert.deepEqual(p.destinations.map((d) => d.host), ["c"]);
    assert.equal(p.rejected.get("a")!.code, "EXCLUDED");
  });

  it("never hands out a VF reserved for another plan", () => {
    const small = cluster([src, host("a")], [pf("a", { network: "physnet1", bus: "3b", vfs: 2 })]);
    const one = placed(place(small, { vm: vm(), options: { reservedVfs: new Set([vfKey("a", "0000:3b:02.0")]) } }));
    assert.equal(one.destinations[0]!.nics[0]!.vf!.bdf, "0000:3b:02.1");
    assert.equal(one.destinations[0]!.nics[0]!.vf!.pfUsed, 2);
    const none = place(small, { vm: vm(), options: { reservedVfs: new Set([vfKey("a", "0000:3b:02.0"), vfKey("a", "0000:3b:02.1")]) } });
    assert.equal(none.kind, "unplaceable");
    assert.equal(none.rejected.get("a")!.message, "net0 (mandatory) needs 1 VF on physnet1: 0 free (2 more promised to other plans)");
  });

  it("limit bounds the ranked list, eligible counts them all", () => {
    const p = placed(place(snap, { vm: vm(), options: { limit: 1 } }));
    assert.equal(p.destinations.length, 1);
    assert.equal(p.eligible, 2);
  });
});

describe("place: determinism and the rejection list", () => {
  function shuffled(s: ClusterSnapshot, seed: number): ClusterSnapshot {
    let x = seed;
    const rnd = (): number => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648);
    const sh = <T>(a: readonly T[]): T[] => a.map((v) => [rnd(), v] as const).sort((p, q) => p[0] - q[0]).map((p) => p[1]);
    return { revision: s.revision, hosts: sh(s.hosts), pfs: sh(s.pfs), vfs: sh(s.vfs) };
  }

  it("gives the same answer for the same input in any order; ties by host name, then BDF", () => {
    const names = ["h3", "h1", "h2", "h0"];
    const snap = cluster([src, ...names.map((n) => host(n))], names.map((n) => pf(n, { network: "physnet1", bus: "3b" })));
    const a = placed(place(snap, { vm: vm() }));
    assert.deepEqual(a.destinations.map((d) => d.host), ["h0", "h1", "h2", "h3"]);
    for (let seed = 1; seed < 5; seed++) {
      const b = placed(place(shuffled(snap, seed), { vm: vm() }));
      assert.equal(JSON.stringify(b), JSON.stringify(a));
    }
  });

  it("lists one rejection per rejected host, as plain JSON", () => {
    const snap = cluster([src, host("a", { state: "down" }), host("b")], [pf("b", { network: "physnet1", bus: "3b" })]);
    const p = placed(place(buildIndex(snap), { vm: vm() }));
    const json = JSON.parse(JSON.stringify(p)) as { rejected: { count: number; hosts: { host: string; code: string }[] } };
    assert.equal(json.rejected.count, 2);
    assert.deepEqual(json.rejected.hosts.map((r) => r.host), ["a", "src"]);
    assert.equal(p.revision, 1);
  });
});
