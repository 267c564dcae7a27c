// One migration live: its event stream (SSE: the phases so far, then its
// events and QEMU's progress every ~250 ms while perform runs, `end` with the
// settled record, then the stream closes), and its limits tuned while RAM
// streams (set; force-complete).
import { systemClock } from "../../core/clock.ts";
import { MigrationParams } from "../../wire/controller-api.ts";
import { ForceCompleteInput, ForceCompleteView, MigrationLimitsInput, MigrationLimitsView } from "../../wire/migration-stream.ts";
import type { MigrationStreamEvent } from "../../wire/migration-stream.ts";
import type { ControllerAppDeps, ControllerFastify } from "../deps.ts";

function frame(e: MigrationStreamEvent): string {
  return `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
}

export function migrationLiveRoutes(app: ControllerFastify, { controller, clock = systemClock }: ControllerAppDeps): void {
  app.get(
    "/v1/migrations/:id/events",
    {
      schema: { params: MigrationParams },
      config: { openapi: { summary: "One migration's server-sent events (text/event-stream): first `phase` for each phase so far (replayed: true), then its events as they come (phase, step, warning, tuned, outcome, …), `progress` (QEMU's RAM progress) every ~250 ms while perform runs, and `end` with the settled record, after which the stream closes" } },
    },
    async (req, reply) => {
      await controller.getMigration(req.params.id); // 404 as a problem body, before the stream starts
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", connection: "keep-alive" });
      const closed = new AbortController();
      const stop = (): void => closed.abort();
      req.raw.on("close", stop);
      res.on("close", stop);
      void (async () => {
        while (!closed.signal.aborted) {
          await clock.sleep(15_000, closed.signal).then(() => res.write(": ping\n\n"), () => undefined);
        }
      })();
      try {
        await controller.followMigration(req.params.id, (e) => res.write(frame(e)), closed.signal);
      } finally {
        closed.abort();
        res.end();
      }
    },
  );
  app.post(
    "/v1/migrations/:id/parameters",
    {
      schema: { params: MigrationParams, body: MigrationLimitsInput, response: { 200: MigrationLimitsView } },
      config: { openapi: { summary: "Change a running migration's bandwidth cap (MiB/s) or downtime limit (ms) on the source's QEMU (migrate-set-parameters), while its RAM streams (phase perform; else 409 FERRY_ERR_STATE); answers what QEMU holds then" } },
    },
    (req) => controller.setMigrationLimits(req.params.id, req.body),
  );
  app.post(
    "/v1/migrations/:id/force-complete",
    {
      schema: { params: MigrationParams, body: ForceCompleteInput, response: { 200: ForceCompleteView } },
      // no body is the same as {}: every field is optional
      preValidation: (req, _reply, done) => {
        req.body ??= {};
        done();
      },
      config: { openapi: { summary: "Make a running migration converge now: post-copy is not possible with failover NICs on QEMU 7.2, so the downtime limit is raised (to downtimeLimitMs, else QEMU's expected downtime + 25 %, at least 2000 ms); answers what was done and why" } },
    },
    (req) => controller.forceCompleteMigration(req.params.id, req.body),
  );
}
