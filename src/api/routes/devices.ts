// VFs across the live hosts, from each agent's inventory.
import { DeviceList, DeviceQuery } from "../../wire/controller-api.ts";
import type { ControllerAppDeps, ControllerFastify } from "../deps.ts";

export function deviceRoutes(app: ControllerFastify, { controller }: ControllerAppDeps): void {
  app.get(
    "/v1/devices",
    { schema: { querystring: DeviceQuery, response: { 200: DeviceList } }, config: { openapi: { summary: "VFs of the live hosts (network, model, lease, VM), optionally of one host or network" } } },
    async (req) => ({
      devices: await controller.devices({ ...(req.query.host === undefined ? {} : { host: req.query.host }), ...(req.query.network === undefined ? {} : { network: req.query.network }) }),
    }),
  );
}
