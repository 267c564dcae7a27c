import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { guestImagePaths } from "./guest-image.ts";

test("guestImagePaths refuses an empty cache and points at npm run setup", async () => {
  const dir = await mkdtemp(join(tmpdir(), "ferry-guest-empty-"));
  try {
    await assert.rejects(guestImagePaths({ cacheDir: dir }), (e: unknown) => isFerryError(e, "FERRY_ERR_GUEST_IMAGE") && /npm run setup/.test(e.message));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
