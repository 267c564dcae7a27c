// The cluster's controllers and which one leads (`ferry controllers`).
import { ControllersView } from "../../wire/controllers.ts";
import type { ControllerAppDeps, ControllerFastify } from "../deps.ts";
import { leadershipOf } from "../forward.ts";

export function controllerRoutes(app: ControllerFastify, deps: ControllerAppDeps): void {
  const leadership = leadershipOf(deps);
  app.get("/v1/controllers", { schema: { response: { 200: ControllersView } }, config: { openapi: { summary: "The controllers (members of the election), the leader and its term; any controller answers" } } }, () => leadership.view());
}
