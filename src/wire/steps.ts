// The agent API's migration steps (DESIGN "Migration protocol"): each step's
// request body and reply, once, as schemas with their types derived. The
// agent's routes validate requests with them (agent/http/migrations.ts), its
// steps answer the replies (agent/migration/), and the agent client checks
// the replies (wire/agent-client.ts). A reply extends what the runner reads
// of it (migration/port.ts) with what the agent reports besides.
import { Type } from "typebox";
import type { Static, TObject, TProperties } from "typebox";
import { ruled } from "../core/http/schema.ts";
import { CancelSourceResult, ConfirmResult, ConvergenceRequestSchema, FinishNic, FinishResult, PerformResult, PrecheckResult, PrepareResult, SwitchoverResult } from "../migration/port.ts";
import type { VmSpec } from "../model/vm.ts";
import { InstanceId, Name, PciAddress } from "./agent-api.ts";

const HOUR = 3_600_000;
const Ms = (max: number) => Type.Integer({ minimum: 1, maximum: max });
const strict = <T extends TProperties>(p: T): TObject<T> => Type.Object(p, { additionalProperties: false });

/** A VmSpec on the wire: any object here; the agent admits it (parseVmSpec) before use. */
export const SpecBody = Type.Unsafe<VmSpec>(Type.Object({}, { additionalProperties: true }));

export const StepParams = Type.Object({ id: Name });
export const EmptyBody = Type.Object({}, { additionalProperties: false });

/** A NIC and the VF it gets on the host that receives the guest (null: none). */
export const NicVf = strict({ name: Name, vf: Type.Union([PciAddress, Type.Null()]) });
export type NicVf = Static<typeof NicVf>;

/** A NIC of a guest that arrived: its VF here (null: none) and whether its primary is attached. */
export const ArrivedNic = Type.Object({ ...FinishNic.properties, vf: Type.Union([Type.String(), Type.Null()]) });
export type ArrivedNic = Static<typeof ArrivedNic>;

// ---- source

export const BeginBody = strict({ instanceId: InstanceId });
export const BeginReply = Type.Object({ spec: SpecBody });
export type BeginReply = Static<typeof BeginReply>;

export const PerformBody = strict({
  instanceId: InstanceId,
  uri: Type.String(ruled("^tcp:127\\.0\\.0\\.1:[0-9]{1,5}$|^tcp:[0-9.]{7,15}:[0-9]{1,5}$", "tcp:ADDRESS:PORT with an IPv4 address (the destination's prepare answer)")),
  unplugMs: Ms(HOUR),
  convergeMs: Ms(HOUR),
  maxBandwidthBytes: Type.Optional(Type.Integer({ minimum: 1 })),
  downtimeLimitMs: Type.Optional(Ms(60_000)),
  /** Convergence policy: "auto" (default; from the measured dirty rate), "off" (QEMU's defaults), "auto-converge". */
  convergence: Type.Optional(ConvergenceRequestSchema),
  /** The controller's destination check at pre-switchover (plan precheckMs); the source waits this plus its grace, then gives up. Default 2000. */
  precheckMs: Type.Optional(Ms(HOUR)),
});
export type PerformBody = Static<typeof PerformBody>;
export const PerformReply = Type.Object({ ...PerformResult.properties, transferredBytes: Type.Number(), remainingBytes: Type.Number() });
export type PerformReply = Static<typeof PerformReply>;

export const CancelBody = strict({ instanceId: InstanceId });
export const CancelReply = Type.Object({ result: CancelSourceResult });
export type CancelReply = Static<typeof CancelReply>;

export const SwitchoverBody = strict({ instanceId: InstanceId, timeoutMs: Ms(HOUR) });
export const SwitchoverReply = Type.Object({ ...SwitchoverResult.properties, transferredBytes: Type.Number() });
export type SwitchoverReply = Static<typeof SwitchoverReply>;

export const ConfirmBody = strict({ instanceId: InstanceId, success: Type.Boolean() });
export const ConfirmReply = ConfirmResult;
export type ConfirmReply = ConfirmResult;

// ---- destination

export const PrepareBody = strict({
  spec: Type.Object({}, { additionalProperties: true }),
  nics: Type.Array(NicVf, { maxItems: 28 }),
  leaseTtlMs: Ms(24 * HOUR),
  /** Migrate-back: the instance on this host that the guest left; its VF leases move to this migration. */
  adoptFrom: Type.Optional(InstanceId),
  /** The planned source host's migration certificate subject (what it advertised): with TLS on this host's migration network, the only client the incoming QEMU admits. */
  sourceIdentity: Type.Optional(Type.String({ ...ruled("^[A-Za-z0-9.]+=[ -~]*$", "a certificate subject DN such as CN=host-a"), maxLength: 1024 })),
  /** The plan's primaryBackMs: after RESUME the destination steers to each failover primary QEMU plugs back within it, finish or not (absent: an older controller; finish does it). */
  primaryBackMs: Type.Optional(Ms(HOUR)),
});
export type PrepareBody = Static<typeof PrepareBody>;
export const PrepareReply = PrepareResult;
export type PrepareReply = PrepareResult;

/** The controller's deadline for the check (its plan's precheckMs; absent: an older controller, 2000 ms): the agent's QMP queries share it, less what the answer needs to come back. */
export const PrecheckBody = strict({ timeoutMs: Type.Optional(Ms(HOUR)) });
export type PrecheckBody = Static<typeof PrecheckBody>;
export const PrecheckReply = PrecheckResult;
export type PrecheckReply = PrecheckResult;

export const FinishBody = strict({ primaryBackMs: Ms(HOUR) });
export const FinishReply = Type.Object({ instanceId: Type.String(), nics: Type.Array(ArrivedNic), timeline: FinishResult.properties.timeline, guestPanickedAt: FinishResult.properties.guestPanickedAt });
export type FinishReply = Static<typeof FinishReply>;

export const AbortReply = Type.Object({ aborted: Type.Boolean() });
export type AbortReply = Static<typeof AbortReply>;
