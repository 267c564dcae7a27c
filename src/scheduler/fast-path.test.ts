// The fast path (sorted per-group orders, only the hosts it needs) must give
// what a straightforward placement gives: every host filtered, every
// feasible host picked exactly, all sorted. Checked with fast-check on random
// clusters and requests, and against the engine's own answer (which is what
// place() returned before the fast path: same explanations, counts, messages).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { vfKey } from "../model/cluster.ts";
import type { Host, PlacementNic, PlacementVm } from "../model/cluster.ts";
import { buildIndex } from "./cluster-index.ts";
import { evaluate, run } from "./engine.ts";
import type { Evaluated } from "./engine.ts";
import { BUILD_AFTER, fastRun, shapeIndex } from "./fast-path.ts";
import { cluster, host, pf } from "./fixtures.ts";
import { place, toPlacement } from "./place.ts";
import { PlanState } from "./plan-state.ts";
import { CODE_LIST } from "./rejections.ts";
import { compileRequest } from "./request.ts";

const NETS = ["physnet1", "physnet2", "physnet3"] as const;

const pfArb = fc.record({
  network: fc.constantFrom(...NETS),
  vfs: fc.integer({ min: 1, max: 8 }),
  leasedShare: fc.double({ min: 0, max: 1, noNaN: true }),
  vendor: fc.constantFrom("8086", "15b3"),
  device: fc.constantFrom("154c", "1018"),
  numa: fc.integer({ min: 0, max: 2 }),
  bandwidthMbps: fc.constantFrom(10000, 25000, 100000),
});

const hostArb = fc.record({
  state: fc.constantFrom("up", "up", "up", "up", "down", "draining"),
  // Few totals, so that groups hold several hosts (and ties happen).
  memTotal: fc.constantFrom(16384, 32768, 65536),
  memUsedShare: fc.double({ min: 0, max: 1, noNaN: true }),
  cpuTotal: fc.constantFrom(8, 16, 32),
  cpuUsedShare: fc.double({ min: 0, max: 1, noNaN: true }),
  pfs: fc.array(pfArb, { minLength: 1, maxLength: 3 }),
});

const nicArb = fc.record({
  network: fc.constantFrom(...NETS, ...NETS, ...NETS, "physnet9"),
  mode: fc.constantFrom("failover", "failover", "ephemeral", "emulated"),
  policy: fc.constantFrom("mandatory", "requisite", "optional"),
  constraint: fc.constantFrom("none", "none", "none", "vendor", "both"),
  vendor: fc.constantFrom("8086", "15b3"),
  device: fc.constantFrom("154c", "1018"),
});

const caseArb = fc.record({
  hosts: fc.array(hostArb, { minLength: 1, maxLength: 60 }),
  nics: fc.array(nicArb, { maxLength: 3 }),
  memoryMiB: fc.constantFrom(0, 1024, 4096, 8192, 16384),
  vcpus: fc.constantFrom(0, 1, 2, 4, 8),
  numaNode: fc.option(fc.integer({ min: 0, max: 3 }), { nil: undefined }),
  sourceAt: fc.nat(),
  limit: fc.integer({ min: 1, max: 4 }),
  reserveEvery: fc.integer({ min: 0, max: 5 }),
  excludeEvery: fc.integer({ min: 0, max: 9 }),
  // Each host's VFs of one model (the usual fleet): the fast path then takes mixed NIC constraints too.
  oneModel: fc.boolean(),
});

type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

function build(c: Case) {
  const hosts: Host[] = [];
  const pfs: ReturnType<typeof pf>[] = [];
  c.hosts.forEach((x, i) => {
    const name = `h${String(i).padStart(2, "0")}`;
    hosts.push(host(name, {
      state: x.state,
      mem: [x.memTotal, Math.floor(x.memUsedShare * x.memTotal)],
      cpu: [x.cpuTotal, Math.floor(x.cpuUsedShare * x.cpuTotal)],
    }));
    x.pfs.forEach((p, j) => {
      const model = c.oneModel ? { vendor: x.pfs[0]!.vendor, device: x.pfs[0]!.device } : {};
      pfs.push(pf(name, { ...p, ...model, bus: ["3b", "5e", "af"][j]!, leased: Math.floor(p.leasedShare * (p.vfs + 1)) }));
    });
  });
  const snap = cluster(hosts, pfs);
  const nics: PlacementNic[] = c.nics.map((n, k) => ({
    name: `net${k}`,
    network: n.network,
    mode: n.mode,
    policy: n.policy,
    ...(n.constraint === "vendor" ? { vendor: n.vendor } : n.constraint === "both" ? { vendor: n.vendor, device: n.device } : {}),
  }));
  const vm: PlacementVm = {
    uuid: "vm-1",
    name: "vm-1",
    memoryMiB: c.memoryMiB,
    vcpus: c.vcpus,
    host: hosts[c.sourceAt % hosts.length]!.name,
    ...(c.numaNode === undefined ? {} : { numaNode: c.numaNode }),
    nics,
  };
  const reservedVfs = new Set<string>();
  if (c.reserveEvery > 0) snap.vfs.forEach((v, i) => { if (v.leasedBy === null && i % (c.reserveEvery + 2) === 0) reservedVfs.add(vfKey(v.host, v.bdf)); });
  const exclude = c.excludeEvery > 0 ? hosts.filter((_, i) => i % (c.excludeEvery + 3) === 1).map((h) => h.name) : [];
  return { snap, vm, options: { reservedVfs, exclude, limit: c.limit } };
}

/** Placement the plain way: the filter on every host, the exact pick on every survivor, sort. */
function reference({ snap, vm, options }: ReturnType<typeof build>) {
  const index = buildIndex(snap);
  const state = new PlanState(index, options.reservedVfs);
  const req = compileRequest(index, vm, options);
  const codes = new Map<string, string>();
  const all: Evaluated[] = [];
  index.hosts.forEach((h, i) => {
    const mem = h.memoryMiB.total - h.memoryMiB.used;
    const cpu = h.vcpus.total - h.vcpus.used;
    const code = options.exclude.includes(h.name) ? "EXCLUDED"
      : h.name === vm.host ? "SAME_HOST"
      : h.state === "down" ? "HOST_DOWN"
      : h.state === "draining" ? "HOST_DRAINING"
      : mem < vm.memoryMiB ? "NO_MEMORY"
      : cpu < vm.vcpus ? "NO_VCPUS"
      : null;
    if (code !== null) return void codes.set(h.name, code);
    const ev = evaluate(index, state, req, i);
    if (typeof ev === "string") codes.set(h.name, "NO_VF");
    else all.push(ev);
  });
  all.sort((a, b) => b.key - a.key || a.host - b.host);
  return { top: all.slice(0, options.limit).map((e) => index.names[e.host]!), eligible: all.length, codes };
}

describe("scheduler fast path", () => {
  it("is taken once an index has served BUILD_AFTER placements, and answers as the engine did before", () => {
    const k = build({
      hosts: Array.from({ length: 10 }, (_, i) => ({ state: "up", memTotal: 65536, memUsedShare: i / 20, cpuTotal: 32, cpuUsedShare: 0.1, pfs: [{ network: "physnet1", vfs: 4, leasedShare: 0.2, vendor: "8086", device: "154c", numa: 0, bandwidthMbps: 25000 }] })),
      nics: [{ network: "physnet1", mode: "failover", policy: "mandatory", constraint: "none", vendor: "8086", device: "154c" }],
      memoryMiB: 4096, vcpus: 2, numaNode: undefined, sourceAt: 0, limit: 3, reserveEvery: 0, excludeEvery: 0, oneModel: true,
    });
    const index = buildIndex(k.snap);
    const req = compileRequest(index, k.vm, {});
    const answers = new Set<string>();
    let hosts: string[] = [];
    for (let i = 0; i < BUILD_AFTER + 2; i++) {
      const p = place(index, { vm: k.vm });
      answers.add(JSON.stringify(p));
      hosts = p.kind === "placed" ? p.destinations.map((d) => d.host) : [];
    }
    assert.equal(answers.size, 1, "the same answer before and after the orders exist");
    assert.notEqual(fastRun(index, new PlanState(index), req), undefined, "fast path taken");
    assert.deepEqual(hosts, ["h01", "h02", "h03", "h04", "h05"]);
  });

  it("places like the straightforward reference and like the engine (fast-check, random clusters)", () => {
    let fast = 0;
    let runs = 0;
    fc.assert(
      fc.property(caseArb, (c) => {
        runs++;
        const k = build(c);
        shapeIndex(buildIndex(k.snap)); // the orders now, not after BUILD_AFTER placements
        const got = place(k.snap, { vm: k.vm, options: k.options });
        const want = reference(k);

        const index = buildIndex(k.snap);
        const req = compileRequest(index, k.vm, k.options);
        const tookFast = fastRun(index, new PlanState(index, k.options.reservedVfs), req) !== undefined;
        if (tookFast) fast++;

        // The destination(s) and, where the fast path answered, every rejection, as a user reads them.
        // (Where it did not, the engine may count as eligible a host whose exact pick it never tried.)
        assert.deepEqual(got.kind === "placed" ? got.destinations.map((d) => d.host) : [], want.top);
        if (tookFast) {
          assert.deepEqual(new Map(got.rejected.list().map((r) => [r.host, r.code])), want.codes);
          assert.equal(got.eligible, want.eligible);
        }

        // And exactly what the engine alone answers: scores, explanations, messages, counts.
        const engine = toPlacement(index, req, run(index, new PlanState(index, k.options.reservedVfs), req));
        assert.deepEqual(JSON.parse(JSON.stringify(got)), JSON.parse(JSON.stringify(engine)));
        assert.deepEqual(got.rejected.byCode, engine.rejected.byCode);
        assert.equal(got.rejected.count + got.eligible, k.snap.hosts.length);
        for (const code of Object.keys(got.rejected.byCode)) assert.ok(CODE_LIST.includes(code as (typeof CODE_LIST)[number]));
      }),
      { numRuns: Number(process.env.FERRY_FUZZ_CASES ?? 400), seed: 0x5ca1e },
    );
    // Most requests must have gone the fast way, or this test checks nothing new.
    assert.ok(fast > runs / 2, `fast path taken in ${fast} of ${runs} cases`);
  });
});
