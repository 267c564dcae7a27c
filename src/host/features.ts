// Device features (DESIGN P7): plug-ins with an idempotent init and deinit,
// run in Prepare and undone on any failure. Whatever a deinit needs to undo
// an init (a VF's previous settings) is persisted in the state DB first, so a
// restarted agent can still deinit.
import type { Runner } from "../core/run.ts";
import { FerryError, toFerryError } from "../core/errors.ts";
import * as v from "../model/validate.ts";
import type { Cmd, NsOpt, PortVlan, VfChange, VfSettings } from "./iproute.ts";
import {
  bridgeVlanAdd,
  bridgeVlanDel,
  bridgeVlanShow,
  ipLinkSetVf,
  ipLinkSetVlanFiltering,
  ipLinkShow,
  parseBridgeVlans,
  parseLinkMaster,
  parseVfInfo,
  parseVlanFiltering,
} from "./iproute.ts";
import type { RecordStore } from "./leases.ts";

export interface Feature {
  readonly name: string;
  /** Idempotent: a second init after success changes nothing. */
  init(signal: AbortSignal): Promise<void>;
  /** Idempotent: deinit without (or after) init succeeds and changes nothing. */
  deinit(signal: AbortSignal): Promise<void>;
}

export interface FeatureFailure {
  feature: string;
  error: FerryError;
}

/**
 * Run inits in order. On a failure, run the deinits of the features already
 * initialised and of the failing one (its init may have partly applied) in
 * reverse order, best effort, then throw FERRY_ERR_FEATURE naming the failing
 * feature, with the init error as cause and any rollback failures in details.
 */
export async function applyFeatures(list: readonly Feature[], signal: AbortSignal): Promise<void> {
  for (const [i, f] of list.entries()) {
    try {
      signal.throwIfAborted();
      await f.init(signal);
    } catch (e) {
      const cause = toFerryError(e);
      // Rollback must run even when `signal` is what aborted the init.
      const rollback = await removeFeatures(list.slice(0, i + 1), AbortSignal.timeout(30_000));
      throw new FerryError("FERRY_ERR_FEATURE", `feature ${f.name}: init failed: ${cause.message}`, {
        cause,
        details: { feature: f.name, rolledBack: list.slice(0, i + 1).map((x) => x.name).reverse(), rollbackFailures: rollback.map((r) => ({ feature: r.feature, code: r.error.code, message: r.error.message })) },
      });
    }
  }
}

/** Run deinits in reverse order, continuing past errors; returns the failures (empty = all undone). */
export async function removeFeatures(list: readonly Feature[], signal: AbortSignal): Promise<FeatureFailure[]> {
  const failures: FeatureFailure[] = [];
  for (const f of [...list].reverse()) {
    try {
      await f.deinit(signal);
    } catch (e) {
      failures.push({ feature: f.name, error: toFerryError(e, "FERRY_ERR_FEATURE") });
    }
  }
  return failures;
}

export interface FeatureDeps {
  run: Runner;
  records: RecordStore;
}

async function exec(run: Runner, c: Cmd, signal: AbortSignal): Promise<string> {
  return (await run(c.file, c.args, { signal, timeoutMs: 10_000 })).stdout;
}

function isVfSettings(x: unknown): x is VfSettings {
  if (typeof x !== "object" || x === null) return false;
  const o = x as Record<string, unknown>;
  return typeof o["mac"] === "string" && typeof o["vlan"] === "number" && (o["spoofchk"] === undefined || typeof o["spoofchk"] === "boolean") && (o["trust"] === undefined || typeof o["trust"] === "boolean");
}

// ---- VF setup (real SR-IOV hardware) ----

export const VF_SETUP_NS = "vf-setup";

export interface VfSetupSpec {
  /** The VF's PCI address (the record key). */
  vf: string;
  /** The PF's netdev name and the VF's index on it. */
  pf: string;
  vfIndex: number;
  settings: { mac: string; vlan?: number; qos?: number; spoofchk?: boolean; trust?: boolean };
  /**
   * Deinit resets the VF to this MAC with VLAN 0 instead of restoring its
   * previous MAC and VLAN (a VF handed back must not keep a guest's MAC:
   * sriov-cni #88). Spoof check and trust are still restored.
   */
  reset?: { mac: string };
}

/**
 * MAC, VLAN, spoof check and trust on a real VF via
 * `ip link set dev PF vf N …`. The VF's previous settings are read from
 * `ip -json -d link show dev PF` and saved (in the state DB) before the
 * first change; deinit restores them. MAC and VLAN are always set and
 * restored; spoof check and trust only when the spec sets them.
 */
export function vfSetupFeature(deps: FeatureDeps, spec: VfSetupSpec): Feature {
  const vf = v.pciAddress("vf", spec.vf);
  const wanted: VfSettings = { mac: v.mac("settings.mac", spec.settings.mac), vlan: spec.settings.vlan ?? 0 };
  if (spec.settings.qos !== undefined) wanted.qos = spec.settings.qos;
  if (spec.settings.spoofchk !== undefined) wanted.spoofchk = spec.settings.spoofchk;
  if (spec.settings.trust !== undefined) wanted.trust = spec.settings.trust;
  const setCmd = ipLinkSetVf(spec.pf, spec.vfIndex, wanted); // validates pf, index, vlan now
  const zero = "00:00:00:00:00:00";
  const reset = spec.reset === undefined ? null : spec.reset.mac.toLowerCase() === zero ? zero : v.mac("reset.mac", spec.reset.mac);
  return {
    name: `vf-setup:${vf}`,
    async init(signal) {
      if (deps.records.get(VF_SETUP_NS, vf) === undefined) {
        const current = parseVfInfo(await exec(deps.run, ipLinkShow(spec.pf), signal), spec.vfIndex);
        // Save only what init changes: restoring a setting the driver cannot set (trust on ixgbevf) would fail.
        const previous: VfSettings = { mac: current.mac, vlan: current.vlan };
        if (current.qos !== undefined) previous.qos = current.qos;
        if (wanted.spoofchk !== undefined && current.spoofchk !== undefined) previous.spoofchk = current.spoofchk;
        if (wanted.trust !== undefined && current.trust !== undefined) previous.trust = current.trust;
        deps.records.putIfAbsent(VF_SETUP_NS, vf, { pf: spec.pf, vfIndex: spec.vfIndex, previous });
      }
      await exec(deps.run, setCmd, signal);
    },
    async deinit(signal) {
      const saved = deps.records.get(VF_SETUP_NS, vf);
      if (saved === undefined) return;
      const s = saved as Record<string, unknown>;
      if (typeof s["pf"] !== "string" || typeof s["vfIndex"] !== "number" || !isVfSettings(s["previous"])) {
        throw new FerryError("FERRY_ERR_FEATURE", `vf-setup:${vf}: saved previous settings are malformed`, { details: { vf } });
      }
      const pf = s["pf"];
      const index = s["vfIndex"];
      const prev = s["previous"];
      // MAC and VLAN first (they must come back); then each flag on its own, so a
      // flag the driver refuses (and so never changed) does not block the rest.
      const core: VfChange = reset === null ? { mac: prev.mac, vlan: prev.vlan } : { mac: reset, vlan: 0 };
      if (prev.qos !== undefined && reset === null) core.qos = prev.qos;
      await exec(deps.run, ipLinkSetVf(pf, index, core), signal);
      for (const key of ["spoofchk", "trust"] as const) {
        const want = prev[key];
        if (want === undefined) continue;
        try {
          await exec(deps.run, ipLinkSetVf(pf, index, { [key]: want }), signal);
        } catch (e) {
          const now = parseVfInfo(await exec(deps.run, ipLinkShow(pf), signal), index);
          if (now[key] !== want) throw e;
        }
      }
      deps.records.delete(VF_SETUP_NS, vf);
    },
  };
}

// ---- Stand-in VF setup (lab: an emulated NIC on a Linux bridge) ----

export const STAND_IN_NS = "stand-in-setup";
export const STAND_IN_NOTE =
  "stand-in VF: the MAC is given to QEMU's emulated NIC; spoof check and trust have no equivalent on a Linux bridge port and are recorded, not applied";

export interface StandInSetupSpec {
  vf: string;
  /** The stand-in's tap, already a port of the network's bridge. */
  tap: string;
  netns?: string | null;
  settings: { mac: string; vlan?: number; spoofchk?: boolean; trust?: boolean };
}

export interface StandInRecord {
  tap: string;
  settings: StandInSetupSpec["settings"];
  note: string;
  /** The port's VLANs before init, when init changed them. */
  previousVlans: PortVlan[] | null;
}

function isPortVlans(x: unknown): x is PortVlan[] {
  return Array.isArray(x) && x.every((p) => typeof p === "object" && p !== null && typeof (p as Record<string, unknown>)["vid"] === "number");
}

/** What the stand-in setup recorded for a VF (for the agent's API), or null. */
export function readStandInSetup(records: RecordStore, vf: string): StandInRecord | null {
  const r = records.get(STAND_IN_NS, vf);
  if (typeof r !== "object" || r === null) return null;
  const o = r as Record<string, unknown>;
  if (typeof o["tap"] !== "string" || typeof o["note"] !== "string" || typeof o["settings"] !== "object" || o["settings"] === null) return null;
  return {
    tap: o["tap"],
    settings: o["settings"] as StandInSetupSpec["settings"],
    note: o["note"],
    previousVlans: isPortVlans(o["previousVlans"]) ? o["previousVlans"] : null,
  };
}

/**
 * The part of VF setup that has a meaning on a Linux bridge: the VLAN, as an
 * access port (`bridge vlan add dev TAP vid V pvid untagged`, other VLANs of
 * the port removed; the bridge's VLAN filtering turned on). MAC, spoof check
 * and trust are recorded with a note. Deinit restores the port's VLANs.
 */
export function standInSetupFeature(deps: FeatureDeps, spec: StandInSetupSpec): Feature {
  const vf = v.pciAddress("vf", spec.vf);
  const tap = v.ifname("tap", spec.tap);
  const ns: NsOpt = { netns: spec.netns ?? null };
  const settings = { ...spec.settings, mac: v.mac("settings.mac", spec.settings.mac) };
  const vid = settings.vlan === undefined || settings.vlan === 0 ? null : v.int("settings.vlan", settings.vlan, 1, 4094);

  return {
    name: `stand-in-setup:${vf}`,
    async init(signal) {
      const existing = readStandInSetup(deps.records, vf);
      let previousVlans = existing?.previousVlans ?? null;
      if (vid !== null && previousVlans === null) {
        const bridge = parseLinkMaster(await exec(deps.run, ipLinkShow(tap, ns), signal));
        if (bridge === null) throw new FerryError("FERRY_ERR_FEATURE", `${tap} is not a bridge port`, { details: { tap } });
        if (!parseVlanFiltering(await exec(deps.run, ipLinkShow(bridge, ns), signal))) {
          try {
            await exec(deps.run, ipLinkSetVlanFiltering(bridge, true, ns), signal);
          } catch (e) {
            const why = /not supported/i.test(e instanceof Error ? e.message : "") ? " (this kernel's bridge has no VLAN filtering: CONFIG_BRIDGE_VLAN_FILTERING)" : "";
            throw new FerryError("FERRY_ERR_FEATURE", `cannot turn on VLAN filtering on bridge ${bridge}${why}`, { cause: e, details: { bridge } });
          }
        }
        previousVlans = parseBridgeVlans(await exec(deps.run, bridgeVlanShow(tap, ns), signal), tap);
      }
      const record: StandInRecord = { tap, settings, note: STAND_IN_NOTE, previousVlans };
      deps.records.put(STAND_IN_NS, vf, record);
      if (vid === null) return;
      await exec(deps.run, bridgeVlanAdd(tap, vid, { pvid: true, untagged: true }, ns), signal);
      const now = parseBridgeVlans(await exec(deps.run, bridgeVlanShow(tap, ns), signal), tap);
      for (const x of now) if (x.vid !== vid) await exec(deps.run, bridgeVlanDel(tap, x.vid, ns), signal);
    },
    async deinit(signal) {
      const rec = readStandInSetup(deps.records, vf);
      if (rec === null) return;
      if (rec.previousVlans !== null) {
        const now = parseBridgeVlans(await exec(deps.run, bridgeVlanShow(rec.tap, ns), signal), rec.tap);
        const prev = new Set(rec.previousVlans.map((x) => x.vid));
        for (const x of now) if (!prev.has(x.vid)) await exec(deps.run, bridgeVlanDel(rec.tap, x.vid, ns), signal);
        for (const p of rec.previousVlans) await exec(deps.run, bridgeVlanAdd(rec.tap, p.vid, { pvid: p.pvid, untagged: p.untagged }, ns), signal);
      }
      deps.records.delete(STAND_IN_NS, vf);
    },
  };
}

// ---- Port profile (802.1Qbg/Qbh) via an operator-supplied executable ----

export interface PortProfileSpec {
  /** Absolute path of the executable (config `portProfileExec`). */
  exe: string;
  profile: string;
  mac: string;
  vf: string;
  timeoutMs?: number;
}

/** `<exe> associate|disassociate <profile> <mac> <vf-bdf>`; a non-zero exit fails with its stderr. */
export function portProfileArgv(spec: PortProfileSpec, op: "associate" | "disassociate"): { file: string; args: string[] } {
  const profile = v.str("profile", spec.profile);
  if (!/^[A-Za-z0-9_.:@+=-]{1,128}$/.test(profile) || profile.startsWith("-")) {
    throw new FerryError("FERRY_ERR_INVALID", `profile: must be 1-128 of letters, digits and _.:@+=- not starting with '-' (got ${JSON.stringify(profile)})`);
  }
  return { file: v.absPath("exe", spec.exe), args: [op, profile, v.mac("mac", spec.mac), v.pciAddress("vf", spec.vf)] };
}

export function portProfileFeature(deps: { run: Runner }, spec: PortProfileSpec): Feature {
  const assoc = portProfileArgv(spec, "associate");
  const disassoc = portProfileArgv(spec, "disassociate");
  const go = async (c: { file: string; args: string[] }, signal: AbortSignal): Promise<void> => {
    const r = await deps.run(c.file, c.args, { signal, timeoutMs: spec.timeoutMs ?? 30_000, allowFailure: true });
    if (r.code !== 0) {
      throw new FerryError("FERRY_ERR_FEATURE", `port profile ${c.args[0]} ${spec.profile} for ${spec.vf}: exit ${r.code}${r.stderr.trim() ? `: ${r.stderr.trim().slice(0, 500)}` : ""}`, {
        details: { exe: c.file, args: c.args, exitCode: r.code, stderr: r.stderr.slice(0, 2000) },
      });
    }
  };
  return {
    name: `port-profile:${spec.profile}:${spec.vf}`,
    init: (signal) => go(assoc, signal),
    deinit: (signal) => go(disassoc, signal),
  };
}
