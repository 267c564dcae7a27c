// The migration network of a host (host.yaml `migration:`): checks at agent
// start that the configured address is really this host's, and the order in
// which an incoming migration tries the ports of its range.
import { networkInterfaces } from "node:os";
import { FerryError } from "../core/errors.ts";
import type { MigrationNetConfig } from "./config.ts";

type Interfaces = ReturnType<typeof networkInterfaces>;

/**
 * FERRY_ERR_CONFIG unless an interface of this host (its network namespace)
 * holds `migration.address`: a destination that listens on an address it does
 * not have fails every migration, later and less clearly.
 */
export function checkMigrationAddress(m: MigrationNetConfig, interfaces: Interfaces = networkInterfaces()): void {
  const held: string[] = [];
  for (const [ifname, addrs] of Object.entries(interfaces)) {
    for (const a of addrs ?? []) {
      if (a.family !== "IPv4" || a.internal) continue;
      if (a.address === m.address) return;
      held.push(`${a.address} (${ifname})`);
    }
  }
  throw new FerryError(
    "FERRY_ERR_CONFIG",
    `migration.address ${m.address} is not an address of this host (it has ${held.length ? held.join(", ") : "no IPv4 address but loopback"}): ` +
      "set migration.address to this host's address on the migration network, or add that address to an interface",
    { details: { field: "migration.address", address: m.address, held } },
  );
}

/**
 * The ports of the range in the order an incoming migration tries them:
 * starting at a rotating offset so that back-to-back migrations do not all
 * contend for the first port, each port once.
 */
export function portOrder(m: Pick<MigrationNetConfig, "ports">, start: number): number[] {
  const n = m.ports.to - m.ports.from + 1;
  const first = ((start % n) + n) % n;
  return Array.from({ length: n }, (_, i) => m.ports.from + ((first + i) % n));
}

/** Whether a QEMU error (migrate-incoming) says the port is taken. */
export function isAddressInUse(message: string): boolean {
  return /address already in use|EADDRINUSE/i.test(message);
}
