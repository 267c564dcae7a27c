// Agents register and stay alive by heartbeating (the controller token).
import { HeartbeatBody, HeartbeatReply } from "../../wire/controller-api.ts";
import type { ControllerAppDeps, ControllerFastify } from "../deps.ts";

export function agentRoutes(app: ControllerFastify, { controller }: ControllerAppDeps): void {
  app.post(
    "/v1/agents/heartbeat",
    { schema: { body: HeartbeatBody, response: { 200: HeartbeatReply } }, config: { openapi: { summary: "An agent registers or says it is alive; a host that misses heartbeats for heartbeatTimeoutMs is marked down" } } },
    (req) => controller.heartbeat(req.body),
  );
}
