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
import type { MigrationPlan } from "./types.ts";

export interface PrepareResult {
  /** The destination instance (-incoming) created for this migration. */
  instanceId: string;
  /** Where the source streams to. */
  uri: string;
}

export interface PerformResult {
  status: "pre-switchover";
}

export interface PrecheckResult {
  ok: boolean;
  reason?: string;
}

export interface SwitchoverResult {
  totalMs: number;
  downtimeMs: number;
}

export interface FinishNic {
  name: string;
  attached: boolean;
  error?: string;
}

export interface FinishResult {
  nics: FinishNic[];
}

/** What confirm did on the source: stopped it (success), runs it again (failure), or found its QEMU gone. */
export interface ConfirmResult {
  state: "stopped" | "running" | "gone";
  /** Failure: how long the guest was paused by the migration before it ran on the source again (the source's QEMU STOP → RESUME). */
  pausedMs?: number;
}

/** What a best-effort cancel found on the source (after Cloud Hypervisor's cancel.rs). */
export type CancelSourceResult = "cancelled" | "completed" | "failed" | "not-running";

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
