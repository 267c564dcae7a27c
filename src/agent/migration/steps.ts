// The agent's side of the migration protocol (DESIGN "Migration protocol"):
// begin / perform / switchover / confirm on the source (./source.ts),
// prepare / precheck / finish / abort on the destination (./destination.ts),
// reconciling with the controller (./reconcile.ts). Every step is keyed by the
// migration id and idempotent: asked again, it answers again without doing
// the work twice. Every wait has a deadline. This file is the steps' API for
// the HTTP routes and tests.
export type { InstanceRegistry, NetworkPlace, StepContext } from "./context.ts";
export { tapName } from "./context.ts";
export type { ArrivedNic } from "../../wire/steps.ts";
export { arrivingNics, bringBackNics, unplugEphemerals } from "./nics.ts";
export { discard, waitRunning } from "./lifecycle.ts";
export type { MigrateOutOptions } from "./outgoing.ts";
export { migrateOut } from "./outgoing.ts";
export type { ConfirmResult, PerformInput, PerformResult, SwitchoverResult } from "./source.ts";
export { begin, cancelOnSource, confirmSource, perform, rearmSources, switchover } from "./source.ts";
export type { FinishResult, PrepareInput, PrepareResult } from "./destination.ts";
export { abortDestination, finish, precheck, prepare, reapStaleDestinations } from "./destination.ts";
export type { ReconcileResult } from "./reconcile.ts";
export { knownMigrations, reconcileEnded } from "./reconcile.ts";
