// QEMU instances on this host: list, describe, start from a VmSpec, stop.
import { Type } from "typebox";
import { FerryError, isFerryError } from "../../core/errors.ts";
import { InstanceId, InstanceList, InstanceView, StartInstanceBody, Stopped } from "../api.ts";
import * as v from "../../model/validate.ts";
import { localMigrate } from "../migration/local.ts";
import type { AgentAppDeps } from "./deps.ts";
import type { AgentFastify } from "./type-provider.ts";

const IdParams = Type.Object({ id: InstanceId });

/** parseVmSpec names fields relative to the spec; the API names them relative to the body. */
function specField(e: unknown): unknown {
  if (!isFerryError(e, "FERRY_ERR_INVALID")) return e;
  const field = e.details["field"];
  if (typeof field !== "string" || field.startsWith("spec")) return e;
  return new FerryError("FERRY_ERR_INVALID", `spec.${e.message}`, { cause: e, details: { ...e.details, field: `spec.${field}` } });
}

export function instanceRoutes(app: AgentFastify, { agent }: AgentAppDeps): void {
  app.get("/v1/instances", { schema: { response: { 200: InstanceList } }, config: { openapi: { summary: "Instances on this host (QMP status and PCI devices), and those found gone" } } }, () =>
    agent.listInstances(),
  );

  app.get("/v1/instances/:id", { schema: { params: IdParams, response: { 200: InstanceView } }, config: { openapi: { summary: "One instance" } } }, (req) =>
    agent.describeInstance(req.params.id),
  );

  app.post(
    "/v1/instances",
    { schema: { body: StartInstanceBody, response: { 201: InstanceView } }, config: { openapi: { summary: "Start an instance of a VmSpec on this host; its NICs' VFs are leased to it first" } } },
    async (req, reply) => {
      const view = await agent.startInstance(req.body.spec, { incoming: req.body.incoming ?? false }).catch((e: unknown) => {
        throw specField(e);
      });
      return reply.code(201).send(view);
    },
  );

  app.post(
    "/v1/instances/:id/stop",
    { schema: { params: IdParams, response: { 200: Stopped } }, config: { openapi: { summary: "Stop an instance (QMP quit, then SIGKILL) and release its VFs" } } },
    (req) => agent.stopInstance(req.params.id),
  );

  app.post(
    "/v1/instances/:id/local-migrate",
    {
      schema: {
        params: IdParams,
        body: Type.Object({
          qemuBinary: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
          unplugMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000 })),
          timeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000 })),
          primaryBackMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000 })),
        }, { additionalProperties: false }),
      },
      config: { openapi: { summary: "Local migration (QEMU upgrade in place): move the VM to a new instance on this host, RAM shared, VF leases moved" } },
    },
    (req) => {
      const b = req.body;
      const input = {
        instanceId: req.params.id,
        unplugMs: b.unplugMs ?? 15_000,
        timeoutMs: b.timeoutMs ?? 120_000,
        primaryBackMs: b.primaryBackMs ?? 30_000,
        ...(b.qemuBinary === undefined ? {} : { qemuBinary: v.absPath("qemuBinary", b.qemuBinary) }),
      };
      return localMigrate(agent.stepContext(), input, AbortSignal.timeout(input.unplugMs + input.timeoutMs + input.primaryBackMs + 30_000));
    },
  );
}
