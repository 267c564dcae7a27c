// The VM spec: what the qemu layer needs to start an instance. Pure data.
import { invalid } from "../core/errors.ts";
import * as v from "./validate.ts";

export const NIC_MODES = ["failover", "ephemeral", "emulated"] as const;
export type NicMode = (typeof NIC_MODES)[number];
export const NIC_POLICIES = ["mandatory", "requisite", "optional"] as const;
export type NicPolicy = (typeof NIC_POLICIES)[number];

/** Emulated NIC models usable as a stand-in VF (see FINDINGS.md). */
export const STAND_IN_MODELS = ["vmxnet3", "rtl8139", "e1000e", "e1000"] as const;
export type StandInModel = (typeof STAND_IN_MODELS)[number];

/** Where a NIC's host side connects. */
export type NetBackend =
  | { kind: "tap"; ifname: string }
  | { kind: "none" };

/** The VF side of a NIC: real passthrough, or a stand-in (emulated NIC with the VF's MAC). */
export type PrimaryDevice =
  | { kind: "vfio"; host: string }
  | { kind: "stand-in"; model: StandInModel; backend: NetBackend; vf: string };

export interface NicSpec {
  /** Stable NIC name within the VM (net0, net1, ...); device ids derive from it. */
  name: string;
  mode: NicMode;
  mac: string;
  /** The physical network the NIC belongs to (the lab wires its taps to that network's bridge). */
  network?: string;
  /** The virtio-net side (failover standby, or the only device for emulated). */
  standby?: NetBackend;
  /** The VF side (failover primary, ephemeral). Absent when the NIC runs without its VF. */
  primary?: PrimaryDevice;
  /** Guest PCI root-port indexes, fixed for the VM's lifetime. */
  guestPorts: { standby?: number; primary?: number };
}

export interface VmSpec {
  uuid: string;
  name: string;
  memoryMiB: number;
  vcpus: number;
  kernel: string;
  initrd: string;
  cmdline: string;
  nics: NicSpec[];
  /**
   * Map guest RAM from a file with share=on (local migration with
   * x-ignore-shared). The agent picks the file (under its memoryDir, one per
   * instance, owner-only): an API body names no path.
   */
  sharedMemory?: boolean;
  /**
   * KiB the guest's RAM is short of `memoryMiB` (8, or absent: none). Set at
   * creation (or the next start of a VM created without it) for a guest
   * (anonymous or file-backed RAM) on a host that runs
   * QEMU before 9.0 under TCG (tcgDirtySyncExposed): RAM that is not a whole number of 256 KiB
   * makes QEMU sync its dirty bitmap page by page, the path that resets TCG's
   * write-tracking; its 64-page fast path does not, and pages the guest wrote
   * after a sync were not sent again (guest memory corrupted on the
   * destination; fixed in QEMU 9.0, commit 03bfc2188f). Part of the spec so
   * both ends of a migration size RAM alike.
   */
  ramTrimKiB?: number;
  /** Start with no OS (the guest never answers unplug requests): tests and demos. */
  noOs?: boolean;
}

export const MAX_GUEST_PORT = 28;

/** The one RAM trim Ferry sets (ramTrimKiB): QEMU rounds RAM sizes up to 8 KiB, and any size that is not a whole 256 KiB takes the page-by-page dirty sync. */
export const RAM_TRIM_KIB = 8;

/** ramTrimKiB from an untrusted body: 8 (RAM_TRIM_KIB) is the only value. */
export function parseRamTrim(field: string, x: unknown): number {
  if (x !== RAM_TRIM_KIB) throw invalid(field, x, `must be ${RAM_TRIM_KIB} (KiB of RAM short of whole MiB) or absent`);
  return RAM_TRIM_KIB;
}

/** The guest's RAM size as QEMU takes it: "512M", or "524280k" with a trim. */
export function ramSizeArg(spec: Pick<VmSpec, "memoryMiB" | "ramTrimKiB">): string {
  return spec.ramTrimKiB === undefined ? `${spec.memoryMiB}M` : `${spec.memoryMiB * 1024 - spec.ramTrimKiB}k`;
}

/** Refuse keys the parser does not know: a misspelt or retired field must not be dropped silently. */
function onlyKeys(field: string, o: Record<string, unknown>, known: readonly string[], hint: Record<string, string> = {}): void {
  for (const k of Object.keys(o)) {
    if (known.includes(k)) continue;
    const at = field === "" ? k : `${field}.${k}`;
    throw invalid(at, o[k], hint[k] ?? `unknown field (known: ${known.join(", ")})`);
  }
}

/**
 * A NIC half's host side as an API body gives it: always "none". The agent
 * names the taps it creates itself (per instance and NIC) and attaches them
 * to the network's bridge; a body that names an interface is refused.
 */
function backend(field: string, x: unknown): NetBackend {
  const o = v.obj(field, x);
  const kind = v.oneOf(`${field}.kind`, o["kind"], ["tap", "none"] as const);
  if (kind === "tap") throw invalid(`${field}.kind`, kind, `the agent names and creates each NIC's tap itself: give { "kind": "none" }`);
  onlyKeys(field, o, ["kind"]);
  return { kind };
}

function primary(field: string, x: unknown): PrimaryDevice {
  const o = v.obj(field, x);
  const kind = v.oneOf(`${field}.kind`, o["kind"], ["vfio", "stand-in"] as const);
  onlyKeys(field, o, kind === "vfio" ? ["kind", "host"] : ["kind", "model", "backend", "vf"]);
  if (kind === "vfio") return { kind, host: v.pciAddress(`${field}.host`, o["host"]) };
  return {
    kind,
    model: v.oneOf(`${field}.model`, o["model"], STAND_IN_MODELS),
    backend: backend(`${field}.backend`, o["backend"]),
    vf: v.pciAddress(`${field}.vf`, o["vf"]),
  };
}

function port(field: string, x: unknown): number | undefined {
  return x === undefined ? undefined : v.int(field, x, 1, MAX_GUEST_PORT);
}

export function parseNic(field: string, x: unknown): NicSpec {
  const o = v.obj(field, x);
  onlyKeys(field, o, ["name", "mode", "mac", "network", "standby", "primary", "guestPorts"]);
  const mode = v.oneOf(`${field}.mode`, o["mode"], NIC_MODES);
  const ports = o["guestPorts"] === undefined ? {} : v.obj(`${field}.guestPorts`, o["guestPorts"]);
  onlyKeys(`${field}.guestPorts`, ports, ["standby", "primary"]);
  const nic: NicSpec = {
    name: v.name(`${field}.name`, o["name"]),
    mode,
    mac: v.mac(`${field}.mac`, o["mac"]),
    guestPorts: {
      standby: port(`${field}.guestPorts.standby`, ports["standby"]),
      primary: port(`${field}.guestPorts.primary`, ports["primary"]),
    },
  };
  if (o["network"] !== undefined) nic.network = v.name(`${field}.network`, o["network"]);
  if (o["standby"] !== undefined) nic.standby = backend(`${field}.standby`, o["standby"]);
  if (o["primary"] !== undefined) nic.primary = primary(`${field}.primary`, o["primary"]);
  if (mode !== "ephemeral" && nic.standby === undefined) throw invalid(`${field}.standby`, undefined, `a ${mode} NIC needs a standby (virtio) backend`);
  if (mode === "emulated" && nic.primary !== undefined) throw invalid(`${field}.primary`, o["primary"], "an emulated NIC has no VF");
  if (mode !== "ephemeral" && nic.guestPorts.standby === undefined) throw invalid(`${field}.guestPorts.standby`, undefined, "required");
  if (mode !== "emulated" && nic.guestPorts.primary === undefined) throw invalid(`${field}.guestPorts.primary`, undefined, "required");
  return nic;
}

const SPEC_KEYS = ["uuid", "name", "memoryMiB", "vcpus", "kernel", "initrd", "cmdline", "nics", "sharedMemory", "ramTrimKiB", "noOs"] as const;
const PATHS_ARE_THE_AGENTS = "an API body names no file for QEMU: the agent chooses every path it gives QEMU (RAM files under its memoryDir, sockets and logs under its runDir)";

/**
 * Validate an untrusted VM spec (an agent API body); throws FERRY_ERR_INVALID
 * naming the field and the value. Unknown fields are refused, so a body
 * cannot slip a path past the agent (`sharedMemoryPath`: ask for
 * `sharedMemory: true` and the agent picks the file).
 */
export function parseVmSpec(x: unknown): VmSpec {
  const o = v.obj("spec", x);
  onlyKeys("", o, SPEC_KEYS, {
    sharedMemoryPath: `${PATHS_ARE_THE_AGENTS}; ask for shared memory with "sharedMemory": true`,
    qemuBinary: `${PATHS_ARE_THE_AGENTS}; the QEMU binary is the host's (a local migration may name one the host config allows)`,
  });
  const spec: VmSpec = {
    uuid: v.uuid("uuid", o["uuid"]),
    name: v.name("name", o["name"]),
    memoryMiB: v.int("memoryMiB", o["memoryMiB"], 64, 1024 * 1024),
    vcpus: v.int("vcpus", o["vcpus"] ?? 1, 1, 256),
    kernel: v.absPath("kernel", o["kernel"]),
    initrd: v.absPath("initrd", o["initrd"]),
    cmdline: v.str("cmdline", o["cmdline"] ?? ""),
    nics: v.arr("nics", o["nics"] ?? []).map((n, i) => parseNic(`nics[${i}]`, n)),
  };
  if (spec.cmdline.length > 2048) throw invalid("cmdline", spec.cmdline.slice(0, 40) + "…", "longer than 2048 characters");
  if (o["ramTrimKiB"] !== undefined) spec.ramTrimKiB = parseRamTrim("ramTrimKiB", o["ramTrimKiB"]);
  for (const k of ["sharedMemory", "noOs"] as const) {
    if (o[k] === undefined) continue;
    if (typeof o[k] !== "boolean") throw invalid(k, o[k], "must be true or false");
    if (o[k]) spec[k] = true;
  }
  const names = new Set<string>();
  const ports = new Map<number, string>();
  spec.nics.forEach((n, i) => {
    if (names.has(n.name)) throw invalid(`nics[${i}].name`, n.name, "duplicate NIC name");
    names.add(n.name);
    for (const [half, p] of Object.entries(n.guestPorts)) {
      if (p === undefined) continue;
      const other = ports.get(p);
      if (other) throw invalid(`nics[${i}].guestPorts.${half}`, p, `guest port already used by ${other}`);
      ports.set(p, `${n.name}.${half}`);
    }
  });
  return spec;
}

/**
 * The spec as an API body carries it from one host to another (begin →
 * prepare, a save file → restore): no host-side names, i.e. every NIC half's
 * backend "none". What parseVmSpec accepts.
 */
export function portableSpec(spec: VmSpec): VmSpec {
  const nics = spec.nics.map((n): NicSpec => {
    const out: NicSpec = { ...n, guestPorts: { ...n.guestPorts } };
    if (n.standby) out.standby = { kind: "none" };
    if (n.primary?.kind === "stand-in") out.primary = { ...n.primary, backend: { kind: "none" } };
    return out;
  });
  return { ...spec, nics };
}
