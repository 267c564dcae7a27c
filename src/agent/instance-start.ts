// Starting an instance on this host from an API request (a new VM, or the
// incoming side of a migration the controller drives through the API).
import { rmdir } from "node:fs/promises";
import { dirname } from "node:path";
import { invalid } from "../core/errors.ts";
import type { UsableVf } from "../host/config.ts";
import type { LeaseHolder } from "../host/leases.ts";
import type { VmSpec } from "../model/vm.ts";
import { instancePaths, removeInstanceDir } from "../qemu/instance.ts";
import type { Instance } from "../qemu/instance.ts";
import type { StepContext } from "./migration/context.ts";
import { launchInstance } from "./migration/lifecycle.ts";
import { attachTaps, steerInitial, withTaps } from "./migration/wiring.ts";
import type { AgentState } from "./state.ts";
import { releaseLeased } from "./vf-life.ts";

export interface StartOptions {
  incoming?: boolean;
  instanceId?: string;
  signal?: AbortSignal;
}

/** What starting needs of the Agent besides its state. */
export interface StartParts {
  /** The usable VF at `bdf` (Agent.vf). */
  vf(bdf: string, field: string): UsableVf;
  /** The step context; throws once the agent is shutting down (Agent.stepContext). */
  ctx(): StepContext;
  stop(id: string): Promise<unknown>;
}

/** The VF a NIC's primary refers to, if any. */
function primaryVf(spec: VmSpec): { nic: number; bdf: string; kind: "vfio" | "stand-in"; mac: string }[] {
  return spec.nics.flatMap((n, i) =>
    n.primary === undefined ? [] : [{ nic: i, bdf: n.primary.kind === "vfio" ? n.primary.host : n.primary.vf, kind: n.primary.kind, mac: n.mac }],
  );
}

/**
 * Start an instance of `spec` (validated) on this host: its NICs' VFs
 * checked and leased to it first, then set up (real VFs: vfio-pci, MAC,
 * VLAN; vf-life.ts), QEMU started, taps attached and frames steered to it.
 * On failure nothing of it stays (VF settings, leases, runtime dir).
 */
export async function startNew(s: AgentState, d: StartParts, spec: VmSpec, instanceId: string, o: StartOptions): Promise<Instance> {
  const holder: LeaseHolder = { kind: "instance", vmUuid: spec.uuid, instanceId };

  const wanted = primaryVf(spec);
  const netns = new Set<string>();
  const seen = new Set<string>();
  for (const w of wanted) {
    const field = `spec.nics[${w.nic}].primary.${w.kind === "vfio" ? "host" : "vf"}`;
    if (seen.has(w.bdf)) throw invalid(field, w.bdf, "VF used by two NICs");
    seen.add(w.bdf);
    const vf = d.vf(w.bdf, field);
    if (vf.standIn && w.kind === "vfio") throw invalid(field, w.bdf, "is a stand-in VF on this host: use a primary of kind stand-in");
    if (!vf.standIn && w.kind === "stand-in") throw invalid(field, w.bdf, "is a real VF on this host: use a primary of kind vfio");
    const ns = s.config.networks.find((n) => n.name === vf.network)?.netns;
    if (ns) netns.add(ns);
  }
  // lab: every NIC half on a bridged network gets a tap (QEMU creates it; the agent attaches it)
  const wired = withTaps(d.ctx(), instanceId, spec);
  if (wired.netns) netns.add(wired.netns);
  if (netns.size > 1) throw invalid("spec.nics", [...netns], "the NICs' networks live in different network namespaces");

  const leased: string[] = [];
  const undo = (): Promise<void> => releaseLeased(s.ctx().vfLife, s.leases, leased, holder);
  try {
    for (const w of wanted) {
      s.leases.lease(w.bdf, holder);
      leased.push(w.bdf);
    }
    await d.ctx().vfLife.acquire(wanted.map((w) => ({ vf: w.bdf, mac: w.mac })), o.signal ?? AbortSignal.timeout(60_000));
  } catch (e) {
    await undo();
    throw e;
  }
  let inst: Instance;
  try {
    inst = await launchInstance(d.ctx(), { spec: wired.spec, instanceId, incoming: o.incoming ?? false, netns: [...netns][0], signal: o.signal });
  } catch (e) {
    await undo();
    const dir = instancePaths(s.config.runDir, spec.uuid, instanceId).dir;
    await removeInstanceDir(dir);
    await rmdir(dirname(dir)).catch(() => undefined);
    throw e;
  }
  s.instances.set(instanceId, inst);
  try {
    const wiring = AbortSignal.any([AbortSignal.timeout(10_000), ...(o.signal ? [o.signal] : [])]);
    await attachTaps(d.ctx(), wired.spec, wiring);
    await steerInitial(d.ctx(), wired.spec, wiring);
  } catch (e) {
    await d.stop(instanceId).catch(() => undefined);
    throw e;
  }
  s.log.info({ instanceId, vm: spec.name, pid: inst.pid, vfs: leased, netns: [...netns][0] }, "instance started");
  return inst;
}
