// An apart host's holder starting while another lab on the same machine
// deletes its network namespaces: the holder reads the machine's mounts under
// /run (each namespace's /run/netns/<name>) and detaches them from its own
// view; the kernel detaches a mount in every namespace when its mountpoint
// file is unlinked, so a namespace deleted in between is gone by the time the
// holder gets to it. That must not stop the holder (two test files setting up
// and tearing down labs side by side met it: "the holder of host-a did not get
// ready"). Real namespaces, real holders; everything created here is removed.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { run } from "../../src/core/run.ts";
import { startHolder } from "../../src/lab/lab-hosts.ts";
import { stopPid } from "../../src/lab/lab-process.ts";

const PREFIX = `ferry-test-holder-${process.pid}`;
const ROUNDS = 12;

describe("an apart host's holder", { timeout: 120_000 }, () => {
  const made = new Set<string>();
  let dir = "";

  const addNetns = async (name: string): Promise<void> => {
    await run("ip", ["netns", "add", name], { timeoutMs: 10_000 });
    made.add(name);
  };
  const delNetns = async (name: string): Promise<void> => {
    await run("ip", ["netns", "del", name], { timeoutMs: 10_000, allowFailure: true });
    made.delete(name);
  };

  after(async () => {
    for (const name of [...made]) await delNetns(name);
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  it("gets ready while another lab adds and deletes network namespaces beside it", async () => {
    dir = await mkdtemp(join(tmpdir(), "ferry-holder-"));
    const hostDir = join(dir, "host");
    const saveDir = join(dir, "saves");
    await mkdir(hostDir, { recursive: true });
    await mkdir(saveDir, { recursive: true });

    // the other lab: 16 namespaces, the oldest deleted and a new one added as fast as ip allows, for as long
    // as the holders start (each holder has 16 of them to detach, one by one: the window the race needs)
    let churning = true;
    const churn = (async () => {
      const alive: string[] = [];
      for (let i = 0; churning; i++) {
        const n = `${PREFIX}-o${i}`;
        await addNetns(n);
        alive.push(n);
        if (alive.length > 16) await delNetns(alive.shift()!);
      }
    })();

    const failures: string[] = [];
    try {
      for (let i = 0; i < ROUNDS; i++) {
        const netns = `${PREFIX}-h${i}`;
        await addNetns(netns);
        const log = join(dir, `holder-${i}.log`);
        const host = { name: `holder-${i}`, index: 1, netns, mgmtIp: "", migIp: "", mgmtVeth: "", migPort: "", uplinks: [] };
        try {
          const { holderPid } = await startHolder({ dir, host, hostDir, saveDir, log });
          // what the holder is for: a /run of its own, without the machine's namespaces in it
          const mounts = await readFile(`/proc/${holderPid}/mountinfo`, "utf8");
          assert.match(mounts, / \/run rw\S*.* - tmpfs /, "the holder has no /run of its own");
          assert.doesNotMatch(mounts, /\s\/run\/netns\//, "the holder still sees the machine's network namespaces");
          await stopPid(holderPid, dir, "SIGTERM"); // the holder; unshare --kill-child ends with it
        } catch (err) {
          failures.push(`round ${i}: ${(err as Error).message}\n${await readFile(log, "utf8").catch(() => "")}`);
        }
        await delNetns(netns);
      }
    } finally {
      churning = false;
      await churn;
    }
    assert.deepEqual(failures, [], `holders that did not start:\n${failures.join("\n")}`);
  });
});
