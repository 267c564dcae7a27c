// Fault switches (lab hosts only): arm, list, clear.
import { Type } from "typebox";
import { FAULTS } from "../faults.ts";
import type { FaultName } from "../faults.ts";
import type { AgentAppDeps } from "./deps.ts";
import type { AgentFastify } from "./type-provider.ts";

const FaultName = Type.Unsafe<FaultName>({ type: "string", enum: [...FAULTS] });
const FaultList = Type.Object({ enabled: Type.Boolean(), armed: Type.Array(Type.Object({ name: FaultName, once: Type.Boolean() })) });

export function faultRoutes(app: AgentFastify, { agent }: AgentAppDeps): void {
  const view = () => ({ enabled: agent.faults.enabled, armed: agent.faults.list() });
  app.get("/v1/faults", { schema: { response: { 200: FaultList } }, config: { openapi: { summary: "Armed fault switches (lab hosts only)" } } }, view);
  app.post(
    "/v1/faults",
    {
      schema: { body: Type.Object({ name: FaultName, once: Type.Optional(Type.Boolean()) }, { additionalProperties: false }), response: { 200: FaultList } },
      config: { openapi: { summary: "Arm a fault switch; refused (409) unless the host config says lab: true" } },
    },
    (req) => {
      agent.faults.arm(req.body.name, req.body.once ?? false);
      return view();
    },
  );
  app.delete("/v1/faults", { schema: { response: { 200: FaultList } }, config: { openapi: { summary: "Disarm every fault switch" } } }, () => {
    agent.faults.clear();
    return view();
  });
}
