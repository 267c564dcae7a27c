// Migrations: plan or start one (it runs in the background), list, show, cancel;
// follow and tune a running one (migration-live.ts).
import { CancelView, MigrateBody, MigrateReply, MigrationList, MigrationParams, MigrationView } from "../../wire/controller-api.ts";
import type { ControllerAppDeps, ControllerFastify } from "../deps.ts";
import { migrationLiveRoutes } from "./migration-live.ts";

export function migrationRoutes(app: ControllerFastify, deps: ControllerAppDeps): void {
  const { controller } = deps;
  app.post(
    "/v1/migrations",
    {
      schema: { body: MigrateBody, response: { 200: MigrateReply, 202: MigrateReply } },
      config: { openapi: { summary: "Migrate a VM (to a host, or where the scheduler ranks best); plan: true only answers the ranked destinations, the rejections, the pre-flight checks per destination (blockers, warnings) and a prediction of duration and downtime from the guest's dirty rate (measured for ~1 s). Refused (409 FERRY_ERR_NO_VF / FERRY_ERR_NO_HOST) when no host can take it" } },
    },
    async (req, reply) => {
      const b = req.body;
      const input = { vm: b.vm, ...(b.to === undefined ? {} : { to: b.to }), ...(b.deadlines === undefined ? {} : { deadlines: b.deadlines }), ...(b.convergence === undefined ? {} : { convergence: b.convergence }), ...(b.maxBandwidthMiBps === undefined ? {} : { maxBandwidthBytes: b.maxBandwidthMiBps * 1024 * 1024 }) };
      if (b.plan === true) {
        const { vm, source, destinations, rejections, message, blockers, warnings, checks, dirtyRate, predictions } = await controller.plan(input, { predict: true });
        return reply.code(200).send({ kind: "plan", plan: { vm, source, destinations, rejections, message, ...(blockers ? { blockers } : {}), ...(warnings ? { warnings } : {}), ...(checks ? { checks } : {}), ...(dirtyRate ? { dirtyRate } : {}), ...(predictions ? { predictions } : {}) } });
      }
      return reply.code(202).send({ kind: "started", migration: await controller.migrate(input) });
    },
  );
  app.get("/v1/migrations", { schema: { response: { 200: MigrationList } }, config: { openapi: { summary: "Every migration, oldest first" } } }, async () => ({
    migrations: await controller.listMigrations(),
  }));
  app.get("/v1/migrations/:id", { schema: { params: MigrationParams, response: { 200: MigrationView } }, config: { openapi: { summary: "One migration: its plan, phase, timings, outcome" } } }, (req) =>
    controller.getMigration(req.params.id),
  );
  app.post(
    "/v1/migrations/:id/cancel",
    { schema: { params: MigrationParams, response: { 200: CancelView } }, config: { openapi: { summary: "Best-effort cancel; answers when the migration has ended, with what really happened (cancelled, completed, failed, already-done)" } } },
    (req) => controller.cancelMigration(req.params.id),
  );
  migrationLiveRoutes(app, deps);
}
