// Lab wiring of NIC backends, and the forwarding path of DESIGN P10.
//
// On a host whose network has a bridge (the lab), every NIC half gets a tap
// named after its instance and NIC. QEMU creates the tap (non-persistent: it
// disappears with the QEMU process, even after SIGKILL); the agent then
// attaches it to the network's bridge with learning off, so the guest MAC's
// forwarding entry moves only when Ferry moves it: pinned to the port that is
// live at each moment of a migration (primary, or standby while the primary
// is away), not left to a stale learned entry (FINDINGS: 0.9–3 s outages).
//
// A network configured `forwarding: unmanaged` (host.yaml; `ferry lab up
// --forwarding unmanaged`) is raw QEMU failover, the baseline of the
// connectivity benchmark: taps join the bridge with learning and flooding on
// (Linux's defaults) and nothing is ever pinned; the bridge follows whatever
// frames the guest and QEMU's self-announcements send.
import { rm } from "node:fs/promises";
import { dirname } from "node:path";
import { setPortForwarding, pinMac } from "../../host/forwarding.ts";
import type { NetCtx } from "../../host/forwarding.ts";
import type { NetBackend, NicSpec, VmSpec } from "../../model/vm.ts";
import { ramFilePath } from "../../qemu/instance.ts";
import type { InstanceMeta } from "../../qemu/instance.ts";
import type { StepContext } from "./context.ts";
import { tapName } from "./context.ts";

/** The network of a NIC: as given, else its VF's network on this host. */
export function nicNetwork(ctx: StepContext, nic: NicSpec): string | undefined {
  if (nic.network !== undefined) return nic.network;
  const vf = nic.primary?.kind === "stand-in" ? nic.primary.vf : nic.primary?.kind === "vfio" ? nic.primary.host : undefined;
  return vf === undefined ? undefined : ctx.vfs().find((v) => v.bdf === vf)?.network;
}

function tapIfBridged(ctx: StepContext, nic: NicSpec, instanceId: string, half: "s" | "p", current: NetBackend): NetBackend {
  if (current.kind !== "none") return current;
  const network = nicNetwork(ctx, nic);
  const place = network === undefined ? undefined : ctx.network(network);
  return place?.bridge ? { kind: "tap", ifname: tapName(instanceId, nic.name, half) } : current;
}

/** The spec with tap backends for every NIC half whose network has a bridge; and the namespace QEMU must run in. */
export function withTaps(ctx: StepContext, instanceId: string, spec: VmSpec): { spec: VmSpec; netns: string | undefined } {
  let netns: string | undefined;
  const nics = spec.nics.map((nic): NicSpec => {
    const out: NicSpec = { ...nic };
    if (nic.standby) out.standby = tapIfBridged(ctx, nic, instanceId, "s", nic.standby);
    if (nic.primary?.kind === "stand-in") out.primary = { ...nic.primary, backend: tapIfBridged(ctx, nic, instanceId, "p", nic.primary.backend) };
    const network = nicNetwork(ctx, nic);
    const ns = network === undefined ? null : ctx.network(network)?.netns;
    if (ns) netns = ns;
    return out;
  });
  return { spec: { ...spec, nics }, netns };
}

function netCtx(ctx: StepContext, nic: NicSpec): NetCtx & { bridge: string | null; managed: boolean } {
  const network = nicNetwork(ctx, nic);
  const place = network === undefined ? undefined : ctx.network(network);
  return { run: ctx.run, netns: place?.netns ?? null, bridge: place?.bridge ?? null, managed: place?.forwarding !== "unmanaged" };
}

/** Attach a tap QEMU created to its network's bridge, up; learning off (managed) or on (unmanaged). */
export async function attachTap(ctx: StepContext, nic: NicSpec, backend: NetBackend | undefined, signal: AbortSignal): Promise<void> {
  if (backend?.kind !== "tap") return;
  const n = netCtx(ctx, nic);
  if (!n.bridge) return;
  const ns = n.netns ? ["-n", n.netns] : [];
  await ctx.run("ip", [...ns, "link", "set", "dev", backend.ifname, "master", n.bridge, "up"], { signal, timeoutMs: 5_000 });
  await setPortForwarding(n, backend.ifname, n.managed ? { learning: false } : { learning: true, flood: true }, signal);
}

/** Attach every tap of an instance's spec (after QEMU opened them). */
export async function attachTaps(ctx: StepContext, spec: VmSpec, signal: AbortSignal): Promise<void> {
  for (const nic of spec.nics) {
    await attachTap(ctx, nic, nic.standby, signal);
    if (nic.primary?.kind === "stand-in") await attachTap(ctx, nic, nic.primary.backend, signal);
  }
}

/** P10: steer the guest MAC's frames to this half of the NIC (its tap), now. No-op without a lab bridge or when unmanaged. */
export async function steer(ctx: StepContext, nic: NicSpec, half: "standby" | "primary", signal: AbortSignal): Promise<boolean> {
  const backend = half === "standby" ? nic.standby : nic.primary?.kind === "stand-in" ? nic.primary.backend : undefined;
  if (backend?.kind !== "tap") return false;
  const n = netCtx(ctx, nic);
  if (!n.bridge || !n.managed) return false;
  await pinMac(n, nic.mac, backend.ifname, signal);
  return true;
}

/** Where a freshly started instance's frames go: the primary when the NIC has one, else the standby. */
export async function steerInitial(ctx: StepContext, spec: VmSpec, signal: AbortSignal): Promise<void> {
  for (const nic of spec.nics) await steer(ctx, nic, nic.primary ? "primary" : "standby", signal);
}

/**
 * The RAM file a new instance of a VM with shared memory creates on this
 * host: its own (the VM and instance ids in the name, under the agent's
 * memoryDir), never a file of another instance — from elsewhere (another
 * host, a save file) or from an earlier visit of the VM to this host.
 */
export function newRamFile(ctx: StepContext, spec: VmSpec, instanceId: string): { ram?: { file: string; create: true } } {
  return spec.sharedMemory === true ? { ram: { file: ramFilePath(ctx.memoryDir, spec.uuid, instanceId), create: true } } : {};
}

/** Files an older agent named /dev/shm/ferry-<host>-<uuid> (its instances may still run after an upgrade). */
const LEGACY_RAM_FILE = /^\/dev\/shm\/ferry-[A-Za-z0-9_.-]+-[0-9a-f-]{36}$/;

/**
 * Remove a gone instance's RAM file unless another instance on this host
 * still maps it (a local migration's other half). Only files the agent made.
 */
export async function releaseRamFile(ctx: StepContext, gone: Pick<InstanceMeta, "instanceId" | "ramFile">): Promise<void> {
  const file = gone.ramFile;
  if (file === undefined) return;
  if (dirname(file) !== ctx.memoryDir && !LEGACY_RAM_FILE.test(file)) return;
  if (ctx.instances.all().some((i) => i.id !== gone.instanceId && i.meta.ramFile === file)) return;
  await rm(file, { force: true });
}
