// The fault matrix (DESIGN invariants under faults): for every phase of the
// protocol × every fault — SIGKILL of the controller, of the source or the
// destination agent, of the source or the destination QEMU, SIGSTOP of
// either QEMU, the controller↔agent connection cut — held for a short, a
// medium and a longer-than-the-step-deadline time (plan.ts), the fault lands
// at the phase (a lab hold:<step> switch stops the migration there, and the
// record must be in that phase), and after it ends: the VM has exactly one
// QEMU process in /proc (none when the only one holding the guest was
// killed) and the guest runs in the instance the store names (or the store
// says it is down); no instance left over; every VF lease held by a running
// instance; a terminal outcome; the guest did not stand still past its
// deadline; a downtime above its limit is a warning; where the real test
// guest runs, its heartbeat went on. Every point starts from a healthy
// cluster (FaultCluster.waitHealthy) and runs one after the other; a table of
// phase × fault → outcome is printed at the end.
//
//   scripts/rt node --test --test-concurrency=1 test/faults/matrix.test.ts          the short form (npm test)
//   FERRY_MATRIX_FORM=long …   every duration of every held fault (npm run test:faults:long)
//   FERRY_MATRIX_GUEST=all …   the real test guest at every point (slower); default: the controller column
//   FERRY_MATRIX_ONLY=perform:cut,finish,perform:controller:long   run only these phases / points
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { FaultCluster } from "./cluster.ts";
import type { GuestKind, PointResult, TestVm } from "./points.ts";
import { createVm, removeVm, runPoint, salvage } from "./points.ts";
import { MATRIX_DEADLINES, matrixPoints, PHASES, pointKey, selects, unknownSelectors } from "./plan.ts";
import type { FaultKind } from "./plan.ts";
import { renderMatrix } from "./table.ts";

const form = process.env["FERRY_MATRIX_FORM"] === "long" ? "long" : "short";
const only = (process.env["FERRY_MATRIX_ONLY"] ?? "").split(",").filter((s) => s !== "");
const guestFor = (fault: FaultKind): GuestKind => (process.env["FERRY_MATRIX_GUEST"] === "all" || fault === "controller" ? "guest" : "no-os");
const d = MATRIX_DEADLINES;
const deadlines = `{ unplugMs: ${d.unplugMs}, convergeMs: ${d.convergeMs}, precheckMs: ${d.precheckMs}, primaryBackMs: ${d.primaryBackMs}, stepMs: ${d.stepMs} }`;

describe(`fault matrix (${form} form): phase × fault × duration`, { timeout: form === "long" ? 4 * 3_600_000 : 900_000 }, () => {
  let c: FaultCluster;
  const results: PointResult[] = [];
  const vms: Partial<Record<GuestKind, TestVm>> = {};
  const t0 = performance.now();
  const points = matrixPoints(form).filter((p) => selects(only, p));

  before(async () => {
    assert.deepEqual(unknownSelectors(only), [], "FERRY_MATRIX_ONLY names an unknown phase, fault or duration");
    c = await FaultCluster.start({ hosts: [{ name: "host-a", vfs: 2 }, { name: "host-b", vfs: 2 }], deadlines, fabric: true });
  });

  after(async () => {
    process.stdout.write(`\n${renderMatrix(results, form)}\nmatrix (${form} form): ${results.length} of ${points.length} points ran in ${((performance.now() - t0) / 1000).toFixed(0)} s; guest memory checked ${c?.memchecks.compared ?? 0} times, ${c?.memchecks.mismatched ?? 0} different from the boot checksum\n`);
    await c?.close();
  });

  for (const p of points) {
    const label = PHASES.find((x) => x.id === p.phase)!.label;
    it(`${label} × ${p.fault}${p.duration === null ? "" : ` (${p.duration})`}`, async () => {
      const kind = guestFor(p.fault);
      const vm = (vms[kind] ??= await createVm(c, kind, "host-a", kind, true));
      const r = await runPoint(c, vm, p).catch(async (e: unknown) => {
        await salvage(c, vm);
        delete vms[kind];
        throw e;
      });
      results.push(r);
      if (r.down || r.violations.length > 0) {
        await removeVm(c, vm);
        delete vms[kind];
      }
      // the agents' own account of a failed point (the cluster, and its logs, are gone after the run)
      const logs = r.violations.length > 0 && r.migrationId !== null ? `\n${await c.agentLogs({ mentioning: r.migrationId })}` : "";
      assert.deepEqual(r.violations, [], `${pointKey(p)}: ${r.outcome} (${r.reason})${logs}`);
    });
  }
});
