import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { parseCpuModels, parseMachines, parseMeminfo } from "./qemu-caps.ts";

const golden = (f: string): string => readFileSync(new URL(`./testdata/${f}`, import.meta.url), "utf8");

test("QEMU 7.2's machines: q35 is an alias of pc-q35-7.2, and the versioned ones are listed", () => {
  const m = parseMachines(golden("qemu-7.2-machine-help.txt"));
  assert.deepEqual(m.find((x) => x.name === "q35"), { name: "q35", aliasOf: "pc-q35-7.2" });
  assert.ok(m.some((x) => x.name === "pc-q35-7.1" && x.aliasOf === undefined));
  assert.ok(!m.some((x) => x.name === "Supported"));
});

test("QEMU 7.2's CPU models include qemu64 and stop before the CPUID flags", () => {
  const c = parseCpuModels(golden("qemu-7.2-cpu-help.txt"));
  assert.ok(c.includes("qemu64") && c.includes("Broadwell-IBRS"));
  assert.ok(!c.includes("fpu"), "a CPUID flag is no model");
});

test("/proc/meminfo: MemAvailable and MemTotal in MiB; null when MemAvailable is missing (kernel < 3.14)", () => {
  assert.deepEqual(parseMeminfo("MemTotal:       24684544 kB\nMemFree:        21287936 kB\nMemAvailable:   22742016 kB\n"), { totalMiB: 24106, availableMiB: 22209 });
  assert.equal(parseMeminfo("MemTotal:       24684544 kB\nMemFree:        21287936 kB\n"), null);
});
