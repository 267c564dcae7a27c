// QEMU instances on this host: list, describe, start from a VmSpec, stop.
import { Type } from "typebox";
import { FerryError, isFerryError } from "../../core/errors.ts";
import { InstanceId, InstanceList, InstanceView, StartInstanceBody, Stopped } from "../../wire/agent-api.ts";
import { DirtyRateBody, DirtyRateReply, LocalMigrateBody, MigrationLimits, MigrationLimitsBody, RestoreBody, SaveBody } from "../../wire/instance-ops.ts";
import type { MigrationProgress } from "../../wire/instance-ops.ts";
import { localMigrate } from "../migration/local.ts";
import { queryMigrate, queryMigrationLimits, setMigrationParameters } from "../../qmp/commands.ts";
import { restoreInstance, savedSpec, saveInstance } from "../migration/save.ts";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { AgentAppDeps } from "./deps.ts";
import type { FerryFastify } from "../../core/http/type-provider.ts";

const IdParams = Type.Object({ id: InstanceId });

/** QEMU statuses in which an outgoing migration streams RAM (or waits to: pre-switchover still takes a downtime limit for the last pass). */
const STREAMING: readonly string[] = ["setup", "active", "wait-unplug", "device", "pre-switchover"];

/** parseVmSpec names fields relative to the spec; the API names them relative to the body. */
function specField(e: unknown): unknown {
  if (!isFerryError(e, "FERRY_ERR_INVALID")) return e;
  const field = e.details["field"];
  if (typeof field !== "string" || field.startsWith("spec")) return e;
  return new FerryError("FERRY_ERR_INVALID", `spec.${e.message}`, { cause: e, details: { ...e.details, field: `spec.${field}` } });
}

export function instanceRoutes(app: FerryFastify, { agent }: AgentAppDeps): void {
  app.get("/v1/instances", { schema: { response: { 200: InstanceList } }, config: { openapi: { summary: "Instances on this host (QMP status and PCI devices), and those found gone" } } }, () =>
    agent.listInstances(),
  );

  app.get("/v1/instances/:id", { schema: { params: IdParams, response: { 200: InstanceView } }, config: { openapi: { summary: "One instance" } } }, (req) =>
    agent.describeInstance(req.params.id),
  );

  app.post(
    "/v1/instances",
    { schema: { body: StartInstanceBody, response: { 201: InstanceView } }, config: { openapi: { summary: "Start an instance of a VmSpec on this host; its NICs' VFs are leased to it first" } } },
    async (req, reply) => {
      const view = await agent.startInstance(req.body.spec, { incoming: req.body.incoming ?? false }).catch((e: unknown) => {
        throw specField(e);
      });
      return reply.code(201).send(view);
    },
  );

  app.post(
    "/v1/instances/:id/stop",
    { schema: { params: IdParams, response: { 200: Stopped } }, config: { openapi: { summary: "Stop an instance (QMP quit, then SIGKILL) and release its VFs" } } },
    (req) => agent.stopInstance(req.params.id),
  );

  app.post(
    "/v1/instances/:id/local-migrate",
    {
      schema: {
        params: IdParams,
        body: LocalMigrateBody,
      },
      config: { openapi: { summary: "Local migration (QEMU upgrade in place): move the VM to a new instance on this host, RAM shared, VF leases moved" } },
    },
    async (req) => {
      const b = req.body;
      const input = {
        instanceId: req.params.id,
        unplugMs: b.unplugMs ?? 15_000,
        timeoutMs: b.timeoutMs ?? 120_000,
        primaryBackMs: b.primaryBackMs ?? 30_000,
        ...(b.qemuBinary === undefined ? {} : { qemuBinary: await agent.allowedQemuBinary("qemuBinary", b.qemuBinary) }),
      };
      return localMigrate(agent.stepContext(), input, AbortSignal.timeout(input.unplugMs + input.timeoutMs + input.primaryBackMs + 30_000));
    },
  );

  const saveFile = (name: string): string => join(agent.config.saveDir, name);

  app.post(
    "/v1/instances/:id/save",
    {
      schema: { params: IdParams, body: SaveBody },
      config: { openapi: { summary: "Save the VM's state to <saveDir>/<name>: ephemeral VFs unplugged first, the instance stopped, its VFs released" } },
    },
    (req) => {
      const unplugMs = req.body.unplugMs ?? 15_000;
      const timeoutMs = req.body.timeoutMs ?? 300_000;
      return saveInstance(agent.stepContext(), req.params.id, saveFile(req.body.name), { unplugMs, timeoutMs }, AbortSignal.timeout(unplugMs + timeoutMs + 30_000));
    },
  );

  app.post(
    "/v1/instances/restore",
    {
      schema: {
        body: RestoreBody,
      },
      config: { openapi: { summary: "Restore a saved VM on this host, its NICs on the VFs given (chosen anew by the scheduler)" } },
    },
    async (req) => {
      const file = saveFile(req.body.name);
      let saved: unknown;
      try {
        saved = (JSON.parse(await readFile(`${file}.json`, "utf8")) as { spec?: unknown }).spec;
      } catch (e) {
        throw new FerryError("FERRY_ERR_NOT_FOUND", `no saved VM ${req.body.name} in ${agent.config.saveDir} on ${agent.config.name}: save it first, or restore on a host that shares that saveDir`, { cause: e });
      }
      const primaryBackMs = req.body.primaryBackMs ?? 30_000;
      const timeoutMs = req.body.timeoutMs ?? 300_000;
      const spec = await agent.admitSpec(savedSpec(saved));
      return agent.oneCopy(spec.uuid, spec.name, () => restoreInstance(agent.stepContext(), file, spec, req.body.nics, { primaryBackMs, timeoutMs }, AbortSignal.timeout(primaryBackMs + timeoutMs + 30_000)));
    },
  );

  app.get(
    "/v1/instances/:id/migration",
    { schema: { params: IdParams }, config: { openapi: { summary: "The instance's migration progress as QEMU reports it (status, RAM transferred/remaining, dirty rate)" } } },
    async (req): Promise<MigrationProgress> => {
      const info = await queryMigrate(agent.getInstance(req.params.id).qmp, { timeoutMs: 2_000 });
      return {
        status: info.status, transferredBytes: info.ram?.transferred ?? 0, remainingBytes: info.ram?.remaining ?? 0, totalBytes: info.ram?.total ?? 0, dirtyPagesRate: info.ram?.dirtyPagesRate ?? 0, mbps: info.ram?.mbps ?? 0,
        ...(info.expectedDowntimeMs === undefined ? {} : { expectedDowntimeMs: info.expectedDowntimeMs }),
        ...(info.ram ? { iterations: info.ram.dirtySyncCount } : {}),
      };
    },
  );

  app.post(
    "/v1/instances/:id/dirty-rate",
    { schema: { params: IdParams, body: DirtyRateBody, response: { 200: DirtyRateReply } }, config: { openapi: { summary: "Measure the guest's dirty rate now (QEMU calc-dirty-rate, page sampling, 1 s by default), with the migration bandwidth cap and downtime limit the instance holds: what a migration plan predicts from" } } },
    (req) => agent.dirtyRate(req.params.id, req.body.seconds ?? 1, AbortSignal.timeout(20_000)),
  );

  app.post(
    "/v1/instances/:id/migration/parameters",
    { schema: { params: IdParams, body: MigrationLimitsBody, response: { 200: MigrationLimits } }, config: { openapi: { summary: "Change the outgoing migration's bandwidth cap or downtime limit while it streams (migrate-set-parameters); answers what QEMU holds then" } } },
    async (req) => {
      const inst = agent.getInstance(req.params.id);
      const qmp = inst.qmp;
      const o = { timeoutMs: 2_000 };
      const { status } = await queryMigrate(qmp, o);
      // before `migrate` the perform step sets its own parameters (they would overwrite these); after, nothing streams
      if (!STREAMING.includes(status)) throw new FerryError("FERRY_ERR_STATE", `instance ${req.params.id} has no migration streaming RAM (QEMU status ${status}): parameters apply while RAM streams; try again then (a migration in phase perform, 'ferry migration watch ID')`, { details: { status } });
      inst.limitsSetLive = true;
      await setMigrationParameters(qmp, { maxBandwidth: req.body.maxBandwidthBytes, downtimeLimit: req.body.downtimeLimitMs }, o);
      const now = await queryMigrationLimits(qmp, o);
      return { status, maxBandwidthBytes: now.maxBandwidth, downtimeLimitMs: now.downtimeLimit };
    },
  );
}
