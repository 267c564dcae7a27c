// GET /v1/health: host name, version, accelerator, uptime.
import { Health } from "../../wire/agent-api.ts";
import type { AgentAppDeps } from "./deps.ts";
import type { FerryFastify } from "../../core/http/type-provider.ts";

export function healthRoutes(app: FerryFastify, { agent }: AgentAppDeps): void {
  app.get("/v1/health", { schema: { response: { 200: Health } }, config: { openapi: { summary: "Agent health: host, version, accelerator, uptime" } } }, () => agent.health());
}
