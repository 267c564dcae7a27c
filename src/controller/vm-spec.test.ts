import assert from "node:assert/strict";
import { test } from "node:test";
import { parseVmSpec } from "../model/vm.ts";
import type { VmRecord } from "../store/cluster.ts";
import { isFerryError } from "../core/errors.ts";
import { assignGuestPorts, buildVmSpec, checkGuestFill, guestAddress, newMac } from "./vm-spec.ts";

test("guest ports: failover takes two, ephemeral and emulated one, never reused", () => {
  assert.deepEqual(assignGuestPorts(["failover", "ephemeral", "emulated", "failover"]), [{ standby: 1, primary: 2 }, { primary: 3 }, { standby: 4 }, { standby: 5, primary: 6 }]);
});

test("MACs are 52:54:00 locally administered and never one already taken", () => {
  const bytes = [Buffer.from([1, 2, 3]), Buffer.from([1, 2, 3]), Buffer.from([0xaa, 0xbb, 0xcc])];
  const taken = new Set(["52:54:00:01:02:03"]);
  assert.equal(newMac(taken, () => bytes.shift()!), "52:54:00:aa:bb:cc");
});

test("addresses: one /24 per network, the host part per VM", () => {
  assert.match(guestAddress("physnet1", 1), /^10\.\d+\.\d+\.10\/24$/);
  assert.equal(guestAddress("physnet1", 2).split(".").slice(0, 3).join("."), guestAddress("physnet1", 7).split(".").slice(0, 3).join("."));
  assert.notEqual(guestAddress("physnet1", 2), guestAddress("physnet1", 3));
});

test("the spec: stand-in or vfio primaries by what the host says, a valid VmSpec", () => {
  const vm: VmRecord = {
    uuid: "6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab", name: "web", memoryMiB: 256, vcpus: 1, host: "host-a", instanceId: null, state: "stopped", noOs: false, seq: 1, createdAt: 0, updatedAt: 0,
    nics: [
      { name: "net0", network: "physnet1", mode: "failover", policy: "mandatory", mac: "52:54:00:00:00:01", guestPorts: { standby: 1, primary: 2 }, address: "10.1.2.10/24", vf: "0000:3b:10.0" },
      { name: "net1", network: "physnet1", mode: "ephemeral", policy: "optional", mac: "52:54:00:00:00:02", guestPorts: { primary: 3 }, address: "10.1.2.11/24", vf: "0000:3b:10.2" },
      { name: "net2", network: "physnet1", mode: "emulated", policy: "optional", mac: "52:54:00:00:00:03", guestPorts: { standby: 4 }, address: "10.1.2.12/24", vf: null },
    ],
  };
  const spec = buildVmSpec(vm, { kernel: "/k", initrd: "/i" }, (vf) => ({ standIn: vf === "0000:3b:10.0" ? "rtl8139" : null }));
  assert.deepEqual(spec.nics[0]!.primary, { kind: "stand-in", model: "rtl8139", backend: { kind: "none" }, vf: "0000:3b:10.0" });
  assert.deepEqual(spec.nics[1]!.primary, { kind: "vfio", host: "0000:3b:10.2" });
  assert.equal(spec.nics[1]!.standby, undefined);
  assert.equal(spec.nics[2]!.primary, undefined);
  assert.match(spec.cmdline, /ferry\.net=52:54:00:00:00:01,10\.1\.2\.10\/24/);
  assert.doesNotMatch(spec.cmdline, /ferry\.fill/);
  assert.match(buildVmSpec({ ...vm, guestFillMiB: 64 }, { kernel: "/k", initrd: "/i" }, () => ({ standIn: null })).cmdline, / ferry\.fill=64( |$)/);
  assert.match(buildVmSpec({ ...vm, guestDirtyMiBps: 50 }, { kernel: "/k", initrd: "/i" }, () => ({ standIn: null })).cmdline, / ferry\.dirty=50( |$)/);
  assert.deepEqual(JSON.parse(JSON.stringify(parseVmSpec(JSON.parse(JSON.stringify(spec))))), JSON.parse(JSON.stringify(spec)));
  // the RAM trim (QEMU < 9.0 under TCG) goes into the spec of anonymous and file-backed guests alike
  assert.equal(spec.ramTrimKiB, undefined);
  assert.equal(buildVmSpec({ ...vm, ramTrimKiB: 8 }, { kernel: "/k", initrd: "/i" }, () => ({ standIn: null })).ramTrimKiB, 8);
  const shared = buildVmSpec({ ...vm, sharedMemory: true, ramTrimKiB: 8 }, { kernel: "/k", initrd: "/i" }, () => ({ standIn: null }));
  assert.deepEqual([shared.sharedMemory, shared.ramTrimKiB], [true, 8]);
});

test("a guest RAM fill: the test guest only, at most half its RAM minus 32 MiB (the RAM disk's reserve, as for a dirty region)", () => {
  checkGuestFill({ memoryMiB: 1152, guestFillMiB: 512 });
  checkGuestFill({ memoryMiB: 256 });
  const refused = (re: RegExp) => (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID") && re.test(e.message);
  assert.throws(() => checkGuestFill({ memoryMiB: 1024, guestFillMiB: 481 }), refused(/from 1 to 480 for a 1024 MiB guest/));
  assert.throws(() => checkGuestFill({ memoryMiB: 256, guestFillMiB: 0 }), refused(/from 1 to 96/));
  assert.throws(() => checkGuestFill({ memoryMiB: 1024, guestFillMiB: 100, noOs: true }), refused(/needs the test guest/));
});

test("a guest dirty rate: the test guest only, with room for its region (one second of writes) on the RAM disk", () => {
  checkGuestFill({ memoryMiB: 256, guestDirtyMiBps: 50 });
  checkGuestFill({ memoryMiB: 512, guestDirtyMiBps: 200 });
  assert.throws(() => checkGuestFill({ memoryMiB: 256, guestDirtyMiBps: 200 }), (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID") && /guestDirtyMiBps 200 needs 217 MiB/.test(e.message));
  checkGuestFill({ memoryMiB: 256, guestDirtyMiBps: 0, noOs: true });
  const refused = (re: RegExp) => (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID") && re.test(e.message);
  assert.throws(() => checkGuestFill({ memoryMiB: 192, guestDirtyMiBps: 50 }), refused(/needs 81 MiB .* a 192 MiB guest has 64/));
  assert.throws(() => checkGuestFill({ memoryMiB: 1024, guestFillMiB: 448, guestDirtyMiBps: 50 }), refused(/minus the 448 MiB fill/));
  assert.throws(() => checkGuestFill({ memoryMiB: 512, guestDirtyMiBps: 50, noOs: true }), refused(/needs the test guest/));
});
