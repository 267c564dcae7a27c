// TLS on the migration stream, set up over QMP on a running instance (no
// argv change): a `tls-creds-x509` object named by the `tls-creds` migration
// parameter; on the destination an `authz-simple` object named by `tls-authz`
// admits exactly one client certificate DN, the planned source's; on the
// source `tls-hostname` is the name the destination's certificate must carry.
// QEMU keeps migration parameters on an instance between migrations, so a
// migration without TLS must turn it off first (disableMigrationTls).
//
// The DN QEMU compares with the authz identity (an exact string match) is
// gnutls_x509_crt_get_dn() of the peer's first certificate (crypto/
// tlssession.c, qcrypto_tls_session_check_certificate, which also logs
// "TLS x509 authz check for DN is denied"). With GnuTLS 3.7 (Debian 12) that
// is RFC 4514 escaping but in the certificate's own RDN order, NOT reversed
// as RFC 4514 says: "CN=host-a" for a certificate Ferry's CA issued to
// host-a, "C=GB,O=Example Org,CN=h" for a subject written /C=GB/O=Example Org/CN=h
// (openssl's -nameopt RFC2253 would print "CN=h,O=Example Org,C=GB": no match).
import { isIP } from "node:net";
import { isDnsName, checkIssue } from "../core/ca.ts";
import { invalid } from "../core/errors.ts";
import { run as defaultRun } from "../core/run.ts";
import type { Runner } from "../core/run.ts";
import { QmpCommandError } from "../qmp/client.ts";
import type { QmpClient } from "../qmp/client.ts";
import { objectAdd, objectDel, setMigrationParameters } from "../qmp/commands.ts";

/** Ids of the objects on every instance: a second setup replaces them. */
export const MIGRATION_TLS_CREDS_ID = "ferry-mig-tls";
export const MIGRATION_TLS_AUTHZ_ID = "ferry-mig-authz";

export interface IncomingTls {
  /** Absolute path of a directory holding ca-cert.pem, server-cert.pem, server-key.pem (layoutMigrationTlsDir). */
  dir: string;
  /** The DN of the only client certificate admitted: the planned source's (identityForName, certificateIdentity). */
  sourceIdentity: string;
}

export interface OutgoingTls {
  /** Absolute path of a directory holding ca-cert.pem, client-cert.pem, client-key.pem (layoutMigrationTlsDir). */
  dir: string;
  /** The destination's IP or DNS name as its server certificate carries it in subjectAltName. */
  hostname: string;
}

const IDENTITY_MAX = 1024;

function checkDir(dir: string): string {
  if (!dir.startsWith("/") || dir.split("/").includes("..")) throw invalid("tls.dir", dir, "must be an absolute path without '..'");
  return dir;
}

/** A DN as QEMU's authz compares it: printable, one line, `TYPE=value` pairs. */
export function checkIdentity(identity: string): string {
  if (identity.length === 0 || identity.length > IDENTITY_MAX || /[\u0000-\u001f\u007f]/.test(identity) || !/^[A-Za-z0-9.]+=/.test(identity)) {
    throw invalid("tls.sourceIdentity", identity, `must be a certificate subject DN such as "CN=host-a" (RFC 4514, at most ${IDENTITY_MAX} characters)`);
  }
  return identity;
}

function checkHostname(hostname: string): string {
  if (isIP(hostname) === 0 && !isDnsName(hostname)) throw invalid("tls.hostname", hostname, "must be an IP address or a DNS name in the destination's certificate");
  return hostname;
}

/**
 * The DN QEMU sees for a certificate `ferry ca issue --name NAME` made: its
 * subject is CN=NAME alone, and the names issue allows need no escaping.
 */
export function identityForName(name: string): string {
  return `CN=${checkIssue({ name }).name}`;
}

/**
 * openssl's RFC2253 name options without `dn_rev` (and without esc_msb:
 * GnuTLS leaves UTF-8 as it is): the subject as gnutls_x509_crt_get_dn
 * prints it, in the certificate's RDN order.
 */
const GNUTLS_DN_NAMEOPT = "esc_2253,esc_ctrl,utf8,dump_nostr,dump_unknown,dump_der,sep_comma_plus,sname";

/**
 * The subject DN of a PEM certificate in the form QEMU's authz compares, for
 * certificates Ferry's CA did not issue (or to check one it did).
 */
export async function certificateIdentity(certFile: string, o: { run?: Runner; signal?: AbortSignal } = {}): Promise<string> {
  if (!certFile.startsWith("/")) throw invalid("cert", certFile, "must be an absolute path");
  const r = await (o.run ?? defaultRun)("openssl", ["x509", "-in", certFile, "-noout", "-subject", "-nameopt", GNUTLS_DN_NAMEOPT], { timeoutMs: 10_000, ...(o.signal ? { signal: o.signal } : {}) });
  const line = r.stdout.trim();
  return checkIdentity(line.startsWith("subject=") ? line.slice("subject=".length).trim() : line);
}

async function delIfPresent(qmp: QmpClient, id: string, signal?: AbortSignal): Promise<void> {
  try {
    await objectDel(qmp, id, { signal });
  } catch (e) {
    // QEMU 7.2: GenericError "object 'ID' not found"
    if (e instanceof QmpCommandError && /not found/i.test(e.message)) return;
    throw e;
  }
}

/** Delete the TLS objects of this module; absent ones are fine. */
export async function removeMigrationTlsObjects(qmp: QmpClient, signal?: AbortSignal): Promise<void> {
  await delIfPresent(qmp, MIGRATION_TLS_AUTHZ_ID, signal);
  await delIfPresent(qmp, MIGRATION_TLS_CREDS_ID, signal);
}

/**
 * Drop what an earlier setup left (parameters first, then objects), then add
 * credentials that verify the peer's certificate against the CA in `dir`
 * (QEMU loads and checks the files now: a bad dir fails here).
 */
async function replaceCreds(qmp: QmpClient, dir: string, endpoint: "server" | "client", signal?: AbortSignal): Promise<void> {
  await disableMigrationTls(qmp, signal);
  await objectAdd(qmp, "tls-creds-x509", MIGRATION_TLS_CREDS_ID, { dir, endpoint, "verify-peer": true }, { signal });
}

/**
 * Destination: server credentials that demand a client certificate of the
 * CA, an authz admitting only `sourceIdentity`, and the parameters naming
 * both. Call before `migrate-incoming` (prepareIncoming).
 */
export async function enableIncomingTls(qmp: QmpClient, tls: IncomingTls, signal?: AbortSignal): Promise<void> {
  const dir = checkDir(tls.dir);
  const identity = checkIdentity(tls.sourceIdentity);
  await replaceCreds(qmp, dir, "server", signal);
  await objectAdd(qmp, "authz-simple", MIGRATION_TLS_AUTHZ_ID, { identity }, { signal });
  await setMigrationParameters(qmp, { tlsCreds: MIGRATION_TLS_CREDS_ID, tlsAuthz: MIGRATION_TLS_AUTHZ_ID }, { signal });
}

/**
 * Source: client credentials (QEMU checks the destination's certificate
 * against the CA and `hostname`) and the parameters naming them. Call before
 * `migrate` (startMigration).
 */
export async function enableOutgoingTls(qmp: QmpClient, tls: OutgoingTls, signal?: AbortSignal): Promise<void> {
  const dir = checkDir(tls.dir);
  const hostname = checkHostname(tls.hostname);
  await replaceCreds(qmp, dir, "client", signal);
  await setMigrationParameters(qmp, { tlsCreds: MIGRATION_TLS_CREDS_ID, tlsHostname: hostname }, { signal });
}

/**
 * Plain migration again: clear the TLS parameters (QEMU would otherwise use
 * them for the next migration, local ones included), then drop the objects.
 * Idempotent.
 */
export async function disableMigrationTls(qmp: QmpClient, signal?: AbortSignal): Promise<void> {
  await setMigrationParameters(qmp, { tlsCreds: "", tlsAuthz: "", tlsHostname: "" }, { signal });
  await removeMigrationTlsObjects(qmp, signal);
}
