// GET /v1/inventory: PFs, usable VFs (network, stand-in model, lease holder), networks, leases.
import { Inventory } from "../../wire/agent-api.ts";
import type { AgentAppDeps } from "./deps.ts";
import type { FerryFastify } from "../../core/http/type-provider.ts";

export function inventoryRoutes(app: FerryFastify, { agent }: AgentAppDeps): void {
  app.get(
    "/v1/inventory",
    { schema: { response: { 200: Inventory } }, config: { openapi: { summary: "The host's PFs, VFs, networks and leases" } } },
    () => agent.inventory(),
  );
}
