// labSpec: the lab's TLS switch (default on; lab.yaml `tls: false` or the --no-tls flag turns it off);
// its controllers and store (one on SQLite by default; several need etcd).
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

describe("labSpec controllers and store", () => {
  it("is one controller on SQLite by default; flags win over lab.yaml", () => {
    assert.deepEqual([labSpec({}).controllers, labSpec({}).store], [1, "sqlite"]);
    const s = labSpec({ configText: "controllers: 3\nstore: etcd\n" });
    assert.deepEqual([s.controllers, s.store], [3, "etcd"]);
    assert.deepEqual([labSpec({ configText: "controllers: 3\nstore: etcd\n", controllers: 1 }).controllers], [1]);
    assert.equal(labSpec({ store: "etcd" }).controllers, 1);
  });
  it("refuses several controllers on SQLite, saying to add --store etcd", () => {
    assert.throws(() => labSpec({ controllers: 3 }), (e: unknown) => e instanceof FerryError && e.code === "FERRY_ERR_CONFIG" && /--store etcd/.test(e.message));
  });
  it("refuses an unknown store and a count out of range, naming the flag or the key", () => {
    assert.throws(() => labSpec({ store: "zookeeper" }), (e: unknown) => e instanceof FerryError && /--store.*sqlite, etcd/.test(e.message));
    assert.throws(() => labSpec({ configText: "controllers: 9\nstore: etcd\n" }), (e: unknown) => e instanceof FerryError && /controllers.*between 1 and 5/.test(e.message));
    assert.throws(() => labSpec({ controllers: 0, store: "etcd" }), (e: unknown) => e instanceof FerryError && /--controllers/.test(e.message));
  });
});
