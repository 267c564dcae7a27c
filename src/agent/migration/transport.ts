// Where and how this host's QEMU takes in and sends out a migration stream
// (host.yaml `migration:`, issue 14): an incoming migration listens on the
// host's migration address, on a port of its range (busy ports skipped),
// with TLS that admits only the certificate of the source the controller
// planned; an outgoing one connects with this host's client certificate and
// checks the destination's against its migration address. A host without a
// migration network listens on 127.0.0.1: only a source on the same machine
// reaches it (it is shown as a warning in 'ferry hosts').
import { join } from "node:path";
import { FerryError } from "../../core/errors.ts";
import type { Runner } from "../../core/run.ts";
import type { MigrationNetConfig } from "../../host/config.ts";
import { checkMigrationAddress, isAddressInUse, portOrder } from "../../host/migration-net.ts";
import type { Instance } from "../../qemu/instance.ts";
import { prepareIncoming } from "../../qemu/migration.ts";
import type { MigrationSetup } from "../../qemu/migration.ts";
import { certificateIdentity, disableMigrationTls, enableIncomingTls, enableOutgoingTls } from "../../qemu/migration-tls.ts";
import { layoutMigrationTlsDir } from "../../qemu/migration-tls-dir.ts";
import { QmpCommandError } from "../../qmp/client.ts";

/** This host's migration transport, ready to use (the TLS dir laid out, the identity read). */
export interface MigrationTransport {
  address: string;
  ports: { from: number; to: number };
  /** null: plain TCP (migration.tls: false). */
  tls: null | {
    /** QEMU's credentials dir (ca-cert.pem, server-*.pem, client-*.pem), owner-only. */
    dir: string;
    /** This host's certificate's subject as QEMU's authz on a destination compares it. */
    identity: string;
  };
}

/** What the agent advertises to the controller. */
export interface TransportView {
  address: string;
  tls: boolean;
  identity?: string;
}

export const viewOf = (t: MigrationTransport): TransportView => ({ address: t.address, tls: t.tls !== null, ...(t.tls ? { identity: t.tls.identity } : {}) });

/**
 * At agent start: the address must be this host's, the TLS files become
 * QEMU's credentials dir under `runDir`, the certificate's subject the
 * identity a destination will admit.
 */
export async function setUpTransport(m: MigrationNetConfig, runDir: string, o: { run?: Runner; interfaces?: Parameters<typeof checkMigrationAddress>[1] } = {}): Promise<MigrationTransport> {
  checkMigrationAddress(m, o.interfaces);
  if (m.tls === null) return { address: m.address, ports: m.ports, tls: null };
  const dir = join(runDir, "migration-tls");
  await layoutMigrationTlsDir(dir, m.tls, ["server", "client"]);
  const identity = await certificateIdentity(m.tls.cert, o.run ? { run: o.run } : {});
  return { address: m.address, ports: m.ports, tls: { dir, identity } };
}

let rotation = 0;

/**
 * Destination: `migrate-incoming` on the migration address, trying the
 * range's ports from a rotating start until one binds; with TLS, only
 * `sourceIdentity` is admitted. Without a transport: 127.0.0.1, a port QEMU
 * picks (the source must be on this machine).
 */
export async function listenIncoming(t: MigrationTransport | null, inst: Instance, setup: MigrationSetup, sourceIdentity: string | undefined, signal: AbortSignal): Promise<string> {
  // `inst` was just started for this migration: no TLS parameters of an earlier one to clear
  if (t === null) return prepareIncoming(inst.qmp, "tcp:127.0.0.1:0", setup, signal);
  if (t.tls !== null) {
    if (sourceIdentity === undefined) {
      throw new FerryError("FERRY_ERR_MIGRATION_TLS", "this host takes migrations over TLS only, and the source host advertises no migration certificate: give the source host migration TLS (host.yaml migration.tls) or turn TLS off on both (migration.tls: false)", { details: { reason: "source-without-tls" } });
    }
    await enableIncomingTls(inst.qmp, { dir: t.tls.dir, sourceIdentity }, signal);
  }
  const tried: number[] = [];
  for (const port of portOrder(t, rotation++)) {
    try {
      return await prepareIncoming(inst.qmp, `tcp:${t.address}:${port}`, setup, signal);
    } catch (e) {
      if (e instanceof QmpCommandError && isAddressInUse(e.message)) {
        tried.push(port);
        continue;
      }
      throw e;
    }
  }
  throw new FerryError("FERRY_ERR_MIGRATION", `every port of this host's migration range ${t.ports.from}-${t.ports.to} on ${t.address} is in use (${tried.length} tried): widen migration.ports in host.yaml or find what holds them ('ss -ltn')`, { details: { address: t.address, ports: t.ports } });
}

/**
 * Source: TLS for a stream to `uri` when this host has it (the destination's
 * certificate must name the URI's address), plain otherwise; QEMU keeps the
 * parameters of a previous migration, so they are always set.
 */
export async function prepareOutgoing(t: MigrationTransport | null, inst: Instance, uri: string, signal: AbortSignal): Promise<void> {
  const m = /^tcp:([0-9.]+):[0-9]+$/.exec(uri);
  if (t?.tls && m && !m[1]!.startsWith("127.")) {
    await enableOutgoingTls(inst.qmp, { dir: t.tls.dir, hostname: m[1]! }, signal);
    return;
  }
  await disableMigrationTls(inst.qmp, signal);
}

/** QEMU's words when the stream's TLS refused a peer (migration/tls.c, crypto/tlssession.c; QEMU 7.2). */
const TLS_REFUSAL = /TLS x509 authz check for .* is denied|certificate hasn't got a known issuer|Certificate does not match the hostname|TLS handshake failed|Cannot (?:write to|read from) TLS channel|No certificate was found|certificate .* failed validation/i;

/** The last line of a QEMU log (or error) that says TLS refused a peer; undefined when none does. */
export function tlsRefusal(text: string): string | undefined {
  return text.split("\n").filter((l) => TLS_REFUSAL.test(l)).at(-1)?.trim();
}
