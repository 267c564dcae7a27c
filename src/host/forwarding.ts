// Forwarding-path helpers for DESIGN P10, called by the migration code at QMP
// events (UNPLUG_PRIMARY, STOP, primary back on the destination). On a real
// PF: clear the VF's MAC filter. On the lab bridge: pin/drop the guest MAC's
// forwarding entry and switch learning/flooding per port. Each is one
// iproute2 command built by a pure builder in iproute.ts.
import { FerryError } from "../core/errors.ts";
import type { Runner } from "../core/run.ts";
import type { Cmd, FdbEntry, NsOpt } from "./iproute.ts";
import {
  bridgeFdbDel,
  bridgeFdbReplace,
  bridgeFdbShow,
  bridgeLinkSet,
  bridgeLinkShow,
  ipLinkClearVfMac,
  parseBridgeFdb,
  parseBridgePort,
} from "./iproute.ts";

export interface NetCtx {
  run: Runner;
  /** The namespace holding the bridge (lab), or the current one. */
  netns?: string | null;
  /** Per-command deadline; default 5 s. */
  timeoutMs?: number;
}

async function exec(ctx: NetCtx, c: Cmd, signal: AbortSignal, allowFailure = false): Promise<{ code: number; stdout: string; stderr: string }> {
  return ctx.run(c.file, c.args, { signal, timeoutMs: ctx.timeoutMs ?? 5000, allowFailure });
}

const ns = (ctx: NetCtx): NsOpt => ({ netns: ctx.netns ?? null });

/** Real PF: `ip link set dev PF vf N mac 00:00:00:00:00:00`, so the PF stops steering the guest MAC to the VF. */
export async function clearVfMacFilter(ctx: NetCtx, pf: string, vfIndex: number, signal: AbortSignal): Promise<void> {
  await exec(ctx, ipLinkClearVfMac(pf, vfIndex, ns(ctx)), signal);
}

/** Lab bridge: `bridge fdb replace MAC dev PORT master static` (pin the MAC to the port). */
export async function pinMac(ctx: NetCtx, mac: string, port: string, signal: AbortSignal): Promise<void> {
  await exec(ctx, bridgeFdbReplace(mac, port, ns(ctx)), signal);
}

/** Lab bridge: `bridge fdb del MAC dev PORT master`. Idempotent: an absent entry is not an error. Returns whether one was removed. */
export async function dropMac(ctx: NetCtx, mac: string, port: string, signal: AbortSignal): Promise<boolean> {
  const c = bridgeFdbDel(mac, port, ns(ctx));
  const r = await exec(ctx, c, signal, true);
  if (r.code === 0) return true;
  if (/No such file or directory/i.test(r.stderr)) return false;
  throw new FerryError("FERRY_ERR_COMMAND", `${c.file} ${c.args.join(" ")}: exit ${r.code}: ${r.stderr.trim().slice(0, 500)}`, {
    details: { file: c.file, args: c.args, exitCode: r.code, stderr: r.stderr.slice(0, 2000) },
  });
}

/** Lab bridge: `bridge link set dev PORT learning on|off flood on|off`. */
export async function setPortForwarding(ctx: NetCtx, port: string, flags: { learning?: boolean; flood?: boolean }, signal: AbortSignal): Promise<void> {
  await exec(ctx, bridgeLinkSet(port, flags, ns(ctx)), signal);
}

/** Read a port's learning/flood flags (checks, the agent's API). */
export async function portForwarding(ctx: NetCtx, port: string, signal: AbortSignal): Promise<{ learning: boolean; flood: boolean }> {
  return parseBridgePort((await exec(ctx, bridgeLinkShow(port, ns(ctx)), signal)).stdout);
}

/** The bridge's forwarding entries for a MAC (checks, the agent's API). */
export async function fdbEntries(ctx: NetCtx, mac: string, signal: AbortSignal, bridge?: string): Promise<FdbEntry[]> {
  const o = bridge === undefined ? ns(ctx) : { ...ns(ctx), bridge };
  return parseBridgeFdb((await exec(ctx, bridgeFdbShow(o), signal)).stdout).filter((e) => e.mac === mac.toLowerCase());
}
