// What the HTTP layer needs: the agent (operations), the token, a logger.
import type { Logger } from "../../core/log.ts";
import type { Agent } from "../agent.ts";
import type { FerryFastify } from "../../core/http/type-provider.ts";

export interface AgentAppDeps {
  agent: Agent;
  /** The bearer token every request must carry. */
  token: string;
  log?: Logger;
}

/** A route file: registers its resource's routes on the app. */
export type RouteFile = (app: FerryFastify, deps: AgentAppDeps) => void;
