import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { describe, it } from "node:test";
import { isFerryError } from "../core/errors.ts";
import type { Runner } from "../core/run.ts";
import { QmpClient, QmpCommandError } from "../qmp/client.ts";
import { queryMigrationTlsParameters } from "../qmp/commands.ts";
import { scriptedServer } from "../qmp/replay.ts";
import {
  MIGRATION_TLS_AUTHZ_ID, MIGRATION_TLS_CREDS_ID, certificateIdentity, disableMigrationTls, enableIncomingTls, enableOutgoingTls, identityForName,
} from "./migration-tls.ts";

interface Sent {
  execute: unknown;
  arguments?: unknown;
}

/**
 * A monitor that keeps QEMU 7.2's object registry and TLS parameters, and
 * answers with its error texts (recorded from qemu-system-x86_64 7.2).
 */
async function fakeQemu(o: { failAdd?: string } = {}): Promise<{ q: QmpClient; sent: Sent[]; objects: Set<string>; close(): Promise<void> }> {
  const sent: Sent[] = [];
  const objects = new Set<string>();
  const params: Record<string, string> = { "tls-creds": "", "tls-hostname": "", "tls-authz": "" };
  const answer = (sock: Socket, id: unknown, r: { return: unknown } | { error: { class: string; desc: string } }): void => {
    sock.write(`${JSON.stringify({ ...r, id })}\n`);
  };
  const srv = await scriptedServer((sock, cmd) => {
    const args = (cmd["arguments"] ?? {}) as Record<string, unknown>;
    sent.push(cmd["arguments"] === undefined ? { execute: cmd["execute"] } : { execute: cmd["execute"], arguments: args });
    const err = (desc: string): void => answer(sock, cmd["id"], { error: { class: "GenericError", desc } });
    switch (cmd["execute"]) {
      case "object-add": {
        const id = String(args["id"]);
        if (o.failAdd && args["qom-type"] === "tls-creds-x509") return err(o.failAdd);
        if (objects.has(id)) return err(`attempt to add duplicate property '${id}' to object (type 'container')`);
        objects.add(id);
        return answer(sock, cmd["id"], { return: {} });
      }
      case "object-del": {
        const id = String(args["id"]);
        if (!objects.delete(id)) return err(`object '${id}' not found`);
        return answer(sock, cmd["id"], { return: {} });
      }
      case "migrate-set-parameters":
        for (const [k, v] of Object.entries(args)) params[k] = String(v);
        return answer(sock, cmd["id"], { return: {} });
      case "query-migrate-parameters":
        return answer(sock, cmd["id"], { return: { ...params, "downtime-limit": 300 } });
      default:
        return err(`unexpected ${String(cmd["execute"])}`);
    }
  });
  const q = await QmpClient.connect(srv.path);
  return { q, sent, objects, close: async () => { q.close(); await srv.close(); } };
}

type Fake = Awaited<ReturnType<typeof fakeQemu>>;

async function withFake(fn: (f: Fake) => Promise<void>, o: { failAdd?: string } = {}): Promise<void> {
  const f = await fakeQemu(o);
  try {
    await fn(f);
  } finally {
    await f.close();
  }
}

const CLEAR = { execute: "migrate-set-parameters", arguments: { "tls-creds": "", "tls-hostname": "", "tls-authz": "" } };
const DEL_AUTHZ = { execute: "object-del", arguments: { id: MIGRATION_TLS_AUTHZ_ID } };
const DEL_CREDS = { execute: "object-del", arguments: { id: MIGRATION_TLS_CREDS_ID } };

describe("migration TLS over QMP", () => {
  it("destination: server credentials that verify the peer, an authz naming the source, then the parameters", () => withFake(async (f) => {
    await enableIncomingTls(f.q, { dir: "/run/ferry/tls/i-0a1b2c3d", sourceIdentity: "CN=host-a" });
    assert.deepEqual(f.sent, [
      CLEAR, DEL_AUTHZ, DEL_CREDS,
      { execute: "object-add", arguments: { dir: "/run/ferry/tls/i-0a1b2c3d", endpoint: "server", "verify-peer": true, "qom-type": "tls-creds-x509", id: "ferry-mig-tls" } },
      { execute: "object-add", arguments: { identity: "CN=host-a", "qom-type": "authz-simple", id: "ferry-mig-authz" } },
      { execute: "migrate-set-parameters", arguments: { "tls-creds": "ferry-mig-tls", "tls-authz": "ferry-mig-authz" } },
    ]);
    assert.deepEqual(await queryMigrationTlsParameters(f.q), { tlsCreds: "ferry-mig-tls", tlsHostname: "", tlsAuthz: "ferry-mig-authz" });
  }));

  it("source: client credentials and the destination's name; a second setup replaces the objects", () => withFake(async (f) => {
    await enableOutgoingTls(f.q, { dir: "/run/ferry/tls/a", hostname: "10.0.0.2" });
    f.sent.length = 0;
    await enableOutgoingTls(f.q, { dir: "/run/ferry/tls/b", hostname: "host-b.example.com" });
    assert.deepEqual(f.sent, [
      CLEAR, DEL_AUTHZ, DEL_CREDS,
      { execute: "object-add", arguments: { dir: "/run/ferry/tls/b", endpoint: "client", "verify-peer": true, "qom-type": "tls-creds-x509", id: "ferry-mig-tls" } },
      { execute: "migrate-set-parameters", arguments: { "tls-creds": "ferry-mig-tls", "tls-hostname": "host-b.example.com" } },
    ]);
    assert.deepEqual([...f.objects], [MIGRATION_TLS_CREDS_ID]);
  }));

  it("a destination set up before keeps no authz when it becomes a source", () => withFake(async (f) => {
    await enableIncomingTls(f.q, { dir: "/d", sourceIdentity: "CN=host-a" });
    await enableOutgoingTls(f.q, { dir: "/d", hostname: "127.0.0.1" });
    assert.deepEqual(await queryMigrationTlsParameters(f.q), { tlsCreds: "ferry-mig-tls", tlsHostname: "127.0.0.1", tlsAuthz: "" });
    assert.deepEqual([...f.objects], [MIGRATION_TLS_CREDS_ID]);
  }));

  it("disable clears the parameters and deletes the objects; twice is fine", () => withFake(async (f) => {
    await enableIncomingTls(f.q, { dir: "/d", sourceIdentity: "CN=host-a" });
    f.sent.length = 0;
    await disableMigrationTls(f.q);
    await disableMigrationTls(f.q);
    assert.deepEqual(f.sent, [CLEAR, DEL_AUTHZ, DEL_CREDS, CLEAR, DEL_AUTHZ, DEL_CREDS]);
    assert.equal(f.objects.size, 0);
    assert.deepEqual(await queryMigrationTlsParameters(f.q), { tlsCreds: "", tlsHostname: "", tlsAuthz: "" });
  }));

  it("QEMU refusing the credentials (unreadable dir) surfaces its error and sets no parameter", () => withFake(async (f) => {
    await assert.rejects(enableIncomingTls(f.q, { dir: "/d", sourceIdentity: "CN=host-a" }), (e: unknown) => e instanceof QmpCommandError && /object-add: Unable to access credentials \/d\/ca-cert.pem/.test(e.message));
    assert.deepEqual(await queryMigrationTlsParameters(f.q), { tlsCreds: "", tlsHostname: "", tlsAuthz: "" });
  }, { failAdd: "Unable to access credentials /d/ca-cert.pem: No such file or directory" }));

  it("refuses bad input before sending anything", () => withFake(async (f) => {
    const bad = (e: unknown, field: string): boolean => isFerryError(e, "FERRY_ERR_INVALID") && e.details["field"] === field;
    await assert.rejects(enableIncomingTls(f.q, { dir: "tls", sourceIdentity: "CN=a" }), (e: unknown) => bad(e, "tls.dir"));
    await assert.rejects(enableIncomingTls(f.q, { dir: "/a/../b", sourceIdentity: "CN=a" }), (e: unknown) => bad(e, "tls.dir"));
    for (const id of ["", "host-a", "CN=a\nCN=b", `CN=${"x".repeat(1100)}`]) {
      await assert.rejects(enableIncomingTls(f.q, { dir: "/d", sourceIdentity: id }), (e: unknown) => bad(e, "tls.sourceIdentity"));
    }
    for (const h of ["", "-bad", "a b", "host/x"]) {
      await assert.rejects(enableOutgoingTls(f.q, { dir: "/d", hostname: h }), (e: unknown) => bad(e, "tls.hostname"));
    }
    assert.deepEqual(f.sent, []);
  }));
});

describe("the source identity", () => {
  it("is CN=NAME for a certificate Ferry's CA issued", () => {
    assert.equal(identityForName("host-a.example"), "CN=host-a.example");
    assert.throws(() => identityForName("a,O=evil"), (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"));
  });

  it("is read with openssl in GnuTLS's order (the certificate's, not reversed)", async () => {
    const calls: (readonly string[])[] = [];
    const run: Runner = (file, args) => {
      calls.push([file, ...args]);
      return Promise.resolve({ code: 0, stdout: "subject=C=GB,O=Example Org,OU=Ops\\, West,CN=src.example.com\n", stderr: "" });
    };
    assert.equal(await certificateIdentity("/etc/ferry/src.crt", { run }), "C=GB,O=Example Org,OU=Ops\\, West,CN=src.example.com");
    assert.deepEqual(calls, [["openssl", "x509", "-in", "/etc/ferry/src.crt", "-noout", "-subject", "-nameopt", "esc_2253,esc_ctrl,utf8,dump_nostr,dump_unknown,dump_der,sep_comma_plus,sname"]]);
    await assert.rejects(certificateIdentity("src.crt", { run }), (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"));
  });
});
