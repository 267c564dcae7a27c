// Drain, undrain and evacuate a host; follow an evacuation (it runs in the
// background: POST answers 202 with its id, GET shows per-VM progress).
import { HostView } from "../../wire/controller-api.ts";
import { EvacuateBody, EvacuationList, EvacuationParams, EvacuationView, HostParams } from "../../wire/evacuation.ts";
import type { ControllerAppDeps, ControllerFastify } from "../deps.ts";
import type { Evacuations } from "../../controller/evacuation.ts";

export function evacuationRoutes(app: ControllerFastify, { evacuations }: ControllerAppDeps & { evacuations: Evacuations }): void {
  app.post(
    "/v1/hosts/:name/drain",
    { schema: { params: HostParams, response: { 200: HostView } }, config: { openapi: { summary: "Drain a host: it is never chosen as a destination until undrained (heartbeats and a down spell keep it draining)" } } },
    (req) => evacuations.drain(req.params.name),
  );
  app.post(
    "/v1/hosts/:name/undrain",
    { schema: { params: HostParams, response: { 200: HostView } }, config: { openapi: { summary: "Undrain a host: a destination again; an evacuation of it starts no more migrations" } } },
    (req) => evacuations.undrain(req.params.name),
  );
  app.post(
    "/v1/hosts/:name/evacuate",
    {
      schema: { params: HostParams, body: EvacuateBody, response: { 200: EvacuationView, 202: EvacuationView } },
      config: { openapi: { summary: "Evacuate a host: drain it, plan all its VMs together (no VF promised twice; unplaced VMs with their reasons), migrate them `parallel` at a time in the background. plan: true only answers the plan (200), nothing changes" } },
    },
    async (req, reply) => {
      const b = req.body;
      const e = await evacuations.evacuate(req.params.name, {
        ...(b.parallel === undefined ? {} : { parallel: b.parallel }),
        ...(b.maxBandwidthMiBps === undefined ? {} : { maxBandwidthMiBps: b.maxBandwidthMiBps }),
        ...(b.plan === undefined ? {} : { plan: b.plan }),
      });
      return reply.code(e.state === "planned" ? 200 : 202).send(e);
    },
  );
  app.get("/v1/evacuations", { schema: { response: { 200: EvacuationList } }, config: { openapi: { summary: "The evacuations this controller ran since it started (kept in memory)" } } }, () => ({
    evacuations: evacuations.list(),
  }));
  app.get("/v1/evacuations/:id", { schema: { params: EvacuationParams, response: { 200: EvacuationView } }, config: { openapi: { summary: "One evacuation: per-VM status, phase, outcome and reason, and the counts" } } }, (req) =>
    evacuations.get(req.params.id),
  );
}
