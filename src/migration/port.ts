// The coordinator's one I/O seam toward the hosts: the migration steps of the
// source and destination agents. Implemented over HTTP elsewhere; tests use a
// scripted double. Every call takes `signal` (the coordinator's step deadline
// composed with its caller's) and is idempotent by `plan.id` on the agent
// side: a restarted controller re-sends the step it was in, and an agent that
// already did it answers again with the same result. Expected refusals are
// FerryErrors with stable codes (FERRY_ERR_NO_VF, FERRY_ERR_UNPLUG_TIMEOUT, …).
//
// Each call is addressed by the plan: source calls go to plan.source.host,
// destination calls to plan.destination.host. A migrate-back is not a port
// call: the coordinator runs a second migration (plan.link) with the same
// steps, destination → original source (see back.ts).
import { Type } from "typebox";
import type { Static } from "typebox";
import { DestinationMoments, SourceMoments } from "./timeline.ts";
import type { MigrationPlan } from "./types.ts";

// What each step answers, as far as the runner reads it: schemas (the agent
// API's replies in src/wire/steps.ts extend them) and the types derived.

export const PrepareResult = Type.Object({
  /** The destination instance (-incoming) created for this migration. */
  instanceId: Type.String(),
  /** Where the source streams to. */
  uri: Type.String(),
});
export type PrepareResult = Static<typeof PrepareResult>;

/** A migration's convergence policy request (CONVERGENCE_REQUESTS). */
export const ConvergenceRequestSchema = Type.Union([Type.Literal("auto"), Type.Literal("off"), Type.Literal("auto-converge")]);

/** The convergence policy the source chose for a migration, and why (src/migration/convergence.ts). */
export const ConvergenceChosen = Type.Object({
  requested: Type.String(),
  autoConverge: Type.Boolean(),
  throttleInitial: Type.Optional(Type.Number()),
  throttleIncrement: Type.Optional(Type.Number()),
  dirtyBytesPerS: Type.Optional(Type.Number()),
  bandwidthBytesPerS: Type.Number(),
  bandwidthFrom: Type.String(),
  reason: Type.String(),
  downtimeLimitMs: Type.Optional(Type.Number()),
});
export const PerformResult = Type.Object({ status: Type.Literal("pre-switchover"), convergence: Type.Optional(ConvergenceChosen) });
export type PerformResult = Static<typeof PerformResult>;

export const PrecheckResult = Type.Object({ ok: Type.Boolean(), reason: Type.Optional(Type.String()) });
export type PrecheckResult = Static<typeof PrecheckResult>;

export const SwitchoverResult = Type.Object({
  totalMs: Type.Number(),
  downtimeMs: Type.Number(),
  transferredBytes: Type.Optional(Type.Number({ description: "RAM QEMU sent in the whole migration (the record's data moved)" })),
  /** The source's moments of the switch-over (absent from agents older than it). */
  timeline: Type.Optional(SourceMoments),
});
export type SwitchoverResult = Static<typeof SwitchoverResult>;

export const FinishNic = Type.Object({ name: Type.String(), attached: Type.Boolean(), error: Type.Optional(Type.String()) });
export type FinishNic = Static<typeof FinishNic>;

/** The destination's moments (RESUME, the forwarding update) are absent from agents older than them. */
export const FinishResult = Type.Object({
  nics: Type.Array(FinishNic),
  timeline: Type.Optional(DestinationMoments),
  /** epoch ms: the guest's kernel panicked on the destination by the end of finish (QEMU's GUEST_PANICKED; qemu/instance.ts guestPanickedAt). */
  guestPanickedAt: Type.Optional(Type.Integer()),
});
export type FinishResult = Static<typeof FinishResult>;

/** What confirm did on the source: stopped it (success), runs it again (failure), or found its QEMU gone. */
export const ConfirmResult = Type.Object({
  state: Type.Union([Type.Literal("stopped"), Type.Literal("running"), Type.Literal("gone")]),
  /** Failure: how long the guest was paused by the migration before it ran on the source again (the source's QEMU STOP → RESUME). */
  pausedMs: Type.Optional(Type.Number()),
});
export type ConfirmResult = Static<typeof ConfirmResult>;

/** What a best-effort cancel found on the source (after Cloud Hypervisor's cancel.rs). */
export const CancelSourceResult = Type.Union([Type.Literal("cancelled"), Type.Literal("completed"), Type.Literal("failed"), Type.Literal("not-running")]);
export type CancelSourceResult = Static<typeof CancelSourceResult>;

export interface AgentPort {
  /** Source: the VM runs, every NIC has a mode that can migrate; freezes the definition. */
  begin(plan: MigrationPlan, signal: AbortSignal): Promise<void>;
  /** Destination: lease the planned VFs to the migration (or adopt plan.link.adoptFrom's), run feature inits, start QEMU -incoming. FERRY_ERR_NO_VF / FERRY_ERR_LEASE_HELD when a planned VF is gone. */
  prepare(plan: MigrationPlan, signal: AbortSignal): Promise<PrepareResult>;
  /** Source: unplug ephemeral NICs (FERRY_ERR_UNPLUG_TIMEOUT past unplugMs), migrate with pause-before-switchover, wait for pre-switchover within convergeMs. */
  perform(plan: MigrationPlan, uri: string, signal: AbortSignal): Promise<PerformResult>;
  /** Destination: the cached, bounded re-check at pre-switchover (the guest is paused). */
  precheck(plan: MigrationPlan, signal: AbortSignal): Promise<PrecheckResult>;
  /** Source: migrate-continue, wait for completed. */
  switchover(plan: MigrationPlan, signal: AbortSignal): Promise<SwitchoverResult>;
  /** Destination: resume, re-plug ephemeral NICs, wait for failover primaries within primaryBackMs, move leases migration → instance. */
  finish(plan: MigrationPlan, signal: AbortSignal): Promise<FinishResult>;
  /**
   * Source. success: stop the source instance, release its leases and features
   * (only those still held by plan.source.instanceId: after a migrate-back the
   * back migration has adopted them). Failure: cancel the migration if
   * running, resume the source, re-plug what was unplugged.
   */
  confirmSource(plan: MigrationPlan, success: boolean, signal: AbortSignal): Promise<ConfirmResult | void>;
  /** Destination: kill the destination instance, release its leases and features. */
  abortDestination(plan: MigrationPlan, signal: AbortSignal): Promise<void>;
  /** Source: cancel the outgoing migration if it runs, and say what happened. */
  cancelSource(plan: MigrationPlan, signal: AbortSignal): Promise<CancelSourceResult>;
}
