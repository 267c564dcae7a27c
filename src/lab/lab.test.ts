// labSpec: the lab's TLS switch (default on; lab.yaml `tls: false` or the --no-tls flag turns it off).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FerryError } from "../core/errors.ts";
import { labSpec } from "./lab.ts";

describe("labSpec tls", () => {
  it("is on by default", () => {
    assert.equal(labSpec({}).tls, true);
    assert.equal(labSpec({ configText: "networks: [physnet1]\n" }).tls, true);
  });
  it("lab.yaml tls: false turns it off; the flag wins over the file", () => {
    assert.equal(labSpec({ configText: "tls: false\n" }).tls, false);
    assert.equal(labSpec({ configText: "tls: false\n", tls: true }).tls, true);
    assert.equal(labSpec({ configText: "tls: true\n", tls: false }).tls, false);
  });
  it("refuses a tls value that is not a boolean", () => {
    assert.throws(() => labSpec({ configText: "tls: yes please\n" }), (e: unknown) => e instanceof FerryError && e.code === "FERRY_ERR_INVALID" && /tls/.test(e.message));
  });
});
