// The filter + branch-and-bound ranking must give exactly what evaluating
// every host and sorting would give: checked against that brute force on
// random clusters and requests.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { vfKey } from "../model/cluster.ts";
import type { Host, PlacementNic, PlacementVm } from "../model/cluster.ts";
import { buildIndex } from "./cluster-index.ts";
import { evaluate } from "./engine.ts";
import type { Evaluated } from "./engine.ts";
import { cluster, host, pf, prng } from "./fixtures.ts";
import { place } from "./place.ts";
import { PlanState } from "./plan-state.ts";
import { compileRequest } from "./request.ts";


function randomCase(seed: number) {
  const r = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const nets = ["physnet1", "physnet2", "physnet3"];
  const hosts: Host[] = [];
  const pfs: ReturnType<typeof pf>[] = [];
  const H = 20 + Math.floor(r() * 60);
  for (let i = 0; i < H; i++) {
    const name = `h${String(i).padStart(3, "0")}`;
    const memT = pick([16384, 32768, 65536]);
    const cpuT = pick([8, 16, 32]);
    hosts.push(host(name, { state: r() < 0.1 ? pick(["down", "draining"] as const) : "up", mem: [memT, Math.floor(r() * memT)], cpu: [cpuT, Math.floor(r() * cpuT)] }));
    const nPf = 1 + Math.floor(r() * 3);
    for (let j = 0; j < nPf; j++) {
      const vfs = pick([2, 4, 8]);
      pfs.push(pf(name, { network: pick(nets), bus: ["3b", "5e", "af"][j]!, vfs, leased: Math.floor(r() * (vfs + 1)), vendor: pick(["8086", "15b3"]), device: pick(["154c", "1018"]), numa: Math.floor(r() * 2), bandwidthMbps: pick([10000, 25000, 100000]) }));
    }
  }
  const snap = cluster(hosts, pfs, seed);
  const nics: PlacementNic[] = [];
  const nNics = 1 + Math.floor(r() * 3);
  for (let k = 0; k < nNics; k++) {
    const c = r();
    nics.push({
      name: `net${k}`,
      network: pick(nets),
      mode: pick(["failover", "ephemeral", "emulated"] as const),
      policy: pick(["mandatory", "requisite", "optional"] as const),
      ...(c < 0.2 ? { vendor: pick(["8086", "15b3"]) } : c < 0.3 ? { vendor: "8086", device: pick(["154c", "1018"]) } : {}),
    });
  }
  const vm: PlacementVm = {
    uuid: `vm-${seed}`,
    name: `vm-${seed}`,
    memoryMiB: pick([1024, 4096, 8192]),
    vcpus: pick([1, 2, 4]),
    host: hosts[0]!.name,
    ...(r() < 0.5 ? { numaNode: Math.floor(r() * 2) } : {}),
    nics,
  };
  const reserved = new Set<string>();
  for (const v of snap.vfs) if (v.leasedBy === null && r() < 0.15) reserved.add(vfKey(v.host, v.bdf));
  const exclude = hosts.filter(() => r() < 0.05).map((h) => h.name);
  return { snap, vm, options: { reservedVfs: reserved, exclude, limit: 1 + Math.floor(r() * 6) } };
}

describe("engine: branch and bound equals brute force", () => {
  it("ranks like evaluating every host (300 random clusters)", () => {
    let placedCount = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const { snap, vm, options } = randomCase(seed);
      const got = place(snap, { vm, options });

      const index = buildIndex(snap);
      const state = new PlanState(index, options.reservedVfs);
      const req = compileRequest(index, vm, options);
      const all: Evaluated[] = [];
      index.hosts.forEach((h, i) => {
        if (h.name === vm.host || h.state !== "up" || options.exclude.includes(h.name)) return;
        if (h.memoryMiB.total - h.memoryMiB.used < vm.memoryMiB || h.vcpus.total - h.vcpus.used < vm.vcpus) return;
        const ev = evaluate(index, state, req, i);
        if (typeof ev !== "string") all.push(ev);
      });
      all.sort((a, b) => b.key - a.key || a.host - b.host);
      const want = all.slice(0, options.limit).map((e) => [index.names[e.host], Math.round(e.score * 100) / 100]);

      if (got.kind === "unplaceable") {
        assert.deepEqual(want, [], `seed ${seed}: ${got.message}`);
        continue;
      }
      placedCount++;
      assert.deepEqual(got.destinations.map((d) => [d.host, d.score]), want, `seed ${seed}`);
      assert.ok(got.eligible >= all.length, `seed ${seed}: eligible ${got.eligible} < ${all.length}`);
      for (const d of got.destinations) for (const n of d.nics) if (n.vf) assert.ok(!options.reservedVfs.has(n.vf.key), `seed ${seed}: reserved VF handed out`);
      // Every host is either ranked/eligible or rejected with a reason.
      assert.equal(got.rejected.count + got.eligible, snap.hosts.length, `seed ${seed}`);
    }
    assert.ok(placedCount > 150, `only ${placedCount} placed: the cases are too hard to mean much`);
  });
});
