import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, describe, test } from "node:test";
import { newRecord } from "../migration/types.ts";
import { contractPlan, storeContract } from "./contract.ts";
import { SqliteStore } from "./sqlite.ts";

const base = await mkdtemp(join(tmpdir(), "ferry-store-"));
after(() => rm(base, { recursive: true, force: true }));
let n = 0;
const freshFile = (): string => join(base, `s${n++}`, "controller.db");

storeContract("sqlite (file)", () => new SqliteStore(freshFile()));
storeContract("sqlite (:memory:)", () => new SqliteStore(":memory:"));

describe("SqliteStore", () => {
  test("file is owner-only, WAL, and records and journal survive a reopen", async () => {
    const file = freshFile();
    const s = new SqliteStore(file);
    await s.createMigration(newRecord(contractPlan("m-1"), 1000));
    await s.appendJournal({ migrationId: "m-1", phase: "begin", kind: "intent", data: { step: "begin" }, at: 1 });
    s.close();
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const raw = new DatabaseSync(file);
    assert.deepEqual({ ...raw.prepare("PRAGMA journal_mode").get() }, { journal_mode: "wal" });
    raw.close();
    const s2 = new SqliteStore(file);
    assert.equal((await s2.getMigration("m-1"))?.phase, "planned");
    assert.equal((await s2.listJournal("m-1")).length, 1);
    s2.close();
  });

  test("a corrupt row is reported as FERRY_ERR_INTERNAL, not passed on", async () => {
    const file = freshFile();
    const s = new SqliteStore(file);
    await s.createMigration(newRecord(contractPlan("m-1"), 1000));
    const raw = new DatabaseSync(file);
    raw.prepare("UPDATE migrations SET record = ? WHERE id = 'm-1'").run(JSON.stringify({ id: "m-1", phase: "teleport" }));
    raw.close();
    await assert.rejects(s.getMigration("m-1"), (e: unknown) => e instanceof Error && "code" in e && e.code === "FERRY_ERR_INTERNAL" && /corrupt migration record/.test(e.message));
    s.close();
  });
});
