// The order npm test runs its end-to-end files in (test/run-e2e.ts): the
// longest first by the measured seconds, a file not measured as DEFAULT_S,
// unit files (*.unit.test.ts) and other files left out.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { e2eTestFiles } from "../run-e2e.ts";

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
