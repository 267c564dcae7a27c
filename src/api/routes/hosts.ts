// Hosts as the controller knows them (registered by heartbeat; up, down, draining).
import { HostList } from "../../wire/controller-api.ts";
import type { ControllerAppDeps, ControllerFastify } from "../deps.ts";

export function hostRoutes(app: ControllerFastify, { controller }: ControllerAppDeps): void {
  app.get("/v1/hosts", { schema: { response: { 200: HostList } }, config: { openapi: { summary: "Registered hosts with their state, last heartbeat and VF use per network" } } }, async () => ({
    hosts: await controller.hostsWithVfs(),
  }));
}
