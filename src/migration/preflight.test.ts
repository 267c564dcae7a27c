import assert from "node:assert/strict";
import { test } from "node:test";
import { compareVersions, preflightChecks, tcgDirtySyncExposed } from "./preflight.ts";
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

test("a file-backed VM of whole MiB is blocked where QEMU < 9.0 runs under TCG (either end); with its RAM trimmed, or on KVM or QEMU 9.0, it may go", () => {
  const shared = { ...vm, sharedMemory: true };
  const tcg = (name: string, version = "7.2.22"): HostFacts => ({ ...host(name, version), accel: "tcg" });
  const kvm = (name: string): HostFacts => ({ ...host(name), accel: "kvm" });
  const check = (v: PreflightVm, a: HostFacts, b: HostFacts) => preflightChecks(v, a, b).find((x) => x.check === "SHARED_MEMORY")!;
  const blocked = check(shared, kvm("a"), tcg("b"));
  assert.equal(blocked.status, "blocker");
  assert.match(blocked.message, /on b \(TCG, QEMU 7\.2\.22\)/);
  assert.match(blocked.message, /stop web and start it again \('ferry vm stop web', 'ferry vm start web'\), or move it with 'ferry migrate web --local'/);
  assert.equal(check(shared, tcg("a"), kvm("b")).status, "blocker", "the source's QEMU loses the writes");
  assert.equal(check(shared, { name: "a", accel: "tcg" }, kvm("b")).status, "blocker", "an unreported QEMU version under TCG counts as exposed");
  assert.equal(check(shared, kvm("a"), kvm("b")).status, "ok");
  assert.equal(check(shared, tcg("a", "9.0.0"), tcg("b", "9.1.2")).status, "ok", "fixed in QEMU 9.0");
  const trimmed = check({ ...shared, ramTrimKiB: 8 }, tcg("a"), tcg("b"));
  assert.equal(trimmed.status, "ok");
  assert.match(trimmed.message, /8 KiB short of whole MiB/);
  assert.equal(tcgDirtySyncExposed({ accel: "kvm" }), false);
  assert.equal(tcgDirtySyncExposed({ accel: "tcg", qemu: qemu("8.2.2", "pc-q35-8.2") }), true);
});

test("an anonymous VM of whole MiB migrating where QEMU < 9.0 runs under TCG: a warning (it may lose writes), not a blocker; trimmed, or on KVM, ok", () => {
  const tcg = (name: string): HostFacts => ({ ...host(name), accel: "tcg" });
  const kvm = (name: string): HostFacts => ({ ...host(name), accel: "kvm" });
  const check = (v: PreflightVm, a: HostFacts, b: HostFacts) => preflightChecks(v, a, b).find((x) => x.check === "SHARED_MEMORY")!;
  const whole = check(vm, tcg("a"), kvm("b"));
  assert.equal(whole.status, "warning");
  assert.match(whole.message, /web's RAM is anonymous memory of whole MiB, and QEMU before 9\.0 under TCG, as on a \(TCG, QEMU 7\.2\.22\), may lose guest writes/);
  assert.match(whole.message, /stop web and start it again when you can/);
  const trimmed = check({ ...vm, ramTrimKiB: 8 }, tcg("a"), tcg("b"));
  assert.equal(trimmed.status, "ok");
  assert.match(trimmed.message, /^RAM is anonymous memory, 8 KiB short of whole MiB/);
  assert.equal(check(vm, kvm("a"), kvm("b")).status, "ok");
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
