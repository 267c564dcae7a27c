// An instance as the agent's API shows it (InstanceView).
import { toFerryError } from "../core/errors.ts";
import type { Instance } from "../qemu/instance.ts";
import { listDeviceIds, queryStatus } from "../qmp/commands.ts";
import type { InstanceViewT } from "../wire/agent-api.ts";
import type { AgentState } from "./state.ts";
import { instanceHolder } from "./state.ts";

const QMP_QUERY_TIMEOUT_MS = 2_000;

/** An instance as the API shows it: its leases, NICs and, from QMP, its state and devices. */
export async function viewInstance(s: AgentState, inst: Instance): Promise<InstanceViewT> {
  const m = inst.meta;
  const holder = instanceHolder(inst);
  const base = {
    instanceId: m.instanceId, vmUuid: m.vmUuid, vmName: m.vmName, pid: m.pid, startedAt: m.startedAt, accel: m.accel,
    netns: m.netns ?? null, incoming: m.incoming, serialLog: inst.paths.serialLog,
    vfs: s.leases.heldBy(holder).map((l) => l.vf),
    ...(inst.guestPanickedAt === undefined ? {} : { guestPanickedAt: inst.guestPanickedAt }),
  };
  const nics = m.spec.nics.map((n) => {
    const vf = n.primary === undefined ? null : n.primary.kind === "vfio" ? n.primary.host : n.primary.vf;
    return { name: n.name, vf: vf !== null && base.vfs.includes(vf) ? vf : null };
  });
  try {
    const status = await queryStatus(inst.qmp, { timeoutMs: QMP_QUERY_TIMEOUT_MS });
    const devices = await listDeviceIds(inst.qmp, { timeoutMs: QMP_QUERY_TIMEOUT_MS });
    return { ...base, nics, state: status.status, running: status.running, devices };
  } catch (e) {
    const alive = await inst.alive();
    return { ...base, nics, state: alive ? "unreachable" : "gone", running: false, devices: [], error: toFerryError(e).message };
  }
}
