import assert from "node:assert/strict";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { FakeClock } from "../core/clock.ts";
import { isFerryError } from "../core/errors.ts";
import { run } from "../core/run.ts";
import type { Feature } from "./features.ts";
import { applyFeatures, portProfileFeature, removeFeatures, vfSetupFeature } from "./features.ts";
import { openStateDb, RecordStore } from "./leases.ts";
import { fakePf } from "./testdata/fake-pf.ts";
import type { FakeVf } from "./testdata/fake-pf.ts";

const base = await mkdtemp(join(tmpdir(), "ferry-features-"));
after(() => rm(base, { recursive: true, force: true }));
let n = 0;
const signal = (): AbortSignal => AbortSignal.timeout(10_000);

function stateRecords(): { records: RecordStore; file: string; close: () => void } {
  const file = join(base, `db${n++}`, "state.db");
  const db = openStateDb(file);
  return { records: new RecordStore(db, new FakeClock()), file, close: () => db.close() };
}

const pristine = (): FakeVf[] => [
  { mac: "00:00:00:00:00:00", vlan: 0, spoofchk: true, trust: false },
  { mac: "00:00:00:00:00:00", vlan: 0, spoofchk: true, trust: false },
  { mac: "02:11:22:33:44:55", vlan: 42, spoofchk: false, trust: true },
];

// A real executable standing in for the operator's port-profile tool: logs its argv, fails for profile "broken".
async function portProfileExe(): Promise<{ exe: string; log: string }> {
  const exe = join(base, `pp${n++}.sh`);
  const log = `${exe}.log`;
  await writeFile(exe, `#!/bin/sh\necho "$@" >> '${log}'\nif [ "$2" = broken ]; then echo "switch refused profile $2" >&2; exit 3; fi\n`);
  await chmod(exe, 0o755);
  return { exe, log };
}

const readLog = async (log: string): Promise<string[]> => (await readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean);

describe("features", () => {
  test("VF setup applies MAC/VLAN/spoofchk/trust and deinit restores the VF's previous settings", async () => {
    const pf = fakePf("enp59s0f0", pristine());
    const { records, close } = stateRecords();
    const f = vfSetupFeature({ run: pf.run, records }, { vf: "0000:3b:10.2", pf: "enp59s0f0", vfIndex: 2, settings: { mac: "52:54:00:00:00:02", vlan: 100, spoofchk: true, trust: false } });
    await f.init(signal());
    await f.init(signal()); // idempotent: the saved "previous" is still the original
    assert.deepEqual(pf.vfs[2], { mac: "52:54:00:00:00:02", vlan: 100, spoofchk: true, trust: false });
    assert.deepEqual(pf.calls.filter((c) => c[2] === "set").at(0), ["ip", "link", "set", "dev", "enp59s0f0", "vf", "2", "mac", "52:54:00:00:00:02", "vlan", "100", "spoofchk", "on", "trust", "off"]);
    await f.deinit(signal());
    assert.deepEqual(pf.vfs[2], pristine()[2]);
    await f.deinit(signal()); // idempotent: nothing saved, nothing run
    assert.deepEqual(pf.calls.filter((c) => c[2] === "set").slice(2), [
      ["ip", "link", "set", "dev", "enp59s0f0", "vf", "2", "mac", "02:11:22:33:44:55", "vlan", "42"],
      ["ip", "link", "set", "dev", "enp59s0f0", "vf", "2", "spoofchk", "off"],
      ["ip", "link", "set", "dev", "enp59s0f0", "vf", "2", "trust", "on"],
    ]);
    close();
  });

  test("a restarted agent can still deinit: the previous settings live in the state file", async () => {
    const pf = fakePf("enp59s0f0", pristine());
    const first = stateRecords();
    const spec = { vf: "0000:3b:10.2", pf: "enp59s0f0", vfIndex: 2, settings: { mac: "52:54:00:00:00:02" } };
    await vfSetupFeature({ run: pf.run, records: first.records }, spec).init(signal());
    first.close();
    const db = openStateDb(first.file);
    await vfSetupFeature({ run: pf.run, records: new RecordStore(db, new FakeClock()) }, spec).deinit(signal());
    db.close();
    assert.deepEqual(pf.vfs, pristine());
  });

  test("a failing init undoes the earlier features in reverse and restores every VF", async () => {
    const pf = fakePf("enp59s0f0", pristine());
    pf.refuse.push({ vf: 1, key: "trust" }); // ixgbevf-like driver without trust: MAC and VLAN get applied, then it fails
    const { records, close } = stateRecords();
    const pp = await portProfileExe();
    const deps = { run: pf.run, records };
    const order: string[] = [];
    const traced = (f: Feature): Feature => ({
      name: f.name,
      init: async (s) => { order.push(`init ${f.name}`); await f.init(s); },
      deinit: async (s) => { order.push(`deinit ${f.name}`); await f.deinit(s); },
    });
    const list = [
      vfSetupFeature(deps, { vf: "0000:3b:10.0", pf: "enp59s0f0", vfIndex: 0, settings: { mac: "52:54:00:00:00:10", vlan: 5 } }),
      portProfileFeature({ run }, { exe: pp.exe, profile: "gold", mac: "52:54:00:00:00:10", vf: "0000:3b:10.0" }),
      vfSetupFeature(deps, { vf: "0000:3b:10.1", pf: "enp59s0f0", vfIndex: 1, settings: { mac: "52:54:00:00:00:11", vlan: 5, trust: true } }),
      vfSetupFeature(deps, { vf: "0000:3b:10.2", pf: "enp59s0f0", vfIndex: 2, settings: { mac: "52:54:00:00:00:12" } }),
    ].map(traced);
    await assert.rejects(applyFeatures(list, signal()), (e: unknown) => {
      assert.ok(isFerryError(e, "FERRY_ERR_FEATURE"));
      assert.match(e.message, /feature vf-setup:0000:3b:10.1: init failed: .*Operation not supported/);
      assert.deepEqual(e.details["rollbackFailures"], []);
      return true;
    });
    assert.deepEqual(order, [
      "init vf-setup:0000:3b:10.0",
      "init port-profile:gold:0000:3b:10.0",
      "init vf-setup:0000:3b:10.1",
      "deinit vf-setup:0000:3b:10.1",
      "deinit port-profile:gold:0000:3b:10.0",
      "deinit vf-setup:0000:3b:10.0",
    ]);
    assert.deepEqual(pf.vfs, pristine(), "every VF has its previous MAC, VLAN, spoof check and trust");
    assert.deepEqual(await readLog(pp.log), ["associate gold 52:54:00:00:00:10 0000:3b:10.0", "disassociate gold 52:54:00:00:00:10 0000:3b:10.0"]);
    assert.deepEqual(records.list("vf-setup"), []);
    close();
  });

  test("port profile: non-zero exit fails with the tool's stderr; removeFeatures continues past errors and reports them", async () => {
    const pp = await portProfileExe();
    const pf = fakePf("enp59s0f0", pristine());
    const { records, close } = stateRecords();
    const broken = portProfileFeature({ run }, { exe: pp.exe, profile: "broken", mac: "52:54:00:00:00:20", vf: "0000:3b:10.0" });
    await assert.rejects(applyFeatures([broken], signal()), (e: unknown) => {
      assert.ok(isFerryError(e, "FERRY_ERR_FEATURE"));
      assert.match(e.message, /exit 3: switch refused profile broken/);
      return true;
    });
    const vfs = vfSetupFeature({ run: pf.run, records }, { vf: "0000:3b:10.0", pf: "enp59s0f0", vfIndex: 0, settings: { mac: "52:54:00:00:00:20" } });
    await applyFeatures([vfs], signal());
    const failures = await removeFeatures([vfs, broken], signal());
    assert.deepEqual(failures.map((f) => f.feature), ["port-profile:broken:0000:3b:10.0"]);
    assert.deepEqual(pf.vfs, pristine(), "the VF was restored although a later feature's deinit failed first");
    assert.throws(() => portProfileFeature({ run }, { exe: pp.exe, profile: "--help", mac: "52:54:00:00:00:20", vf: "0000:3b:10.0" }), (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"));
    close();
  });
});
