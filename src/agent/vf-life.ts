// The VF lifecycle (host/vf-setup.ts) on the agent's lease paths (issue 17).
// A real VF is acquired (unbound from its host driver, bound to vfio-pci,
// MAC/VLAN/spoofchk/trust set through its PF) after it is leased and before
// QEMU sees it; it is released (MAC reset, VLAN 0, flags back, its host driver
// back when configured) before its lease goes, on every path that ends a
// lease. A lease handed to another holder (finish, local migration,
// migrate-back) keeps the VF as it is.
//
// Invariant: a VF with a journal entry (vfio-bind / vf-setup records in the
// state file) is leased, except after a crash or a failed reset; sweep()
// (agent start and every tick) releases those. Order on release: the VF is
// reset first, then its lease removed, so another holder can never lease a
// VF whose reset is still under way.
//
// Stand-in VFs (config standIns) have no device: nothing here touches them,
// their MAC stays QEMU's emulated NIC's (vfLifecycleFeatures returns no feature).
import type { Logger } from "../core/log.ts";
import { FerryError, toFerryError } from "../core/errors.ts";
import type { HostConfig, UsableVf } from "../host/config.ts";
import { VF_SETUP_NS } from "../host/features.ts";
import type { HolderMatch, LeaseHolder, LeaseStore, RecordStore } from "../host/leases.ts";
import type { NicSpec } from "../model/vm.ts";
import type { VfLifecycleSpec, VfSeam } from "../host/vf-setup.ts";
import { acquireVf, releaseVf, VFIO_BIND_NS } from "../host/vf-setup.ts";

/** A VF a guest is about to get, with the MAC its NIC has. */
export interface VfWant {
  vf: string;
  mac: string;
}

export interface VfLife {
  /**
   * Acquire each VF in order (stand-ins: nothing). On a failure the VF that
   * failed is undone by acquireVf itself and those acquired before it are
   * released in reverse order; then FERRY_ERR_FEATURE is thrown.
   */
  acquire(want: readonly VfWant[], signal: AbortSignal): Promise<void>;
  /** Release each VF, last first; never throws: what could not be undone is logged and left journaled (sweep retries). */
  release(vfs: readonly string[]): Promise<void>;
  /** Release every journaled VF no lease holds (a crash between steps, a failed reset); returns them. */
  sweep(): Promise<string[]>;
}

export interface VfLifeDeps {
  config: HostConfig;
  seam: VfSeam;
  records: RecordStore;
  leases: LeaseStore;
  vfs: ReadonlyMap<string, UsableVf>;
  log: Logger;
}

const RELEASE_MS = 30_000;

export function vfLife(d: VfLifeDeps): VfLife {
  const deps = { seam: d.seam, records: d.records, sysfsRoot: d.config.sysfsRoot };

  const specOf = (vf: UsableVf, mac: string): VfLifecycleSpec => {
    const net = d.config.networks.find((n) => n.name === vf.network);
    const uplink = d.config.uplinks.find((u) => u.pf === vf.pf || u.pf === vf.pfIfname);
    const settings: VfLifecycleSpec["settings"] = { mac };
    if (vf.vlan !== null) settings.vlan = vf.vlan;
    if (typeof net?.spoofchk === "boolean") settings.spoofchk = net.spoofchk;
    if (typeof net?.trust === "boolean") settings.trust = net.trust;
    if (vf.standIn === null && vf.pfIfname === null) {
      throw new FerryError("FERRY_ERR_FEATURE", `VF ${vf.bdf}: its PF ${vf.pf} has no host netdev, through which its MAC and VLAN are set: bind the PF to its network driver ('ferry host check')`, { details: { vf: vf.bdf, pf: vf.pf } });
    }
    return {
      vf: vf.bdf, pf: vf.pfIfname ?? "", vfIndex: vf.vfIndex, standIn: vf.standIn !== null, settings,
      release: uplink?.onRelease ?? {},
    };
  };

  /** For a release the MAC is not used (the journal says what to undo): any valid one. */
  const RELEASE_PLACEHOLDER_MAC = "02:00:00:00:00:00";

  const releaseOne = async (bdf: string): Promise<void> => {
    const vf = d.vfs.get(bdf);
    if (vf === undefined) {
      if (d.records.get(VFIO_BIND_NS, bdf) !== undefined || d.records.get(VF_SETUP_NS, bdf) !== undefined) {
        d.log.warn({ vf: bdf }, "a VF journaled as given to a guest is no longer in this host's config: left as it is (reset it by hand: ip link set dev <PF> vf <N> mac 00:00:00:00:00:00 vlan 0)");
      }
      return;
    }
    if (vf.standIn !== null) return;
    let failures;
    try {
      failures = await releaseVf(deps, specOf(vf, RELEASE_PLACEHOLDER_MAC), AbortSignal.timeout(RELEASE_MS));
    } catch (e) {
      failures = [{ feature: `vf:${bdf}`, error: toFerryError(e) }];
    }
    for (const f of failures) d.log.error({ vf: bdf, feature: f.feature, code: f.error.code, err: f.error.message }, "could not reset a released VF: it stays journaled and is tried again at the next tick");
  };

  const release = async (vfs: readonly string[]): Promise<void> => {
    for (const bdf of [...vfs].reverse()) await releaseOne(bdf);
  };

  return {
    async acquire(want, signal) {
      const done: string[] = [];
      for (const w of want) {
        const vf = d.vfs.get(w.vf);
        if (vf === undefined || vf.standIn !== null) continue;
        try {
          await acquireVf(deps, specOf(vf, w.mac), signal);
        } catch (e) {
          await release(done);
          throw e;
        }
        done.push(w.vf);
      }
    },
    release,
    async sweep() {
      const leased = new Set(d.leases.list().map((l) => l.vf));
      const journaled = new Set([...d.records.list(VFIO_BIND_NS), ...d.records.list(VF_SETUP_NS)].map((r) => r.key));
      const stale = [...journaled].filter((b) => !leased.has(b) && d.vfs.has(b)).sort();
      for (const bdf of stale) {
        d.log.warn({ vf: bdf }, "a VF is set up for a guest but no lease holds it (a crash or a failed reset): resetting it");
        await releaseOne(bdf);
      }
      return stale;
    },
  };
}

/** The VFs the NICs of `nics` get, by NIC name (`planned`: NIC name → VF or null), with each NIC's MAC. */
export function wantedVfs(nics: readonly NicSpec[], planned: Readonly<Record<string, string | null>>): VfWant[] {
  return nics.flatMap((n) => {
    const vf = planned[n.name] ?? null;
    return vf === null ? [] : [{ vf, mac: n.mac }];
  });
}

/** Release what `m` holds: its VFs reset first (last leased first), then its leases; returns the VFs. */
export async function releaseHeld(life: VfLife, leases: LeaseStore, m: HolderMatch): Promise<string[]> {
  await life.release(leases.heldBy(m).map((l) => l.vf));
  return leases.releaseHeldBy(m);
}

/** Release `vfs` leased to `holder` (a failed start, prepare or restore): VFs reset last first, then the leases. */
export async function releaseLeased(life: VfLife, leases: LeaseStore, vfs: readonly string[], holder: LeaseHolder): Promise<void> {
  await life.release(vfs);
  for (const vf of vfs) leases.release(vf, holder);
}
