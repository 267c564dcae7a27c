// What the coordinator's parts share (runner.ts drives a migration,
// step-answers.ts reads each step's answer, apply.ts persists a transition,
// cleanup.ts retries a destination's cleanup): its dependencies, the events
// it tells, and a step's outcome.
import type { Clock } from "../core/clock.ts";
import type { ErrorCode } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Store } from "./store-port.ts";
import type { AgentPort } from "./port.ts";
import type { MigrationEvent, Step } from "./table.ts";
import type { CleanupState, MigrationRecord, NicResult, Outcome, Phase, RunsOn } from "./types.ts";

/** What the coordinator tells the event stream, after it is persisted. */
export type CoordinatorEvent =
  | { type: "phase"; migrationId: string; from: Phase; to: Phase; event: MigrationEvent; at: number }
  | { type: "outcome"; migrationId: string; outcome: Outcome; reason: string; code: ErrorCode | null; runsOn: RunsOn | null; at: number }
  | { type: "nic-degraded" | "nic-missing"; migrationId: string; nic: string; policy: NicResult["policy"]; status: NicResult["status"]; error: string | undefined; at: number }
  | { type: "step"; migrationId: string; phase: Phase; step: Step; attempt: number; resent: boolean; at: number }
  | { type: "step-failed"; migrationId: string; phase: Phase; step: Step; attempt: number; code: ErrorCode; message: string; at: number }
  | { type: "warning"; migrationId: string; text: string; at: number }
  | { type: "cleanup"; migrationId: string; host: string; state: CleanupState; attempts: number; error: string | undefined; at: number }
  | { type: "cancel-requested"; migrationId: string; phase: Phase; at: number };

export interface RunnerDeps {
  store: Store;
  port: AgentPort;
  clock: Clock;
  log: Logger;
  /** Stops the runner (not the migration): it rejects with FERRY_ERR_ABORTED and a later run resumes. */
  signal?: AbortSignal;
  onEvent?: (e: CoordinatorEvent) => void;
  /** First pause before retrying a failed step (doubled each time, at most 10 s). Default 500 ms. */
  retryBackoffMs?: number;
}

/** What a step came to: the table's event, and what the record gets from it. */
export interface StepOutcome {
  event: MigrationEvent;
  /** Appended to the verdict's reason or a warning. */
  detail?: string;
  code?: ErrorCode;
  patch?: Partial<Pick<MigrationRecord, "prepared" | "switchover" | "nics" | "childId" | "pausedMs" | "convergence" | "switchoverTimeline" | "warnings">>;
  /** The finished migrate-back (phase migrate-back). */
  back?: MigrationRecord;
}
