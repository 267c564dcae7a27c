// The agent API's data: TypeBox schemas (JSON Schema) and the types derived
// from them. One definition serves the routes (fastify validates requests
// and serialises replies with these), the OpenAPI document, the client
// (which validates replies against the same schemas) and the CLI renderers.
import { Type } from "typebox";
import type { Static, TSchema } from "typebox";
import { ruled } from "../core/http/schema.ts";

export const PCI_PATTERN = "^[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\\.[0-7]$";
export const UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
export const NAME_PATTERN = "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$";
export const INSTANCE_ID_PATTERN = "^i-[0-9a-f]{8}$";
/** Longest lease a migration may take (the controller renews it). */
export const MAX_LEASE_TTL_MS = 24 * 3600 * 1000;

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);


export const NAME_RULE = "1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit";
export const Name = Type.String(ruled(NAME_PATTERN, NAME_RULE));
export const PciAddress = Type.String(ruled(PCI_PATTERN, "a PCI address dddd:bb:dd.f in lower-case hex, e.g. 0000:3b:10.1"));
export const VmUuid = Type.String(ruled(UUID_PATTERN, "a UUID in lower-case hex, e.g. 6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab"));
export const InstanceId = Type.String(ruled(INSTANCE_ID_PATTERN, "an instance id: 'i-' and 8 lower-case hex digits, e.g. i-0a1b2c3d ('ferry vm show NAME' shows a VM's)"));
/** A save file's name (no path: save files live in the host's saveDir). */
export const SaveName = Type.String(ruled("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", "a file name, not a path: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit (save files go in the host's saveDir)"));


// ---- leases

export const InstanceHolder = Type.Object(
  { kind: Type.Literal("instance"), vmUuid: VmUuid, instanceId: Name },
  { additionalProperties: false },
);
export const MigrationHolder = Type.Object(
  {
    kind: Type.Literal("migration"),
    migrationId: Name,
    vmUuid: VmUuid,
    expiresAt: Type.Integer({ description: "epoch ms (agent clock)" }),
  },
  { additionalProperties: false },
);
export const Holder = Type.Union([InstanceHolder, MigrationHolder]);

/**
 * A holder as a client names it. A migration holder gives `ttlMs` (the agent
 * turns it into `expiresAt` on its own clock: no clock skew); to release or
 * transfer, only the identity (kind, vmUuid, instanceId | migrationId) counts.
 */
export const HolderInput = Type.Object(
  {
    kind: Type.Union([Type.Literal("instance"), Type.Literal("migration")]),
    vmUuid: VmUuid,
    instanceId: Type.Optional(Name),
    migrationId: Type.Optional(Name),
    ttlMs: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LEASE_TTL_MS })),
  },
  { additionalProperties: false },
);
export type HolderInputBody = Static<typeof HolderInput>;

export const Lease = Type.Object({ vf: PciAddress, holder: Holder, createdAt: Type.Integer(), updatedAt: Type.Integer() });
export type LeaseView = Static<typeof Lease>;
export const LeaseList = Type.Object({ leases: Type.Array(Lease) });
export type LeaseListView = Static<typeof LeaseList>;
export const Released = Type.Object({ vf: PciAddress, released: Type.Boolean() });
export type ReleasedView = Static<typeof Released>;

// ---- inventory

export const PfView = Type.Object({
  bdf: PciAddress,
  ifname: Nullable(Type.String()),
  network: Type.String(),
  vendor: Type.String(),
  device: Type.String(),
  numaNode: Nullable(Type.Integer()),
  bandwidthMbps: Nullable(Type.Integer()),
  totalVfs: Type.Integer(),
  numVfs: Type.Integer(),
});
export const VfView = Type.Object({
  bdf: PciAddress,
  pf: PciAddress,
  pfIfname: Nullable(Type.String()),
  vfIndex: Type.Integer(),
  network: Type.String(),
  vendor: Type.String(),
  device: Type.String(),
  numaNode: Nullable(Type.Integer()),
  mac: Nullable(Type.String()),
  vlan: Nullable(Type.Integer()),
  standIn: Nullable(Type.Object({ model: Type.String() })),
  lease: Nullable(Holder),
});
export const NetworkView = Type.Object({
  name: Type.String(),
  bridge: Nullable(Type.String()),
  netns: Nullable(Type.String()),
  vlan: Nullable(Type.Integer()),
  vfs: Type.Integer({ description: "usable VFs on this network" }),
  free: Type.Integer({ description: "of which not leased" }),
});
export const Inventory = Type.Object({
  host: Type.String(),
  sysfsRoot: Type.String(),
  pfs: Type.Array(PfView),
  vfs: Type.Array(VfView),
  networks: Type.Array(NetworkView),
  leases: Type.Array(Lease),
  problems: Type.Array(Type.Object({ bdf: Type.String(), path: Type.String(), message: Type.String() })),
  vfioMigration: Type.Optional(Type.Object(
    { available: Type.Boolean(), reason: Type.String() },
    { description: "native VFIO device-state migration on this host (QEMU >= 8.1 with enable-migration, a vfio-pci variant driver with migration support), probed at agent start" },
  )),
});
export type InventoryView = Static<typeof Inventory>;
export type VfViewT = Static<typeof VfView>;

// ---- instances

export const InstanceView = Type.Object({
  instanceId: InstanceId,
  vmUuid: VmUuid,
  vmName: Type.String(),
  pid: Type.Integer(),
  startedAt: Type.Integer({ description: "epoch ms" }),
  accel: Type.String(),
  netns: Nullable(Type.String()),
  incoming: Type.Boolean(),
  state: Type.String({ description: "QMP query-status (running, paused, inmigrate, …), or unreachable" }),
  running: Type.Boolean(),
  devices: Type.Array(Type.String(), { description: "ids of the guest devices that exist now (QMP qom-list /machine/peripheral); a failover primary QEMU still hides is absent" }),
  vfs: Type.Array(PciAddress, { description: "VFs leased to this instance" }),
  nics: Type.Optional(Type.Array(Type.Object({ name: Type.String(), vf: Nullable(PciAddress) }), { description: "each NIC's VF (leased to this instance), or null" })),
  serialLog: Type.String(),
  guestPanickedAt: Type.Optional(Type.Integer({ description: "epoch ms: the guest's kernel panicked (QEMU's GUEST_PANICKED from the pvpanic device); absent while it has not since this agent connected to the instance's QEMU" })),
  error: Type.Optional(Type.String()),
});
export type InstanceViewT = Static<typeof InstanceView>;

/**
 * QMP states in which an instance does not hold the guest: its QEMU waits
 * for an incoming migration that has not arrived (inmigrate), the guest has
 * left it (postmigrate), it shut down, or its QEMU is gone. In every other
 * state (running, paused, unreachable but alive, …) the instance runs the
 * guest or can resume it: no second copy may be started anywhere.
 */
const NOT_HOLDING = new Set(["inmigrate", "postmigrate", "shutdown", "gone"]);

/** The instance runs its VM's guest, or could resume it (see NOT_HOLDING). */
export function holdsGuest(i: Pick<InstanceViewT, "state">): boolean {
  return !NOT_HOLDING.has(i.state);
}
export const GoneInstance = Type.Object({
  instanceId: Type.String(),
  vmUuid: Type.String(),
  vmName: Type.String(),
  pid: Type.Integer(),
  at: Type.Integer({ description: "epoch ms when the agent found it gone" }),
  reason: Type.String(),
  releasedVfs: Type.Array(PciAddress),
});
export type GoneInstanceT = Static<typeof GoneInstance>;
export const InstanceList = Type.Object({ instances: Type.Array(InstanceView), gone: Type.Array(GoneInstance) });
export type InstanceListView = Static<typeof InstanceList>;
export const StartInstanceBody = Type.Object(
  {
    spec: Type.Object({}, { additionalProperties: true, description: "a VmSpec (model/vm.ts), validated by parseVmSpec" }),
    incoming: Type.Optional(Type.Boolean({ description: "start as a migration target (-incoming defer)" })),
  },
  { additionalProperties: false },
);
export const Stopped = Type.Object({ instanceId: InstanceId, stopped: Type.Boolean(), releasedVfs: Type.Array(PciAddress) });
export type StoppedView = Static<typeof Stopped>;

// ---- health

export const Health = Type.Object({
  host: Type.String(),
  version: Type.String(),
  accel: Type.String(),
  accelReason: Type.String(),
  startedAt: Type.Integer({ description: "epoch ms" }),
  uptimeSeconds: Type.Number(),
  instances: Type.Integer(),
});
export type HealthView = Static<typeof Health>;
