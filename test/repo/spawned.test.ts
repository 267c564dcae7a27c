// Every program the repository runs has a row in scripts/programs.txt, the table
// scripts/setup.sh installs from: a fresh machine then has every program `npm run demo`,
// `npm test` and `npm run bench` run (a missing `ping` once failed the demo on a fresh Debian).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { readTable, scanRepo, scanShell, scanTs } from "./programs.ts";
import type { Found } from "./programs.ts";

const root = join(import.meta.dirname, "../..");
const table = readTable(readFileSync(join(root, "scripts/programs.txt"), "utf8"));
const found = scanRepo(root);
const programs = (f: Found[]): string[] => [...new Set(f.map((x) => x.program))].sort();

describe("scripts/programs.txt", () => {
  it("has a row for every program src/, bench/, test/, scripts/, bin/, .ci/ and package.json run", () => {
    const missing = found.filter((f) => !table.has(f.program));
    const lines = programs(missing).map((p) => `  ${p} (run at ${missing.filter((f) => f.program === p).map((f) => f.where).join(", ")})`);
    assert.deepEqual(lines, [], `programs with no row in scripts/programs.txt; add "program  debian-package  set" for each:\n${lines.join("\n")}`);
  });

  it("lists no program that nothing runs", () => {
    const run = new Set(found.map((f) => f.program));
    const stale = [...table.keys()].filter((p) => !run.has(p));
    assert.deepEqual(stale, [], "rows for programs nothing in the repository runs: remove them (or the scan misses a real use: fix test/repo/programs.ts)");
  });

  it("puts each package in a set setup or test:fresh installs", () => {
    for (const [program, rows] of table) for (const r of rows) assert.match(r.set, /^(base|bench|fresh|prereq)$/, `${program} ${r.pkg}: unknown set ${r.set}`);
  });

  it("finds the real uses it exists for", () => {
    const at = (program: string, file: string) => found.some((f) => f.program === program && f.where.startsWith(`${file}:`));
    assert.ok(at("ping", "src/lab/lab-demo.ts"), "ip netns exec NS ping in the lab demo");
    assert.ok(at("ping", "src/lab/probe.ts"), "the probe's pinger");
    assert.ok(at("sysctl", "src/lab/fabric-commands.ts"), "ip netns exec NS sysctl in the fabric");
    assert.ok(at("ps", "test/lab/lab-demo.test.ts"), "run(\"ps\") in a test");
    assert.ok(at("bridge", "src/host/iproute.ts"), "{ file: \"bridge\", args } command objects");
    assert.ok(at("qemu-system-x86_64", "src/qemu/instance.ts"), "the default QEMU binary");
    assert.ok(at("busybox", "src/lab/cpio.test.ts"), "run(BUSYBOX, …) through a constant");
    assert.ok(at("sleep", "bench/lib/libvirt.ts"), "unshare … -- sleep");
    assert.ok(at("node", "package.json scripts.demo"), "scripts/rt node in package.json");
    assert.ok(at("sha256sum", "scripts/setup.sh"), "a shell script's command");
  });
});

describe("the scanner", () => {
  it("reads TypeScript call sites", () => {
    const ts = [
      `await run("ip", ["netns", "exec", v.name("netns", ns), "tcpdump", "-i", "x"]);`,
      `spawn("nsenter", [...ns, "/usr/sbin/libvirtd", "--config", c]);`,
      `const bin = o.qemuBinary ?? "qemu-kvm";`,
      `return pinger === "a" ? ["fping", "-D", t] : ["busybox", "ping"];`,
      `throw new Error(x ?? "spawn failed"); run(FERRY, ["agent", "--config", p]);`,
    ].join("\n");
    assert.deepEqual(programs(scanTs("x.ts", ts)), ["fping", "ip", "libvirtd", "nsenter", "qemu-kvm", "tcpdump"]);
  });

  it("reads shell scripts: pipelines, substitutions, wrappers; not strings, comments, builtins or functions", () => {
    const sh = [
      "#!/usr/bin/env bash",
      `say() { printf '%s\\n' "$*" >&2; }  # say: not a program`,
      `x=$(dpkg-query -W "$p" 2>/dev/null | grep -q ok) || say "install it (run: apt-get; then wget)"`,
      `FOO=1 exec "$root/.runtime/bin/node" "$root/src/main.ts"`,
      `flock /tmp/l.lock unshare --mount --fork chroot "$dir" bash -c 'mount -t proc'`,
      `if [ "$(id -u)" != 0 ]; then sets=(base bench); fi; (($#)) || exit 2`,
      `local ms=$(((\${EPOCHREALTIME/./} - \${t0/./}) / 1000)); echo "$((ms / 1000)) s"; ((n > 0)) && rm -f x`,
      `tar -c . \\`,
      `  | zstd -q > out`,
    ].join("\n");
    assert.deepEqual(programs(scanShell("x.sh", sh)), ["bash", "chroot", "dpkg-query", "flock", "grep", "id", "node", "rm", "tar", "unshare", "zstd"]);
  });

  it("knows that scripts/rt runs the command after it", () => {
    assert.deepEqual(programs(scanShell("package.json", "bash scripts/setup.sh && scripts/rt node src/cli/main.ts demo")), ["bash", "node"]);
  });
});
