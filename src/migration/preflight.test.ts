import assert from "node:assert/strict";
import { test } from "node:test";
import { compareVersions, preflightChecks } from "./preflight.ts";
import type { HostFacts, PreflightVm } from "./preflight.ts";

const vm: PreflightVm = { name: "web", memoryMiB: 1024, machine: "q35", cpuModel: "qemu64" };
const qemu = (version: string, q35: string) => ({ version, machines: [{ name: "q35", aliasOf: q35 }, { name: q35 }, { name: "pc-q35-7.2" }], cpuModels: ["qemu64", "host"] });
const host = (name: string, version = "7.2.22", q35 = "pc-q35-7.2", availableMiB = 8192): HostFacts => ({ name, qemu: qemu(version, q35), memory: { totalMiB: 16384, availableMiB } });
const status = (cs: ReturnType<typeof preflightChecks>) => Object.fromEntries(cs.map((c) => [c.check, c.status]));

test("same QEMU, room to spare: every check ok, each with its reason", () => {
  const cs = preflightChecks(vm, host("a"), host("b"));
  assert.deepEqual(status(cs), { QEMU_VERSION: "ok", MACHINE_TYPE: "ok", CPU_MODEL: "ok", MEMORY: "ok", SHARED_MEMORY: "ok" });
  assert.match(cs.find((c) => c.check === "MACHINE_TYPE")!.message, /q35 is pc-q35-7.2 on both hosts/);
});

test("an older QEMU on the destination is a blocker that names both versions", () => {
  const c = preflightChecks(vm, host("a", "8.2.0", "pc-q35-8.2"), host("b")).find((x) => x.check === "QEMU_VERSION")!;
  assert.equal(c.status, "blocker");
  assert.match(c.message, /QEMU 7\.2\.22, older than a's 8\.2\.0/);
});

test("a newer destination whose q35 is another machine version: a blocker (Ferry starts it with q35)", () => {
  const cs = preflightChecks(vm, host("a"), host("b", "8.2.0", "pc-q35-8.2"));
  assert.equal(status(cs)["QEMU_VERSION"], "ok");
  const m = cs.find((x) => x.check === "MACHINE_TYPE")!;
  assert.equal(m.status, "blocker");
  assert.match(m.message, /on b is pc-q35-8\.2, not the source's pc-q35-7\.2/);
});

test("a CPU model the destination lacks, and too little free memory, are blockers; little headroom a warning", () => {
  const b = host("b", "7.2.22", "pc-q35-7.2", 512);
  const cs = preflightChecks({ ...vm, cpuModel: "EPYC-Genoa" }, host("a"), b);
  assert.equal(status(cs)["CPU_MODEL"], "blocker");
  assert.match(cs.find((c) => c.check === "MEMORY")!.message, /1024 MiB of RAM and b has 512 MiB available/);
  assert.equal(status(preflightChecks(vm, host("a"), host("b", "7.2.22", "pc-q35-7.2", 2000)))["MEMORY"], "warning");
});

test("a file-backed VM is blocked everywhere", () => {
  const c = preflightChecks({ ...vm, sharedMemory: true }, host("a"), host("b")).find((x) => x.check === "SHARED_MEMORY")!;
  assert.equal(c.status, "blocker");
  assert.match(c.message, /--local/);
});

test("an agent that reported nothing: unchecked, saying which host", () => {
  const cs = preflightChecks(vm, host("a"), { name: "old" });
  assert.deepEqual(status(cs), { QEMU_VERSION: "unchecked", MACHINE_TYPE: "unchecked", CPU_MODEL: "unchecked", MEMORY: "unchecked", SHARED_MEMORY: "ok" });
  assert.match(cs[0]!.message, /old's agent reported no QEMU version/);
});

test("versions compare numerically", () => {
  assert.ok(compareVersions("7.10.0", "7.2.22") > 0);
  assert.ok(compareVersions("7.2", "7.2.1") < 0);
  assert.equal(compareVersions("8.0.0", "8.0"), 0);
});
