// VF leases: list, acquire, release, transfer. A request is parsed into a
// typed holder (LeaseHolder) before the agent sees it.
import { Type } from "typebox";
import { invalid } from "../../core/errors.ts";
import type { LeaseHolder } from "../../host/leases.ts";
import * as v from "../../model/validate.ts";
import { HolderInput, Lease, LeaseList, PciAddress, Released } from "../../wire/agent-api.ts";
import type { HolderInputBody } from "../../wire/agent-api.ts";
import type { AgentAppDeps } from "./deps.ts";
import type { FerryFastify } from "../../core/http/type-provider.ts";

/** Default lifetime of a migration lease taken without ttlMs. */
export const DEFAULT_MIGRATION_TTL_MS = 10 * 60 * 1000;

/** A holder as named in a request → a LeaseHolder (migration: expiresAt = now + ttlMs on the agent's clock). */
export function parseHolder(field: string, x: unknown, now: number): LeaseHolder {
  const o = v.obj(field, x) as Partial<HolderInputBody>;
  const kind = v.oneOf(`${field}.kind`, o.kind, ["instance", "migration"] as const);
  const vmUuid = v.uuid(`${field}.vmUuid`, o.vmUuid);
  if (kind === "instance") {
    if (o.migrationId !== undefined || o.ttlMs !== undefined) throw invalid(`${field}.migrationId`, o.migrationId ?? o.ttlMs, "only a migration holder has migrationId/ttlMs");
    return { kind, vmUuid, instanceId: v.name(`${field}.instanceId`, o.instanceId) };
  }
  if (o.instanceId !== undefined) throw invalid(`${field}.instanceId`, o.instanceId, "a migration holder has no instanceId");
  const ttl = o.ttlMs === undefined ? DEFAULT_MIGRATION_TTL_MS : v.int(`${field}.ttlMs`, o.ttlMs, 1, Number.MAX_SAFE_INTEGER);
  return { kind, vmUuid, migrationId: v.name(`${field}.migrationId`, o.migrationId), expiresAt: now + ttl };
}

const VfParams = Type.Object({ vf: PciAddress });
const HolderQuery = Type.Object(
  {
    kind: Type.Optional(Type.Union([Type.Literal("instance"), Type.Literal("migration")])),
    vmUuid: Type.Optional(Type.String()),
    instanceId: Type.Optional(Type.String()),
    migrationId: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

export function leaseRoutes(app: FerryFastify, { agent }: AgentAppDeps): void {
  app.get("/v1/leases", { schema: { response: { 200: LeaseList } }, config: { openapi: { summary: "List VF leases" } } }, () => ({ leases: agent.listLeases() }));

  app.post(
    "/v1/leases",
    {
      schema: { body: Type.Object({ vf: PciAddress, holder: HolderInput }, { additionalProperties: false }), response: { 200: Lease } },
      config: { openapi: { summary: "Lease a VF to a holder (idempotent for the same holder; 409 FERRY_ERR_LEASE_HELD for another)" } },
    },
    (req) => agent.acquireLease(req.body.vf, parseHolder("holder", req.body.holder, agent.now())),
  );

  app.delete(
    "/v1/leases/:vf",
    {
      schema: { params: VfParams, querystring: HolderQuery, response: { 200: Released } },
      config: { openapi: { summary: "Release a VF (holder in the body {holder} or in the query); idempotent", body: Type.Object({ holder: HolderInput }) } },
    },
    (req) => {
      const body: unknown = req.body;
      const fromBody = typeof body === "object" && body !== null && "holder" in body;
      const holder = fromBody ? parseHolder("holder", body.holder, agent.now()) : parseHolder("query", req.query, agent.now());
      return { vf: req.params.vf, released: agent.releaseLease(req.params.vf, holder) };
    },
  );

  app.post(
    "/v1/leases/:vf/transfer",
    {
      schema: { params: VfParams, body: Type.Object({ from: HolderInput, to: HolderInput }, { additionalProperties: false }), response: { 200: Lease } },
      config: { openapi: { summary: "Hand a VF from one holder to another atomically (idempotent)" } },
    },
    (req) => agent.transferLease(req.params.vf, parseHolder("from", req.body.from, agent.now()), parseHolder("to", req.body.to, agent.now())),
  );
}
