// Migration steps, called by the controller's coordinator (DESIGN "Migration
// protocol"). Every route is keyed by the migration id and idempotent: the
// same step asked again answers again. Each request carries its deadlines;
// the agent never waits past them.
import { Type } from "typebox";
import { MAX_HOLD_MS } from "../faults.ts";
import * as steps from "../migration/steps.ts";
import { BeginBody, CancelBody, ConfirmBody, EmptyBody, FinishBody, PerformBody, PrecheckBody, PrepareBody, StepParams as Params, SwitchoverBody } from "../../wire/steps.ts";
import type { AgentAppDeps } from "./deps.ts";
import type { FerryFastify } from "../../core/http/type-provider.ts";

const HOUR = 3_600_000;
const Empty = EmptyBody;
/** An older controller sends no deadline: its plans' default precheckMs. */
const DEFAULT_PRECHECK_MS = 2_000;

/** A request's own deadline: its longest wait plus a margin, capped. */
const within = (ms: number): AbortSignal => AbortSignal.timeout(Math.min(ms + 5_000, 2 * HOUR));

export function migrationRoutes(app: FerryFastify, { agent }: AgentAppDeps): void {
  const ctx = (): steps.StepContext => agent.stepContext();
  const post = app.post.bind(app);

  post("/v1/migrations/:id/begin", {
    schema: { params: Params, body: BeginBody },
    config: { openapi: { summary: "Source: freeze the VM definition of a running instance for a migration" } },
  }, (req) => steps.begin(ctx(), req.params.id, req.body.instanceId, within(MAX_HOLD_MS)));

  post("/v1/migrations/:id/prepare", {
    schema: { params: Params, body: PrepareBody },
    config: { openapi: { summary: "Destination: lease the planned VFs to the migration, start QEMU with -incoming, listen on the migration network (TLS: only sourceIdentity is admitted)" } },
  }, async (req) => steps.prepare(ctx(), req.params.id, { spec: await agent.admitSpec(req.body.spec), nics: req.body.nics, leaseTtlMs: req.body.leaseTtlMs, adoptFrom: req.body.adoptFrom, ...(req.body.sourceIdentity === undefined ? {} : { sourceIdentity: req.body.sourceIdentity }), ...(req.body.primaryBackMs === undefined ? {} : { primaryBackMs: req.body.primaryBackMs }) }, within(60_000)));

  post("/v1/migrations/:id/perform", {
    schema: { params: Params, body: PerformBody },
    config: { openapi: { summary: "Source: unplug ephemeral NICs (deadline), migrate with pause-before-switchover, wait for pre-switchover; with no switchover or cancel by precheckMs plus the host's switchoverGraceMs, the source cancels and resumes the guest itself" } },
  }, (req) => steps.perform(ctx(), req.params.id, req.body, within(req.body.unplugMs + req.body.convergeMs)));

  post("/v1/migrations/:id/cancel", {
    schema: { params: Params, body: CancelBody },
    config: { openapi: { summary: "Source: best-effort cancel; answers cancelled, completed (too late), failed or not-running" } },
  }, (req) => steps.cancelOnSource(ctx(), req.params.id, req.body.instanceId, within(10_000)));

  post("/v1/migrations/:id/precheck", {
    schema: { params: Params, body: Type.Optional(PrecheckBody) },
    config: { openapi: { summary: "Destination: bounded check at pre-switchover (instance alive and incoming, VFs still reserved), within the controller's timeoutMs (default 2000)" } },
  }, (req) => steps.precheck(ctx(), req.params.id, req.body?.timeoutMs ?? DEFAULT_PRECHECK_MS));

  post("/v1/migrations/:id/switchover", {
    schema: { params: Params, body: SwitchoverBody },
    config: { openapi: { summary: "Source: migrate-continue at pre-switchover and wait for completion (the point of no return); FERRY_ERR_SOURCE_GAVE_UP when the source gave up waiting and resumed the guest" } },
  }, (req) => steps.switchover(ctx(), req.params.id, req.body.instanceId, req.body.timeoutMs, within(req.body.timeoutMs)));

  post("/v1/migrations/:id/finish", {
    schema: { params: Params, body: FinishBody },
    config: { openapi: { summary: "Destination: run the guest, re-plug ephemeral NICs, wait for failover primaries, move leases to the instance" } },
  }, (req) => steps.finish(ctx(), req.params.id, req.body.primaryBackMs, within(req.body.primaryBackMs + 10_000)));

  post("/v1/migrations/:id/confirm", {
    schema: { params: Params, body: ConfirmBody },
    config: { openapi: { summary: "Source: on success stop the instance and release its VFs; on failure resume it and re-plug what was unplugged" } },
  }, (req) => steps.confirmSource(ctx(), req.params.id, req.body.instanceId, req.body.success, within(30_000)));

  post("/v1/migrations/:id/abort", {
    schema: { params: Params, body: Type.Optional(Empty) },
    config: { openapi: { summary: "Destination: kill the incoming instance and release the migration's VFs" } },
  }, (req) => steps.abortDestination(ctx(), req.params.id));
}
