import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VmSpec } from "../model/vm.ts";
import { buildArgv, serialArgs } from "./argv.ts";

const spec: VmSpec = {
  uuid: "4b3c6a60-0000-4000-8000-000000000001", name: "vm1", memoryMiB: 256, vcpus: 1,
  kernel: "/k", initrd: "/i", cmdline: "console=ttyS0", nics: [],
};

describe("serial console argv", () => {
  it("is a listening unix socket that logs every byte to the serial log, client or not", () => {
    assert.deepEqual(serialArgs({ serialSocket: "/run/ferry/u/i-1/serial.sock", serialLog: "/run/ferry/u/i-1/serial.log" }), [
      "-chardev", "socket,id=ser0,path=/run/ferry/u/i-1/serial.sock,server=on,wait=off,logfile=/run/ferry/u/i-1/serial.log,logappend=on",
      "-serial", "chardev:ser0",
    ]);
  });
  it("escapes commas in both paths", () => {
    assert.equal(serialArgs({ serialSocket: "/r,a/s.sock", serialLog: "/r,a/s.log" })[1], "socket,id=ser0,path=/r,,a/s.sock,server=on,wait=off,logfile=/r,,a/s.log,logappend=on");
  });
  it("replaces -serial file: in the instance argv", () => {
    const argv = buildArgv(spec, { accel: "tcg", qmpSocket: "/d/qmp.sock", pidfile: "/d/qemu.pid", serialLog: "/d/serial.log", serialSocket: "/d/serial.sock" });
    assert.equal(argv.filter((a) => a === "-serial").length, 1);
    assert.equal(argv[argv.indexOf("-serial") + 1], "chardev:ser0");
    assert.equal(argv[argv.indexOf("-chardev") + 1], "socket,id=ser0,path=/d/serial.sock,server=on,wait=off,logfile=/d/serial.log,logappend=on");
    assert.ok(!argv.some((a) => a.startsWith("file:")));
  });
});

describe("guest RAM", () => {
  const o = { accel: "tcg" as const, qmpSocket: "/d/qmp.sock", pidfile: "/d/qemu.pid", serialLog: "/d/serial.log", serialSocket: "/d/serial.sock" };
  it("a file-backed guest with a RAM trim: -m and the backend's size are both 8 KiB short of whole MiB (QEMU < 9.0 under TCG)", () => {
    const argv = buildArgv({ ...spec, sharedMemory: true, ramTrimKiB: 8 }, { ...o, ramFile: "/m/vm1.ram" });
    assert.equal(argv[argv.indexOf("-m") + 1], "262136k");
    assert.equal(argv[argv.indexOf("-object") + 1], "memory-backend-file,id=mem0,size=262136k,mem-path=/m/vm1.ram,share=on");
  });
  it("without a trim: whole MiB", () => {
    const argv = buildArgv({ ...spec, sharedMemory: true }, { ...o, ramFile: "/m/vm1.ram" });
    assert.equal(argv[argv.indexOf("-m") + 1], "256M");
    assert.match(argv[argv.indexOf("-object") + 1]!, /size=256M,/);
  });
});

describe("guest panic", () => {
  it("every guest has the pvpanic device, and QEMU only reports a panic (GUEST_PANICKED) without acting on it", () => {
    const argv = buildArgv(spec, { accel: "tcg", qmpSocket: "/d/qmp.sock", pidfile: "/d/qemu.pid", serialLog: "/d/serial.log", serialSocket: "/d/serial.sock" });
    const pairs = argv.flatMap((a, i) => (a === "-device" || a === "-action" ? [`${a} ${argv[i + 1] ?? ""}`] : []));
    assert.ok(pairs.includes("-device pvpanic"), pairs.join("; "));
    assert.ok(pairs.includes("-action panic=none"), pairs.join("; "));
  });
});
