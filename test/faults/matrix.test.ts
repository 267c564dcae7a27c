// The fault matrix (DESIGN invariants under faults): for every phase of the
// protocol × every fault — SIGKILL of the controller, of the source or the
// destination agent, of the source or the destination QEMU, the
// controller↔agent connection cut — the fault lands at the phase (a lab
// hold:<step> switch stops the migration there), what was killed is
// restarted (the connection restored), and then: the guest runs in exactly
// one instance, the one the store names (or, when the only QEMU holding it
// was killed, none, and the store says it is down); no instance left over; no
// VF lease leaked or held by a dead instance; the migration ended with a
// terminal outcome; where the real test guest runs, its heartbeat went on.
// Points (test/faults/points.ts) run one after the other on one cluster; a
// table of phase × fault → outcome is printed at the end.
//
//   scripts/rt node --test --test-concurrency=1 test/faults/matrix.test.ts
//   FERRY_MATRIX_GUEST=all …   the real test guest at every point (slower); default: the controller column
//   FERRY_MATRIX_ONLY=perform:cut,finish   run only these phases / points
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { FaultCluster } from "./cluster.ts";
import type { FaultKind, GuestKind, PhaseId, PointResult, TestVm } from "./points.ts";
import { applicable, createVm, FAULT_KINDS, PHASES, removeVm, runPoint, salvage } from "./points.ts";
import { renderMatrix } from "./table.ts";

const only = (process.env["FERRY_MATRIX_ONLY"] ?? "").split(",").filter((s) => s !== "");
const selected = (phase: PhaseId, fault: FaultKind): boolean => only.length === 0 || only.some((o) => o === phase || o === `${phase}:${fault}`);
const guestFor = (fault: FaultKind): GuestKind => (process.env["FERRY_MATRIX_GUEST"] === "all" || fault === "controller" ? "guest" : "no-os");

describe("fault matrix: phase × fault", { timeout: 900_000 }, () => {
  let c: FaultCluster;
  const results: PointResult[] = [];
  const vms: Partial<Record<GuestKind, TestVm>> = {};
  const t0 = performance.now();

  before(async () => {
    c = await FaultCluster.start({ hosts: [{ name: "host-a", vfs: 2 }, { name: "host-b", vfs: 2 }] });
  });

  after(async () => {
    process.stdout.write(`\n${renderMatrix(results)}\nmatrix: ${results.length} points in ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
    await c?.close();
  });

  for (const phase of PHASES) {
    for (const fault of FAULT_KINDS) {
      if (!applicable(phase.id, fault) || !selected(phase.id, fault)) continue;
      it(`${phase.label} × ${fault}`, async () => {
        const kind = guestFor(fault);
        const vm = (vms[kind] ??= await createVm(c, kind, "host-a", kind, true));
        const r = await runPoint(c, vm, phase.id, fault).catch(async (e: unknown) => {
          await salvage(c, vm);
          delete vms[kind];
          throw e;
        });
        results.push(r);
        if (r.down || r.violations.length > 0) {
          await removeVm(c, vm);
          delete vms[kind];
        }
        assert.deepEqual(r.violations, [], `${phase.label} × ${fault}: ${r.outcome} (${r.reason})`);
      });
    }
  }
});
