// The NICs of a guest as it leaves and arrives: VFs leased for an arriving
// guest (arrivingNics), ephemeral primaries unplugged before a guest leaves
// and re-plugged where they are missing, and, once the guest runs on its new
// instance, every NIC brought back with P10 steering (bringBackNics).
import { withSignal } from "../../core/deadline.ts";
import { FerryError, isFerryError } from "../../core/errors.ts";
import type { UsableVf } from "../../host/config.ts";
import type { LeaseHolder } from "../../host/leases.ts";
import type { NetBackend, NicSpec, PrimaryDevice, VmSpec } from "../../model/vm.ts";
import { deviceIds } from "../../qemu/argv.ts";
import { plugPrimary, unplugPrimary } from "../../qemu/hotplug.ts";
import type { Instance } from "../../qemu/instance.ts";
import { listDeviceIds } from "../../qmp/commands.ts";
import { msOfUs } from "../../migration/timeline.ts";
import type { DestinationMoments, PrimaryMoments } from "../../migration/timeline.ts";
import type { StepContext } from "./context.ts";
import { vfOf } from "./context.ts";
import { attachTap, steer, withTaps } from "./wiring.ts";
import type { ArrivedNic } from "../../wire/steps.ts";


/** The primary device for a VF on this host: vfio-pci on real hardware, an emulated NIC for a stand-in. */
function primaryFor(vf: UsableVf, backend: NetBackend): PrimaryDevice {
  return vf.standIn ? { kind: "stand-in", model: vf.standIn.model, backend, vf: vf.bdf } : { kind: "vfio", host: vf.bdf };
}

/**
 * The NICs of a guest arriving on this host (an incoming migration, a
 * restore): each NIC's VF from `want` (none for emulated NICs) leased to
 * `holder` and pushed on `leased` (the caller releases them if it fails
 * later), specs without backends yet (withTaps wires both halves). Ephemeral
 * primaries are left out: they are re-plugged once the guest runs.
 */
export function arrivingNics(ctx: StepContext, source: readonly NicSpec[], want: readonly { name: string; vf: string | null }[], holder: LeaseHolder, leased: string[]): { nics: NicSpec[]; planned: Record<string, string | null> } {
  const planned: Record<string, string | null> = {};
  const nics: NicSpec[] = [];
  for (const nic of source) {
    const vfBdf = nic.mode === "emulated" ? null : (want.find((n) => n.name === nic.name)?.vf ?? null);
    planned[nic.name] = vfBdf;
    const vf = vfBdf === null ? undefined : vfOf(ctx, vfBdf);
    if (vf) {
      ctx.leases.lease(vf.bdf, holder);
      leased.push(vf.bdf);
    }
    // the standby's uplink is derived from the VF's network (P6)
    const out: NicSpec = { name: nic.name, mode: nic.mode, mac: nic.mac, guestPorts: nic.guestPorts };
    const network = vf?.network ?? nic.network;
    if (network !== undefined) out.network = network;
    if (nic.standby) out.standby = { kind: "none" };
    if (vf && nic.mode === "failover") out.primary = primaryFor(vf, { kind: "none" });
    nics.push(out);
  }
  return { nics, planned };
}

/** Unplug the instance's ephemeral primaries (Ferry's deadline), skipping `done`; calls `onUnplugged` after each. */
export async function unplugEphemerals(ctx: StepContext, inst: Instance, done: readonly string[], unplugMs: number, signal: AbortSignal, onUnplugged: (nic: string) => void): Promise<void> {
  for (const nic of inst.meta.spec.nics) {
    if (nic.mode !== "ephemeral" || !nic.primary || done.includes(nic.name)) continue;
    if (!(await listDeviceIds(inst.qmp, { signal })).includes(deviceIds(nic.name).primary)) continue;
    await unplugPrimary(inst.qmp, nic, { timeoutMs: unplugMs, signal });
    onUnplugged(nic.name);
  }
}

/**
 * Re-plug the primaries of NICs `names` (ephemeral NICs unplugged before a
 * migration or save) that the instance lacks now; `onPlugged` runs after each.
 */
export async function replugMissing(inst: Instance, names: readonly string[], signal: AbortSignal, onPlugged?: (nic: NicSpec) => Promise<void>): Promise<void> {
  for (const name of names) {
    const nic = inst.meta.spec.nics.find((n) => n.name === name);
    if (nic?.primary && !(await listDeviceIds(inst.qmp, { signal })).includes(deviceIds(name).primary)) {
      await plugPrimary(inst.qmp, nic, nic.primary, { signal });
      await onPlugged?.(nic);
    }
  }
}

/** Steers started at an incoming instance's RESUME; finish waits for them before it steers anything itself. */
const resumeSteers = new WeakMap<Instance, Promise<void>>();
/**
 * Per failover NIC of an incoming instance, what the RESUME watcher
 * (steerBackPrimaries) found: its primary back and steered to, or undefined
 * when it was not back within the watcher's deadline. Finish awaits these.
 */
const resumePrimaries = new WeakMap<Instance, Map<string, Promise<PrimaryMoments | undefined>>>();

/**
 * P10 on the destination: the moment the incoming guest runs (QMP RESUME),
 * its frames go to this host's standby halves — not one controller round
 * trip later, when finish is called (raw QEMU failover's best case is its
 * announce reaching a learning bridge right away; this matches it).
 * `onSteered` gets the RESUME's moment (QEMU's timestamp) and, if anything
 * was steered, when the last steer ended: after the steers (nothing delays
 * them), before finish's wait for them ends. With `primaryBackMs`, the
 * failover primaries QEMU plugs back are steered to as well, as they come
 * (steerBackPrimaries): nothing of the guest's network waits for finish.
 */
export function steerOnResume(ctx: StepContext, inst: Instance, spec: VmSpec, onSteered?: (m: DestinationMoments) => void, o: { primaryBackMs?: number } = {}): void {
  const off = inst.qmp.onEvent((e) => {
    if (e.event !== "RESUME") return;
    off();
    resumeSteers.set(inst, (async () => {
      let steered = false;
      for (const nic of spec.nics) steered = (await steer(ctx, nic, "standby", AbortSignal.timeout(5_000)).catch(() => false)) || steered;
      const steeredAt = ctx.clock.now();
      try {
        onSteered?.({ resumedAtMs: msOfUs(e.timestampUs), ...(steered ? { steeredAtMs: steeredAt } : {}) });
      } catch (err) {
        ctx.log?.warn({ instanceId: inst.id, err: String(err) }, "recording the incoming guest's RESUME failed");
      }
      if (o.primaryBackMs !== undefined) steerBackPrimaries(ctx, inst, spec, o.primaryBackMs);
    })());
  });
}

/**
 * After RESUME, on the destination's own (the controller may be away, and
 * finish comes a round trip later at best): each failover primary QEMU plugs
 * back within `withinMs` gets the NIC's frames as soon as it is there. The
 * guest's net_failover moves to the primary at once; frames still steered to
 * the standby go unanswered — the fault matrix saw the real guest's NIC silent
 * for as long as the controller was away after the switch-over (3.1 s short,
 * 9.1 s under load) although its pause was 0.3 s.
 */
function steerBackPrimaries(ctx: StepContext, inst: Instance, spec: VmSpec, withinMs: number): void {
  const nics = spec.nics.filter((n) => n.mode === "failover" && n.primary !== undefined);
  const found = new Map<string, (m: PrimaryMoments | undefined) => void>();
  resumePrimaries.set(inst, new Map(nics.map((n) => [n.name, new Promise<PrimaryMoments | undefined>((resolve) => found.set(n.name, resolve))])));
  void (async () => {
    const started = ctx.clock.monotonic();
    let left = nics;
    try {
      while (left.length > 0 && !inst.qmp.closed && ctx.clock.monotonic() - started < withinMs) {
        const ids = await listDeviceIds(inst.qmp, { signal: ctx.clock.timeout(2_000) }).catch(() => null);
        const back = left.filter((n) => ids?.includes(deviceIds(n.name).primary) === true);
        for (const nic of back) {
          const backAtMs = ctx.clock.now();
          const steered = await steer(ctx, nic, "primary", ctx.clock.timeout(5_000)).catch(() => false);
          found.get(nic.name)!({ nic: nic.name, backAtMs, ...(steered ? { steeredAtMs: ctx.clock.now() } : {}) });
        }
        left = left.filter((n) => !back.includes(n));
        // every 50 ms while a guest's re-plug is due (the first seconds), then every 250 ms until the deadline
        if (left.length > 0) await ctx.clock.sleep(ctx.clock.monotonic() - started < 2_000 ? 50 : 250);
      }
    } finally {
      // not back in time (or the instance's monitor closed): finish waits for these itself
      for (const nic of left) found.get(nic.name)!(undefined);
    }
  })();
}

/**
 * Wait (polling QMP every 50 ms, until `deadlineAt`) for the failover primary
 * QEMU plugs back once the guest runs, then steer the NIC to it; where no
 * RESUME watcher ran (an older controller, a local migration, a restore) or
 * it gave up before the primary was back.
 */
async function primaryBack(ctx: StepContext, inst: Instance, nic: NicSpec, o: { deadlineAt: number; withinMs: number }, signal: AbortSignal): Promise<PrimaryMoments> {
  for (;;) {
    if ((await listDeviceIds(inst.qmp, { signal })).includes(deviceIds(nic.name).primary)) break;
    if (ctx.clock.monotonic() > o.deadlineAt) throw new FerryError("FERRY_ERR_TIMEOUT", `failover primary of ${nic.name} not back within ${o.withinMs} ms`);
    await ctx.clock.sleep(50, signal);
  }
  const backAtMs = ctx.clock.now();
  const steered = await steer(ctx, nic, "primary", signal);
  return { nic: nic.name, backAtMs, ...(steered ? { steeredAtMs: ctx.clock.now() } : {}) };
}

/**
 * After the switch-over, on the instance that now runs the guest: steer to
 * the standbys, re-plug ephemeral NICs on their VFs, wait for failover
 * primaries (deadline), steer to each primary once it is back. NICs that do
 * not come back are reported, not thrown: the policy decides.
 */
export async function bringBackNics(ctx: StepContext, inst: Instance, spec: VmSpec, planned: Readonly<Record<string, string | null>>, o: { primaryBackMs: number; replugFails: boolean; onPrimary?: (m: PrimaryMoments) => void }, signal: AbortSignal): Promise<ArrivedNic[]> {
  await resumeSteers.get(inst);
  const watched = resumePrimaries.get(inst);
  // steered to the standby at RESUME, and to the primary by the watcher once it is back: not steered back here
  for (const nic of spec.nics) if (watched?.has(nic.name) !== true) await steer(ctx, nic, "standby", signal).catch(() => false);
  const out: ArrivedNic[] = [];
  const deadlineAt = ctx.clock.monotonic() + o.primaryBackMs;
  for (const nic of spec.nics) {
    const vf = planned[nic.name] ?? null;
    if (nic.mode === "emulated" || vf === null) {
      out.push({ name: nic.name, vf: null, attached: false });
      continue;
    }
    try {
      if (o.replugFails) throw new FerryError("FERRY_ERR_REPLUG", `re-plug of ${nic.name} failed (lab fault switch replug-fail)`);
      if (nic.mode === "ephemeral") {
        const usable = vfOf(ctx, vf);
        const wired = withTaps(ctx, inst.id, { ...spec, nics: [{ ...nic, network: usable.network, primary: primaryFor(usable, { kind: "none" }) }] }).spec.nics[0]!;
        const primary = wired.primary!;
        await plugPrimary(inst.qmp, nic, primary, { signal });
        nic.primary = primary;
        nic.network = usable.network;
        if (primary.kind === "stand-in") await attachTap(ctx, nic, primary.backend, signal);
      } else {
        // failover: QEMU re-plugs the primary itself once the guest runs: the RESUME watcher's finding, else wait here
        const w = watched?.get(nic.name);
        let m = w === undefined ? undefined : await withSignal(w, signal, `finish: waiting for the failover primary of ${nic.name}`);
        if (m === undefined) {
          // the watcher gave up (or none ran): the standby carries the NIC meanwhile
          if (w !== undefined) await steer(ctx, nic, "standby", signal).catch(() => false);
          m = await primaryBack(ctx, inst, nic, { deadlineAt, withinMs: o.primaryBackMs }, signal);
        } else if (m.steeredAtMs === undefined && (await steer(ctx, nic, "primary", signal))) {
          m = { ...m, steeredAtMs: ctx.clock.now() };
        }
        o.onPrimary?.(m);
        out.push({ name: nic.name, vf, attached: true });
        continue;
      }
      await steer(ctx, nic, "primary", signal);
      out.push({ name: nic.name, vf, attached: true });
    } catch (e) {
      out.push({ name: nic.name, vf, attached: false, error: isFerryError(e) ? `${e.code}: ${e.message}` : String(e) });
    }
  }
  return out;
}
