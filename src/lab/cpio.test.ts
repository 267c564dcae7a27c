import assert from "node:assert/strict";
import { lstat, mkdtemp, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { run } from "../core/run.ts";
import { cpioArchive, cpioPath } from "./cpio.ts";
import type { CpioEntry } from "./cpio.ts";

const BUSYBOX = "busybox";

const entries: CpioEntry[] = [
  { type: "dir", path: "bin" },
  { type: "file", path: "/bin/tool", data: "#!/bin/sh\necho hi\n", mode: 0o755 },
  { type: "symlink", path: "bin/alias", target: "/bin/tool" },
  { type: "file", path: "etc/deep/nested/conf", data: new Uint8Array([1, 2, 3, 0, 255]) },
  { type: "file", path: "empty", data: "" },
  { type: "dir", path: "tmp", mode: 0o1777 },
  { type: "char", path: "dev/console", major: 5, minor: 1 },
];

test("busybox cpio lists every entry, parents included, in order", async () => {
  const archive = cpioArchive(entries);
  assert.equal(archive.length % 4, 0);
  const { stdout } = await run(BUSYBOX, ["cpio", "-t"], { input: archive, timeoutMs: 10_000 });
  assert.deepEqual(stdout.trim().split("\n"), [
    "bin",
    "bin/tool",
    "bin/alias",
    "etc",
    "etc/deep",
    "etc/deep/nested",
    "etc/deep/nested/conf",
    "empty",
    "tmp",
    "dev",
    "dev/console",
  ]);
});

test("busybox cpio extracts contents, modes and symlinks", async () => {
  const dir = await mkdtemp(join(tmpdir(), "ferry-cpio-"));
  try {
    // No device nodes here: mknod needs privileges this test should not depend on.
    const archive = cpioArchive(entries.filter((e) => e.type !== "char"));
    await run(BUSYBOX, ["cpio", "-i", "-d", "-m"], { input: archive, cwd: dir, timeoutMs: 10_000 });
    assert.equal(await readFile(join(dir, "bin/tool"), "utf8"), "#!/bin/sh\necho hi\n");
    assert.equal((await lstat(join(dir, "bin/tool"))).mode & 0o7777, 0o755);
    assert.deepEqual([...(await readFile(join(dir, "etc/deep/nested/conf")))], [1, 2, 3, 0, 255]);
    assert.equal((await lstat(join(dir, "etc/deep/nested/conf"))).mode & 0o7777, 0o644);
    assert.equal((await readFile(join(dir, "empty"))).length, 0);
    assert.equal(await readlink(join(dir, "bin/alias")), "/bin/tool");
    assert.ok((await lstat(join(dir, "etc/deep"))).isDirectory());
    assert.equal((await lstat(join(dir, "tmp"))).mode & 0o7777, 0o1777);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("the character device header carries its major/minor", async () => {
  const archive = cpioArchive([{ type: "char", path: "dev/console", major: 5, minor: 1 }]);
  const { stdout } = await run(BUSYBOX, ["cpio", "-t", "-v"], { input: archive, timeoutMs: 10_000 });
  const line = stdout.split("\n").find((l) => l.endsWith("dev/console"));
  assert.ok(line, stdout);
  assert.match(line, /^crw-------/);
  // newc header: rdevmajor and rdevminor are the 10th and 11th 8-hex-digit fields.
  const off = archive.indexOf("dev/console") - 110;
  const header = archive.subarray(off, off + 110).toString("ascii");
  assert.equal(header.slice(0, 6), "070701");
  assert.equal(parseInt(header.slice(6 + 9 * 8, 6 + 10 * 8), 16), 5);
  assert.equal(parseInt(header.slice(6 + 10 * 8, 6 + 11 * 8), 16), 1);
});

test("bad paths and duplicates are refused", () => {
  for (const p of ["", "/", "a/../b", "./x", "a\0b"]) {
    assert.throws(() => cpioPath(p), (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"));
  }
  assert.throws(
    () => cpioArchive([{ type: "dir", path: "a" }, { type: "dir", path: "/a/" }]),
    (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"),
  );
  assert.throws(
    () => cpioArchive([{ type: "file", path: "a", data: "x" }, { type: "file", path: "a/b", data: "y" }]),
    (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"),
  );
});
