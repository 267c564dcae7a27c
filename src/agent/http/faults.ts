// Fault switches (lab hosts only): arm, list (with the hold:<step> holds in
// progress), clear (which also releases every hold).
import { Type } from "typebox";
import { FAULTS, HOLD_STEPS, MAX_HOLD_MS } from "../faults.ts";
import type { FaultName, HoldStep } from "../faults.ts";
import type { AgentAppDeps } from "./deps.ts";
import type { FerryFastify } from "../../core/http/type-provider.ts";

const FaultName = Type.Unsafe<FaultName>({ type: "string", enum: [...FAULTS] });
const HoldStep = Type.Unsafe<HoldStep>({ type: "string", enum: [...HOLD_STEPS] });
const FaultList = Type.Object({
  enabled: Type.Boolean(),
  armed: Type.Array(Type.Object({ name: FaultName, once: Type.Boolean(), holdMs: Type.Optional(Type.Integer()) })),
  holding: Type.Array(Type.Object({ step: HoldStep, migrationId: Type.String(), since: Type.Integer(), until: Type.Integer() })),
});

export function faultRoutes(app: FerryFastify, { agent }: AgentAppDeps): void {
  const view = () => ({ enabled: agent.faults.enabled, armed: agent.faults.list(), holding: agent.faults.holding() });
  app.get("/v1/faults", { schema: { response: { 200: FaultList } }, config: { openapi: { summary: "Armed fault switches and the hold:<step> holds in progress (lab hosts only)" } } }, view);
  app.post(
    "/v1/faults",
    {
      schema: {
        body: Type.Object({ name: FaultName, once: Type.Optional(Type.Boolean()), holdMs: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_HOLD_MS })) }, { additionalProperties: false }),
        response: { 200: FaultList },
      },
      config: { openapi: { summary: "Arm a fault switch (hold:<step>: the step waits at its hold point up to holdMs); refused (409) unless the host config says lab: true" } },
    },
    (req) => {
      agent.faults.arm(req.body.name, req.body.once ?? false, req.body.holdMs);
      return view();
    },
  );
  app.delete("/v1/faults", { schema: { response: { 200: FaultList } }, config: { openapi: { summary: "Disarm every fault switch and release every hold in progress" } } }, () => {
    agent.faults.clear();
    return view();
  });
}
