import assert from "node:assert/strict";
import { test } from "node:test";
import { transportCheck } from "./migrations.ts";

const tls = { address: "10.0.0.2", tls: true, identity: "CN=host-a" };
const plain = { address: "10.0.0.3", tls: false };

test("the migration network per destination: TLS on one side only blocks it with what to change; plain TCP or none is a warning", () => {
  assert.deepEqual(transportCheck("web", "host-a", "host-b", tls, tls), { warnings: [] });
  assert.match(transportCheck("web", "host-a", "host-b", plain, tls).blocker ?? "", /host-b takes migration streams over TLS only, and host-a has migration\.tls: false: give host-a a migration certificate/);
  assert.match(transportCheck("web", "host-a", "host-b", undefined, tls).blocker ?? "", /host-a has no migration network/);
  assert.match(transportCheck("web", "host-a", "host-b", tls, plain).blocker ?? "", /host-a sends migration streams over TLS, and host-b takes plain TCP/);
  assert.deepEqual(transportCheck("web", "host-a", "host-b", plain, plain).warnings, ["the migration stream to host-b (10.0.0.3) is plain TCP (migration.tls: false): guest memory crosses the migration network unencrypted"]);
  assert.match(transportCheck("web", "host-a", "host-b", undefined, undefined).warnings[0] ?? "", /host-b has no migration network.*127\.0\.0\.1/);
});
