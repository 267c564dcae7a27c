// The short soak of npm test (FERRY_SOAK_OPS=200: the long one, as in
// npm run test:faults:long): a few
// random migrations, cancels and fault switches on three lab hosts with
// scarce VFs; the store must match the hosts after every operation.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { renderSoak, runSoak } from "./soak.ts";

const ops = Number(process.env["FERRY_SOAK_OPS"] ?? "30");

describe(`randomized soak (${ops} operations)`, { timeout: 120_000 + ops * 6_000 }, () => {
  it("no invariant violated after any operation", async () => {
    const seed = Number(process.env["FERRY_SOAK_SEED"] ?? "11");
    // each operation as it ends (and starts), so that a run cut by the timeout still shows where it stood
    const r = await runSoak({ ops, seed, log: (l) => void process.stdout.write(`${new Date().toISOString().slice(11, 23)} ${l}\n`) });
    process.stdout.write(`\n${renderSoak(r)}\n(seed ${seed})\n`);
    assert.deepEqual(r.violations, []);
    assert.ok(r.ops > 0 && Object.values(r.outcomes).reduce((a, b) => a + b, 0) > 0);
  });
});
