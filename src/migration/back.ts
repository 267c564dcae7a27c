// Migrate-back (policy row 4, mandatory): after switchover a mandatory NIC
// did not come back on the destination. The coordinator runs a second
// migration, linked to the first, from the destination back to the original
// source host, onto the VFs the source instance still holds (its leases are
// kept until the first migration's confirm). The agent at the original
// source adopts them at Prepare (plan.link.adoptFrom). Pure.
import { FerryError } from "../core/errors.ts";
import type { MigrationPlan, MigrationRecord } from "./types.ts";

export function backMigrationId(parentId: string): string {
  return `${parentId}-back`;
}

export function migrateBackPlan(parent: MigrationRecord): MigrationPlan {
  const p = parent.plan;
  if (parent.prepared === null) {
    throw new FerryError("FERRY_ERR_STATE", `migration ${parent.id}: cannot migrate back before the destination was prepared`);
  }
  if (p.link) throw new FerryError("FERRY_ERR_STATE", `migration ${parent.id} is itself a migrate-back; no third migration`);
  return {
    id: backMigrationId(p.id),
    vm: { ...p.vm },
    source: { host: p.destination.host, instanceId: parent.prepared.instanceId },
    destination: { host: p.source.host },
    // before: what the NIC has on the destination now (a VF that did not attach counts as none).
    nics: p.nics.map((n) => {
      const attached = parent.nics.find((r) => r.name === n.name)?.status === "attached";
      return { ...n, guestPorts: { ...n.guestPorts }, before: attached ? n.after : null, after: n.before };
    }),
    deadlines: { ...p.deadlines },
    link: { kind: "migrate-back", parentId: p.id, adoptFrom: { ...p.source } },
  };
}
