// Hot-plug and hot-unplug of a NIC's VF side. Unplug waits for the guest to
// release the device (DEVICE_DELETED) with a deadline: a guest that never
// lets go (no OS, stuck driver) ends in FERRY_ERR_UNPLUG_TIMEOUT, not a hang.
import { FerryError, isFerryError } from "../core/errors.ts";
import type { NicSpec, PrimaryDevice } from "../model/vm.ts";
import type { QmpClient } from "../qmp/client.ts";
import { QmpCommandError } from "../qmp/client.ts";
import { deviceAdd, deviceDel, netdevAdd, netdevDel } from "../qmp/commands.ts";
import { deviceIds, primaryDeviceProps } from "./argv.ts";

export interface UnplugOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

/** device_del and wait for DEVICE_DELETED of that id. Resolves with the time it took (ms). */
export async function unplugDevice(qmp: QmpClient, id: string, o: UnplugOptions): Promise<number> {
  const started = performance.now();
  const deleted = qmp.waitEvent({ event: "DEVICE_DELETED", data: { device: id } }, { timeoutMs: o.timeoutMs, signal: o.signal, what: `unplug of ${id}` });
  // keep a rejection that happens before we await it from being reported as unhandled
  deleted.catch(() => undefined);
  try {
    await deviceDel(qmp, id, { signal: o.signal, timeoutMs: o.timeoutMs });
  } catch (e) {
    // a second device_del on a pending unplug says so (ACPI hotplug); keep waiting for the first
    if (!(e instanceof QmpCommandError && /in the process of unplug/i.test(e.message))) throw e;
  }
  try {
    await deleted;
  } catch (e) {
    if (isFerryError(e, "FERRY_ERR_TIMEOUT")) {
      throw new FerryError("FERRY_ERR_UNPLUG_TIMEOUT", `guest did not release ${id} within ${o.timeoutMs} ms (no DEVICE_DELETED); the device stays attached`, {
        cause: e,
        details: { device: id, timeoutMs: o.timeoutMs },
      });
    }
    throw e;
  }
  return performance.now() - started;
}

/** Unplug a NIC's primary (VF) and drop its host-side netdev (stand-ins). */
export async function unplugPrimary(qmp: QmpClient, nic: NicSpec, o: UnplugOptions): Promise<number> {
  const ids = deviceIds(nic.name);
  const ms = await unplugDevice(qmp, ids.primary, o);
  if (nic.primary?.kind === "stand-in" && nic.primary.backend.kind !== "none") {
    await netdevDel(qmp, ids.primaryNetdev, { signal: o.signal }).catch(() => undefined);
  }
  return ms;
}

/** Plug a NIC's primary (VF): the netdev for a stand-in, then the device on its fixed guest root port. */
export async function plugPrimary(qmp: QmpClient, nic: NicSpec, primary: PrimaryDevice, o: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<void> {
  const ids = deviceIds(nic.name);
  if (primary.kind === "stand-in" && primary.backend.kind === "tap") {
    await netdevAdd(qmp, { type: "tap", id: ids.primaryNetdev, ifname: primary.backend.ifname, script: "no", downscript: "no" }, o);
  }
  try {
    await deviceAdd(qmp, primaryDeviceProps(nic, primary), o);
  } catch (e) {
    if (primary.kind === "stand-in" && primary.backend.kind === "tap") await netdevDel(qmp, ids.primaryNetdev).catch(() => undefined);
    throw e;
  }
}
