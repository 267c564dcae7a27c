import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { checkMigrationAddress, isAddressInUse, portOrder } from "./migration-net.ts";

const m = { address: "10.92.0.11", ports: { from: 49152, to: 49155 }, tls: null };
const iface = (address: string, internal = false) => ({ address, netmask: "255.255.255.0", family: "IPv4" as const, mac: "02:00:00:00:00:01", internal, cidr: `${address}/24` });

describe("migration network", () => {
  it("accepts an address an interface holds", () => {
    checkMigrationAddress(m, { lo: [iface("127.0.0.1", true)], mig0: [iface("10.92.0.11")] });
  });
  it("refuses an address no interface holds, naming what the host has", () => {
    assert.throws(
      () => checkMigrationAddress(m, { lo: [iface("127.0.0.1", true)], eth0: [iface("10.92.0.12")] }),
      (e: unknown) => isFerryError(e, "FERRY_ERR_CONFIG") && /10\.92\.0\.11 is not an address of this host \(it has 10\.92\.0\.12 \(eth0\)\)/.test(e.message),
    );
    assert.throws(() => checkMigrationAddress(m, { lo: [iface("127.0.0.1", true)] }), /no IPv4 address but loopback/);
  });
  it("tries every port of the range once, from a rotating start", () => {
    assert.deepEqual(portOrder(m, 0), [49152, 49153, 49154, 49155]);
    assert.deepEqual(portOrder(m, 6), [49154, 49155, 49152, 49153]);
    assert.deepEqual(portOrder({ ...m, ports: { from: 50000, to: 50000 } }, 7), [50000]);
  });
  it("recognises QEMU's busy-port error", () => {
    assert.ok(isAddressInUse("Failed to bind socket: Address already in use"));
    assert.ok(!isAddressInUse("Connection refused"));
  });
});
