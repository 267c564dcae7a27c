import assert from "node:assert/strict";
import { test } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { moduleLoadOrder } from "./kernel-modules.ts";

test("moduleLoadOrder: dependencies first, each once, built-ins dropped, cycles refused", () => {
  const deps: Record<string, string[]> = {
    virtio: ["virtio_ring"],
    virtio_pci: ["virtio_ring", "virtio_pci_modern_dev", "virtio", "builtin_x"],
    virtio_net: ["virtio_ring", "virtio", "net_failover"],
    net_failover: ["failover"],
    "8139cp": ["mii"],
  };
  const order = moduleLoadOrder(["virtio_net", "virtio_pci", "8139cp", "virtio"], (n) => deps[n] ?? [], new Set(["builtin_x"]));
  assert.deepEqual(order, ["virtio_ring", "virtio", "failover", "net_failover", "virtio_net", "virtio_pci_modern_dev", "virtio_pci", "mii", "8139cp"]);
  assert.throws(
    () => moduleLoadOrder(["a"], (n) => (n === "a" ? ["b"] : ["a"])),
    (e: unknown) => isFerryError(e, "FERRY_ERR_GUEST_IMAGE"),
  );
});
