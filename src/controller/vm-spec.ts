// Turning a VM record into what an agent starts: MACs, guest ports and guest
// addresses chosen once at creation, and the VmSpec for the host the VM is on
// now. Pure functions (the caller supplies randomness and the guest image).
import { createHash } from "node:crypto";
import { FerryError } from "../core/errors.ts";
import { didYouMean } from "../core/suggest.ts";
import { dirtyRamMiB, GUEST_RAM_DISK_RESERVE_MIB, guestCmdline, guestRamDiskRoom } from "../model/guest.ts";
import type { NicMode, NicPolicy, NicSpec, PrimaryDevice, StandInModel, VmSpec } from "../model/vm.ts";
import { MAX_GUEST_PORT, STAND_IN_MODELS } from "../model/vm.ts";
import type { VmNicRecord, VmRecord } from "../store/cluster.ts";

export interface NicRequest {
  network: string;
  mode: NicMode;
  policy: NicPolicy;
}

/** A locally administered unicast MAC 52:54:00:xx:xx:xx not in `taken`, from `random` (3 bytes each call). */
export function newMac(taken: ReadonlySet<string>, random: () => Buffer): string {
  for (let i = 0; i < 1000; i++) {
    const b = random();
    const mac = `52:54:00:${[...b.subarray(0, 3)].map((x) => x.toString(16).padStart(2, "0")).join(":")}`;
    if (!taken.has(mac)) return mac;
  }
  throw new FerryError("FERRY_ERR_INTERNAL", "could not find an unused MAC address");
}

/** The guest subnet of a network: 10.n.m.0/24, the same for every VM on it. */
export function networkSubnet(network: string): { n: number; m: number } {
  const h = createHash("sha256").update(network).digest();
  return { n: 100 + (h[0]! % 100), m: h[1]! };
}

/** The VM's address on a network: its host part derives from the VM's creation order. */
export function guestAddress(network: string, seq: number): string {
  const { n, m } = networkSubnet(network);
  return `10.${n}.${m}.${10 + ((seq - 1) % 240)}/24`;
}

/**
 * Guest root ports, in NIC order, never reused within the VM: failover takes
 * standby + primary, ephemeral a primary, emulated a standby.
 */
export function assignGuestPorts(modes: readonly NicMode[]): VmNicRecord["guestPorts"][] {
  let next = 1;
  const take = (): number => {
    if (next > MAX_GUEST_PORT) throw new FerryError("FERRY_ERR_INVALID", `too many NICs: at most ${MAX_GUEST_PORT} guest ports`);
    return next++;
  };
  return modes.map((m) => (m === "failover" ? { standby: take(), primary: take() } : m === "ephemeral" ? { primary: take() } : { standby: take() }));
}

/** What the host says about the VF a NIC holds. */
export interface VfFacts {
  /** The stand-in model, or null for a real VF (vfio). */
  standIn: string | null;
}

function standInModel(model: string): StandInModel {
  const m = STAND_IN_MODELS.find((x) => x === model);
  if (!m) throw new FerryError("FERRY_ERR_AGENT", `the agent reports an unknown stand-in model ${JSON.stringify(model)}`);
  return m;
}

/**
 * The VF side of a NIC on its host. The one place that decides how a primary
 * is wired (the lab replaces the stand-in backend with its taps).
 */
export function primaryDevice(vf: string, facts: VfFacts): PrimaryDevice {
  return facts.standIn === null ? { kind: "vfio", host: vf } : { kind: "stand-in", model: standInModel(facts.standIn), backend: { kind: "none" }, vf };
}

/**
 * A lab/test guest's RAM fill (the guest's ferry.fill, for benchmarks): the
 * guest writes it to its RAM disk, which holds at most half of its RAM, and
 * needs some of the rest itself; a no-OS VM has no guest to fill anything.
 */
export function checkGuestFill(o: { memoryMiB: number; guestFillMiB?: number; guestDirtyMiBps?: number; noOs?: boolean }): void {
  const dirty = o.guestDirtyMiBps ?? 0;
  if (dirty > 0) {
    if (o.noOs === true) throw new FerryError("FERRY_ERR_INVALID", "guestDirtyMiBps needs the test guest: drop noOs or the dirty rate");
    const room = guestRamDiskRoom(o.memoryMiB) - (o.guestFillMiB ?? 0);
    const need = dirtyRamMiB(dirty);
    if (room < need) {
      throw new FerryError("FERRY_ERR_INVALID", `guestDirtyMiBps ${dirty} needs ${need} MiB of the guest's RAM disk (half its RAM minus ${GUEST_RAM_DISK_RESERVE_MIB} MiB${o.guestFillMiB === undefined ? "" : `, minus the ${o.guestFillMiB} MiB fill`}); a ${o.memoryMiB} MiB guest has ${Math.max(room, 0)}: give the VM more memory or fill less`, { details: { memoryMiB: o.memoryMiB, guestDirtyMiBps: dirty } });
    }
  }
  const fill = o.guestFillMiB;
  if (fill === undefined) return;
  if (o.noOs === true) throw new FerryError("FERRY_ERR_INVALID", "guestFillMiB needs the test guest: drop noOs or the fill");
  const max = guestRamDiskRoom(o.memoryMiB);
  if (!Number.isInteger(fill) || fill < 1 || fill > max) {
    throw new FerryError("FERRY_ERR_INVALID", `guestFillMiB ${fill}: must be a whole number from 1 to ${Math.max(max, 0)} for a ${o.memoryMiB} MiB guest (at most half its RAM minus ${GUEST_RAM_DISK_RESERVE_MIB} MiB); give the VM more memory or fill less`, { details: { guestFillMiB: fill, memoryMiB: o.memoryMiB, max } });
  }
}

/** The VmSpec of a VM record on its current host (NIC VFs as recorded). */
export function buildVmSpec(vm: VmRecord, image: { kernel: string; initrd: string }, vfFacts: (vf: string) => VfFacts): VmSpec {
  const nics: NicSpec[] = vm.nics.map((n) => {
    const spec: NicSpec = { name: n.name, mode: n.mode, mac: n.mac, network: n.network, guestPorts: { ...n.guestPorts } };
    if (n.mode !== "ephemeral") spec.standby = { kind: "none" };
    if (n.mode !== "emulated" && n.vf !== null) spec.primary = primaryDevice(n.vf, vfFacts(n.vf));
    return spec;
  });
  const spec: VmSpec = {
    uuid: vm.uuid,
    name: vm.name,
    memoryMiB: vm.memoryMiB,
    vcpus: vm.vcpus,
    kernel: image.kernel,
    initrd: image.initrd,
    cmdline: guestCmdline(vm.name, vm.nics.map((n) => ({ mac: n.mac, cidr: n.address })), { ...(vm.guestFillMiB === undefined ? {} : { fillMiB: vm.guestFillMiB }), ...(vm.guestDirtyMiBps === undefined ? {} : { dirtyMiBps: vm.guestDirtyMiBps }) }),
    nics,
  };
  if (vm.noOs) spec.noOs = true;
  // Guest RAM in a shared file only when asked for (`sharedMemory`): it makes a local migration (QEMU
  // upgrade in place) copy no RAM. Not the default: a copying migration of it is slower under TCG.
  // (the agent picks the file: an API body names no path)
  else if (vm.sharedMemory === true) spec.sharedMemory = true;
  // QEMU < 9.0 under TCG loses guest writes migrating RAM of whole MiB (anonymous or file-backed) unless it is
  // trimmed (ramTrimKiB, set at creation: docs/known-issues.md); both ends of a migration size it alike
  if (vm.ramTrimKiB !== undefined) spec.ramTrimKiB = vm.ramTrimKiB;
  return spec;
}

/**
 * Refuse NICs on a network no live host has, whatever their policy: a typo
 * must not create a VM on a made-up network (with an address from a made-up
 * subnet). `networks`: each network of the live hosts → the hosts with it.
 */
export function checkNicNetworks(nics: readonly { network: string }[], networks: ReadonlyMap<string, readonly string[]>): void {
  const known = [...networks.keys()].sort();
  for (const [i, n] of nics.entries()) {
    if (networks.has(n.network)) continue;
    const has = known.length === 0 ? "no live host reports any network" : `the cluster's networks: ${known.join(", ")}`;
    throw new FerryError("FERRY_ERR_INVALID", `nics[${i}].network: no host has a network named ${JSON.stringify(n.network)}${didYouMean(n.network, known)}; ${has}. Give a NIC one of those networks (nothing was created)`, {
      details: { field: `nics[${i}].network`, value: n.network, networks: known },
    });
  }
}

/** What `vm create` says about an optional NIC that got no VF: it runs without one. */
export function noVfWarning(nic: { name: string; network: string; mode: NicMode }, host: string, elsewhere: readonly string[]): string {
  const how = nic.mode === "failover" ? "it runs on its virtio standby only (no passthrough)" : "the guest has no such NIC";
  const where = elsewhere.length > 0 ? ` (hosts with ${nic.network}: ${elsewhere.join(", ")})` : "";
  return `${nic.name} (${nic.network}, ${nic.mode}, optional): no free VF of ${nic.network} on ${host}: ${how} until a 'ferry vm start' or a migration finds one${where}`;
}
