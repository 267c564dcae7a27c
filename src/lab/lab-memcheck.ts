// The memory check of a lab VM (issue 14): find the VM's running instance
// through the controller and its agent, then ask the guest for the checksum of
// the region it filled at boot (src/lab/memcheck.ts). A VM keeps its boot
// checksum from the instance it booted in (a migrated instance's serial.log
// has no boot line), so callers read it once, right after creation.
import { readFile } from "node:fs/promises";
import { FerryError } from "../core/errors.ts";
import { AgentClient } from "../wire/agent-client.ts";
import type { ControllerClient } from "../api/client.ts";
import { bootMemsum, guestMemsum } from "./memcheck.ts";
import { hostPath, labFetch } from "./lab.ts";
import type { LabState } from "./lab.ts";

/**
 * The serial log of a VM's current instance, as a path this process can
 * read: `mapPath` (default the lab's hostPath) maps a path in the host's own
 * view (an apart host's mount namespace) to one readable here.
 */
export async function vmSerialLog(state: LabState, client: ControllerClient, vm: string, mapPath: (host: string, p: string) => string = (h, p) => hostPath(state, h, p)): Promise<string> {
  const v = await client.vm(vm);
  if (v.instanceId === null) throw new FerryError("FERRY_ERR_STATE", `VM ${vm} runs nowhere (state ${v.state}): nothing to check; start it ('ferry vm start ${vm}')`);
  const agent = state.hosts.find((h) => h.name === v.host);
  if (!agent) throw new FerryError("FERRY_ERR_NOT_FOUND", `VM ${vm} runs on ${v.host}, which is not a host of lab ${state.name}`);
  const token = (await readFile(state.agentTokenFile, "utf8")).trim();
  const inst = await new AgentClient({ baseUrl: agent.url, token, fetch: await labFetch(state), timeoutMs: 5_000 }).instance(v.instanceId);
  return mapPath(v.host, inst.serialLog);
}

/** The checksum the guest printed at boot (read once, right after `createVm`; waits up to `timeoutMs` for the line). */
export async function vmBootMemsum(state: LabState, client: ControllerClient, vm: string, timeoutMs = 60_000): Promise<string> {
  return bootMemsum(await vmSerialLog(state, client, vm), { timeoutMs });
}

/** The checksum of the guest's boot region now, asked on its console. */
export async function vmMemsum(state: LabState, client: ControllerClient, vm: string, timeoutMs = 30_000): Promise<string> {
  return guestMemsum({ serialLog: await vmSerialLog(state, client, vm) }, { timeoutMs });
}
