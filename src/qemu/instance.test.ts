import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { KEPT_LOGS, listInstanceDirs, removeInstanceDir } from "./instance.ts";

async function fakeInstance(runDir: string, vm: string, id: string, serial: string): Promise<string> {
  const dir = join(runDir, vm, id);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "serial.log"), serial);
  await writeFile(join(dir, "qemu.log"), "qemu-system-x86_64: terminating on signal 9\n");
  await writeFile(join(dir, "meta.json"), "{}");
  await writeFile(join(dir, "qemu.pid"), "1\n");
  return dir;
}

describe("removeInstanceDir", () => {
  it("keeps a removed instance's logs under <runDir>/logs/<instance-id>, which is not taken for an instance", async () => {
    const runDir = await mkdtemp(join(tmpdir(), "ferry-logs-"));
    try {
      const dir = await fakeInstance(runDir, "4b3c6a60-0000-4000-8000-000000000001", "i-0badf00d", "ferry-heartbeat 41\n");
      await removeInstanceDir(dir);
      assert.deepEqual(await readdir(join(runDir, "4b3c6a60-0000-4000-8000-000000000001")), []);
      assert.equal(await readFile(join(runDir, "logs", "i-0badf00d", "serial.log"), "utf8"), "ferry-heartbeat 41\n");
      assert.match(await readFile(join(runDir, "logs", "i-0badf00d", "qemu.log"), "utf8"), /signal 9/);
      assert.deepEqual(await listInstanceDirs(runDir), []);
    } finally {
      await rm(runDir, { recursive: true, force: true });
    }
  });

  it(`keeps only the newest ${KEPT_LOGS} instances' logs`, async () => {
    const runDir = await mkdtemp(join(tmpdir(), "ferry-logs-"));
    try {
      for (let n = 0; n < KEPT_LOGS + 3; n++) {
        const id = `i-${n.toString(16).padStart(8, "0")}`;
        await removeInstanceDir(await fakeInstance(runDir, "vm", id, `${n}\n`));
        const t = new Date(Date.now() - (KEPT_LOGS + 3 - n) * 1000);
        await utimes(join(runDir, "logs", id), t, t);
      }
      const kept = (await readdir(join(runDir, "logs"))).sort();
      assert.equal(kept.length, KEPT_LOGS);
      assert.ok(!kept.includes("i-00000000"), "the oldest logs are pruned");
      assert.ok(kept.includes(`i-${(KEPT_LOGS + 2).toString(16).padStart(8, "0")}`), "the newest logs are kept");
    } finally {
      await rm(runDir, { recursive: true, force: true });
    }
  });
});
