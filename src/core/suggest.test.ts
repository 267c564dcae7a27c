import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { closest, didYouMean, editDistance } from "./suggest.ts";

describe("did you mean", () => {
  it("counts a swap of neighbours as one edit", () => {
    assert.equal(editDistance("phsynet1", "physnet1"), 1);
    assert.equal(editDistance("physnet1", "physnet1"), 0);
    assert.equal(editDistance("physnet", "physnet1"), 1);
    assert.equal(editDistance("", "abc"), 3);
  });
  it("suggests the closest network for a typo, nothing for an unrelated name", () => {
    const nets = ["physnet1", "physnet2", "storage"];
    assert.equal(closest("phsynet1", nets), "physnet1");
    assert.equal(closest("PHYSNET2", nets), "physnet2");
    assert.equal(closest("storgae", nets), "storage");
    assert.equal(closest("internet", nets), undefined);
    assert.equal(closest("x", nets), undefined);
    assert.equal(didYouMean("phsynet1", nets), " (did you mean physnet1?)");
    assert.equal(didYouMean("mgmt", nets), "");
  });
});
