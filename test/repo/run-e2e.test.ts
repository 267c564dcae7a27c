// The order npm test runs its end-to-end files in (test/run-e2e.ts): the
// longest first by the measured seconds, a file not measured as DEFAULT_S,
// unit files (*.unit.test.ts) and other files left out; npm test's fault phase.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { BESIDE_MATRIX, e2eTestFiles, faultPhaseFiles } from "../run-e2e.ts";

describe("e2e file order", () => {
  it("longest first, unmeasured files as 20 s, ties by name; unit and helper files left out", () => {
    const base = mkdtempSync(join(tmpdir(), "ferry-run-e2e-"));
    try {
      for (const d of ["a", "b"]) mkdirSync(join(base, d));
      for (const f of ["a/long.test.ts", "a/short.test.ts", "a/new.test.ts", "b/mid.test.ts", "b/zz-new.test.ts", "b/plan.unit.test.ts", "b/helpers.ts"]) writeFileSync(join(base, f), "");
      const seconds = { "a/long.test.ts": 90, "a/short.test.ts": 3, "b/mid.test.ts": 30 };
      assert.deepEqual(e2eTestFiles(base, ["a", "b"], seconds), ["a/long.test.ts", "b/mid.test.ts", "a/new.test.ts", "b/zz-new.test.ts", "a/short.test.ts"]);
      assert.deepEqual(e2eTestFiles(base, ["b"], seconds), ["b/mid.test.ts", "b/zz-new.test.ts"]);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});

describe("npm test's fault phase", () => {
  it("the matrix first, alone in its lane; the other fault files longest first, then the light files that run beside it", () => {
    const base = mkdtempSync(join(tmpdir(), "ferry-run-faults-"));
    try {
      for (const d of ["test/faults", "test/e2e", "test/security"]) mkdirSync(join(base, d), { recursive: true });
      const files = ["test/faults/matrix.test.ts", "test/faults/ha.test.ts", "test/faults/stale.test.ts", "test/faults/plan.unit.test.ts", "test/faults/new.test.ts",
        "test/e2e/migration-live.test.ts", "test/e2e/lab-vm-ops.test.ts", "test/security/cluster.test.ts", "test/security/tls.test.ts"];
      for (const f of files) writeFileSync(join(base, f), "");
      const seconds = { "test/faults/matrix.test.ts": 400, "test/faults/ha.test.ts": 100, "test/faults/stale.test.ts": 10, "test/e2e/migration-live.test.ts": 25, "test/security/cluster.test.ts": 19, "test/security/tls.test.ts": 2 };
      assert.deepEqual(faultPhaseFiles(base, seconds), [
        "test/faults/matrix.test.ts", "test/faults/ha.test.ts", "test/faults/new.test.ts", "test/faults/stale.test.ts",
        "test/e2e/migration-live.test.ts", "test/security/cluster.test.ts", "test/security/tls.test.ts",
      ]);
      // each file named to run beside the matrix is one of this repository's e2e or security files (a stale name would leave the lane emptier without a word)
      for (const f of BESIDE_MATRIX) {
        assert.match(f, /^test\/(e2e|security)\/[a-z-]+\.test\.ts$/);
        assert.ok(existsSync(join(import.meta.dirname, "..", "..", f)), `${f} does not exist`);
      }
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
