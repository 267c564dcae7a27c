import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { parseVmSpec, ramSizeArg } from "./vm.ts";

const good = {
  uuid: "0b5c3f8e-1d2a-4c4b-9a77-3e2f1d0c9b8a",
  name: "vm1",
  memoryMiB: 256,
  vcpus: 1,
  kernel: "/var/cache/ferry/guest/x/vmlinux",
  initrd: "/var/cache/ferry/guest/x/initrd",
  cmdline: "console=ttyS0",
  nics: [
    {
      name: "net0", mode: "failover", mac: "52:54:00:12:34:56", standby: { kind: "none" },
      primary: { kind: "vfio", host: "0000:3b:10.1" }, guestPorts: { standby: 1, primary: 2 },
    },
  ],
};

function withField(path: (string | number)[], value: unknown): unknown {
  const copy = structuredClone(good) as Record<string, unknown>;
  let o: Record<string | number, unknown> = copy;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
  o[path.at(-1)!] = value;
  return copy;
}

describe("VM spec validation", () => {
  it("accepts a valid spec and normalizes case", () => {
    const s = parseVmSpec(withField(["nics", 0, "mac"], "52:54:00:AB:CD:EF"));
    assert.equal(s.nics[0]!.mac, "52:54:00:ab:cd:ef");
    assert.equal(s.nics[0]!.primary?.kind, "vfio");
  });

  const cases: [string, (string | number)[], unknown][] = [
    ["an invalid MAC", ["nics", 0, "mac"], "52:54:00:12:34"],
    ["a multicast MAC", ["nics", 0, "mac"], "01:00:5e:00:00:01"],
    ["an invalid UUID", ["uuid"], "not-a-uuid"],
    ["a PCI address outside the bus syntax", ["nics", 0, "primary", "host"], "0000:00:1f.9"],
    ["a PCI address with path traversal", ["nics", 0, "primary", "host"], "../../etc"],
    ["a memory size below the minimum", ["memoryMiB"], 1],
    ["a fractional memory size", ["memoryMiB"], 256.5],
    ["a relative kernel path", ["kernel"], "vmlinux"],
    ["a kernel path with '..'", ["kernel"], "/var/cache/../../etc/shadow"],
    ["a tap backend (the agent names taps)", ["nics", 0, "standby", "kind"], "tap"],
    ["a RAM file path (the agent picks it)", ["sharedMemoryPath"], "/etc/shadow"],
    ["a QEMU binary in the spec", ["qemuBinary"], "/bin/sh"],
    ["an unknown spec field", ["memory"], 256],
    ["an unknown NIC field", ["nics", 0, "ifname"], "eth0"],
    ["a non-boolean sharedMemory", ["sharedMemory"], "/dev/shm/x"],
    ["a RAM trim other than 8 KiB", ["ramTrimKiB"], 4096],
    ["an unknown NIC mode", ["nics", 0, "mode"], "sriov"],
    ["a guest port out of range", ["nics", 0, "guestPorts", "primary"], 99],
  ];
  for (const [what, path, value] of cases) {
    it(`rejects ${what}, naming the field and the value`, () => {
      const field = path.map((p) => (typeof p === "number" ? `[${p}]` : `.${p}`)).join("").replace(/^\./, "").replace(/\.\[/g, "[");
      assert.throws(
        () => parseVmSpec(withField(path, value)),
        (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID") && e.details["field"] === field && e.message.includes(JSON.stringify(value)),
      );
    });
  }

  it("a body naming a RAM file is told that the agent chooses paths, and how to ask for shared memory", () => {
    assert.throws(() => parseVmSpec(withField(["sharedMemoryPath"], "/dev/shm/x")), (e: unknown) =>
      isFerryError(e, "FERRY_ERR_INVALID") && /the agent chooses every path it gives QEMU/.test(e.message) && /"sharedMemory": true/.test(e.message));
    assert.equal(parseVmSpec(withField(["sharedMemory"], true)).sharedMemory, true);
    assert.equal(parseVmSpec(withField(["sharedMemory"], false)).sharedMemory, undefined);
  });

  it("a RAM trim of 8 KiB is kept, and QEMU is given the trimmed size in KiB", () => {
    const spec = parseVmSpec(withField(["ramTrimKiB"], 8));
    assert.equal(spec.ramTrimKiB, 8);
    assert.equal(ramSizeArg({ memoryMiB: 512, ramTrimKiB: 8 }), "524280k");
    assert.equal(ramSizeArg({ memoryMiB: 512 }), "512M");
  });

  it("rejects two NIC halves on one guest port", () => {
    assert.throws(() => parseVmSpec(withField(["nics", 0, "guestPorts", "primary"], 1)), (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID") && /already used/.test(e.message));
  });
});
