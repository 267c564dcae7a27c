// VMs: create (MACs, guest ports, addresses and VFs chosen by the controller,
// started on the host's agent), start, stop, delete.
import { Type } from "typebox";
import { ruled } from "../../core/http/schema.ts";
import { Name, SaveName } from "../../wire/agent-api.ts";
import { CreatedVm, CreateVmBody, Deleted, VmList, VmParams, VmPolicyBody, VmView } from "../../wire/controller-api.ts";
import type { ControllerAppDeps, ControllerFastify } from "../deps.ts";

export function vmRoutes(app: ControllerFastify, { controller }: ControllerAppDeps): void {
  app.get("/v1/vms", { schema: { response: { 200: VmList } }, config: { openapi: { summary: "Every VM: where it runs, its NICs and their VFs" } } }, async () => ({
    vms: await controller.listVms(),
  }));
  app.get("/v1/vms/:name", { schema: { params: VmParams, response: { 200: VmView } }, config: { openapi: { summary: "One VM (by name or uuid)" } } }, (req) =>
    controller.getVm(req.params.name),
  );
  app.post(
    "/v1/vms",
    { schema: { body: CreateVmBody, response: { 201: CreatedVm } }, config: { openapi: { summary: "Create a VM on a host and start it (a free VF of each NIC's network is picked there); a NIC on a network no host has is refused; warnings say what runs without a VF" } } },
    async (req, reply) => {
      const b = req.body;
      const { vm, warnings } = await controller.createVm({ name: b.name, host: b.host, memoryMiB: b.memoryMiB, nics: b.nics, ...(b.vcpus === undefined ? {} : { vcpus: b.vcpus }), ...(b.noOs === undefined ? {} : { noOs: b.noOs }), ...(b.guestFillMiB === undefined ? {} : { guestFillMiB: b.guestFillMiB }), ...(b.guestDirtyMiBps === undefined ? {} : { guestDirtyMiBps: b.guestDirtyMiBps }), ...(b.sharedMemory === true ? { sharedMemory: true } : {}), ...(b.convergence === undefined ? {} : { convergence: b.convergence }) });
      return reply.code(201).send({ ...vm, warnings });
    },
  );
  app.post("/v1/vms/:name/start", { schema: { params: VmParams, response: { 200: VmView } }, config: { openapi: { summary: "Start a stopped VM on its host" } } }, (req) =>
    controller.startVm(req.params.name),
  );
  app.post("/v1/vms/:name/stop", { schema: { params: VmParams, response: { 200: VmView } }, config: { openapi: { summary: "Stop a VM (its VFs are released)" } } }, (req) =>
    controller.stopVm(req.params.name),
  );
  app.patch(
    "/v1/vms/:name",
    { schema: { params: VmParams, body: VmPolicyBody, response: { 200: VmView } }, config: { openapi: { summary: "Change a VM's migration policy (its convergence; null: the default, auto); refused while a migration or another operation on it runs" } } },
    (req) => controller.setVmPolicy(req.params.name, { convergence: req.body.convergence }),
  );
  app.delete("/v1/vms/:name", { schema: { params: VmParams, response: { 200: Deleted } }, config: { openapi: { summary: "Stop and forget a VM" } } }, (req) =>
    controller.deleteVm(req.params.name),
  );
  app.post(
    "/v1/vms/:name/local-migrate",
    { schema: { params: VmParams, body: Type.Object({ qemuBinary: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, ...ruled("^(?!.*/\\.\\.(/|$))/[^\\u0000-\\u001f\\u007f]*$", "an absolute path with no '..' and no control characters: a QEMU binary the VM's host allows (its qemuBinaries)") })) }, { additionalProperties: false }) }, config: { openapi: { summary: "Local migration: a new QEMU instance on the same host (optionally another QEMU binary), RAM shared, VFs kept" } } },
    (req) => controller.localMigrate(req.params.name, req.body.qemuBinary === undefined ? {} : { qemuBinary: req.body.qemuBinary }),
  );
  app.post(
    "/v1/vms/:name/save",
    { schema: { params: VmParams, body: Type.Object({ file: SaveName }, { additionalProperties: false }), response: { 200: VmView } }, config: { openapi: { summary: "Save a VM's state to a file in its host's saveDir; its VFs are released" } } },
    (req) => controller.saveVm(req.params.name, req.body.file),
  );
  app.post(
    "/v1/vms/:name/restore",
    { schema: { params: VmParams, body: Type.Object({ host: Type.Optional(Name) }, { additionalProperties: false }), response: { 200: VmView } }, config: { openapi: { summary: "Restore a saved VM (on another host if given) with VFs chosen anew" } } },
    (req) => controller.restoreVm(req.params.name, req.body.host === undefined ? {} : { host: req.body.host }),
  );
}
