import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { run } from "../core/run.ts";
import { FFDHE2048_PEM, issuedFiles, layoutMigrationTlsDir } from "./migration-tls-dir.ts";
import type { PemFiles } from "./migration-tls-dir.ts";

const CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const KEY = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n";

describe("layoutMigrationTlsDir", () => {
  let tmp: string;
  let files: PemFiles;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), "ferry-mtls-"));
    const ca = join(tmp, "ca");
    await mkdir(ca);
    await writeFile(join(ca, "ca.crt"), `${CERT}# ca\n`);
    await writeFile(join(ca, "host-a.crt"), `${CERT}# host-a\n`);
    await writeFile(join(ca, "host-a.key"), KEY, { mode: 0o600 });
    files = issuedFiles(ca, "host-a");
  });
  after(async () => rm(tmp, { recursive: true, force: true }));

  it("maps the files `ferry ca issue` made", () => {
    assert.deepEqual(issuedFiles("/etc/ferry/ca", "host-a"), { ca: "/etc/ferry/ca/ca.crt", cert: "/etc/ferry/ca/host-a.crt", key: "/etc/ferry/ca/host-a.key" });
  });

  it("writes QEMU's names for both endpoints, owner-only", async () => {
    const dir = join(tmp, "both", "tls");
    const written = await layoutMigrationTlsDir(dir, files);
    assert.deepEqual((await readdir(dir)).sort(), ["ca-cert.pem", "client-cert.pem", "client-key.pem", "dh-params.pem", "server-cert.pem", "server-key.pem"]);
    assert.equal(written.length, 6);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    for (const f of await readdir(dir)) assert.equal((await stat(join(dir, f))).mode & 0o777, 0o600, f);
    assert.equal(await readFile(join(dir, "ca-cert.pem"), "utf8"), `${CERT}# ca\n`);
    assert.equal(await readFile(join(dir, "server-cert.pem"), "utf8"), `${CERT}# host-a\n`);
    assert.equal(await readFile(join(dir, "client-key.pem"), "utf8"), KEY);
  });

  it("gives a server the RFC 7919 ffdhe2048 group as dh-params.pem (QEMU would generate parameters on every object-add), a client none", async () => {
    const dir = join(tmp, "dh");
    await layoutMigrationTlsDir(dir, files, ["server"]);
    assert.equal(await readFile(join(dir, "dh-params.pem"), "utf8"), FFDHE2048_PEM);
    // the constant is the named group, as openssl knows it
    const named = await run("openssl", ["genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048"], { timeoutMs: 30_000 });
    assert.equal(named.stdout, FFDHE2048_PEM);
    const client = join(tmp, "dh-client");
    await layoutMigrationTlsDir(client, files, ["client"]);
    assert.ok(!(await readdir(client)).includes("dh-params.pem"));
  });

  it("writes one endpoint's files only, and replaces what an earlier layout wrote", async () => {
    const dir = join(tmp, "client");
    await mkdir(dir, { mode: 0o755 });
    await writeFile(join(dir, "ca-cert.pem"), "old");
    await layoutMigrationTlsDir(dir, files, ["client"]);
    assert.deepEqual((await readdir(dir)).sort(), ["ca-cert.pem", "client-cert.pem", "client-key.pem"]);
    assert.equal((await stat(dir)).mode & 0o777, 0o700, "tightened");
    assert.equal(await readFile(join(dir, "ca-cert.pem"), "utf8"), `${CERT}# ca\n`);
  });

  it("refuses relative paths, '..', unknown endpoints, non-PEM files and a symlinked dir", async () => {
    const rejects = (p: Promise<unknown>, code: "FERRY_ERR_INVALID" | "FERRY_ERR_CONFIG", field: string): Promise<void> =>
      assert.rejects(p, (e: unknown) => isFerryError(e, code) && e.details["field"] === field);
    await rejects(layoutMigrationTlsDir("tls", files), "FERRY_ERR_INVALID", "dir");
    await rejects(layoutMigrationTlsDir(`${tmp}/x/../y`, files), "FERRY_ERR_INVALID", "dir");
    await rejects(layoutMigrationTlsDir(join(tmp, "r"), { ...files, key: "host-a.key" }), "FERRY_ERR_INVALID", "key");
    await rejects(layoutMigrationTlsDir(join(tmp, "r"), files, []), "FERRY_ERR_INVALID", "endpoints");
    await rejects(layoutMigrationTlsDir(join(tmp, "r"), files, ["peer" as "server"]), "FERRY_ERR_INVALID", "endpoints");
    await rejects(layoutMigrationTlsDir(join(tmp, "r"), { ...files, key: files.cert }), "FERRY_ERR_CONFIG", "key");
    await rejects(layoutMigrationTlsDir(join(tmp, "r"), { ...files, cert: files.key }), "FERRY_ERR_CONFIG", "cert");
    await rejects(layoutMigrationTlsDir(join(tmp, "r"), { ...files, ca: join(tmp, "missing.pem") }), "FERRY_ERR_CONFIG", "ca");
    await symlink(join(tmp, "both", "tls"), join(tmp, "link"));
    await assert.rejects(layoutMigrationTlsDir(join(tmp, "link"), files), (e: unknown) => isFerryError(e, "FERRY_ERR_CONFIG") && /symbolic link/.test(e.message));
    await assert.rejects(stat(join(tmp, "r")), "nothing is created for refused input");
  });
});
