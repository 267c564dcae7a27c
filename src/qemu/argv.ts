// VM spec → QEMU argv. Pure: no I/O. Device ids derive from NIC names so that
// source and destination have the same layout (QEMU requires it).
import type { NetBackend, NicSpec, PrimaryDevice, VmSpec } from "../model/vm.ts";
import { ramSizeArg } from "../model/vm.ts";
import type { Accel } from "./accel.ts";

export interface ArgvOptions {
  accel: Accel;
  qmpSocket: string;
  pidfile: string;
  serialLog: string;
  /** The guest serial console's unix socket (QEMU listens; one client at a time). */
  serialSocket: string;
  /** Start as a migration target (`-incoming defer`), vCPUs paused until the migration completes. */
  incoming?: boolean;
  /** The file guest RAM is mapped from (share=on), when the spec asks for shared memory; chosen by the agent. */
  ramFile?: string;
}

export const deviceIds = (nic: string) =>
  ({
    standby: `${nic}-standby`,
    primary: `${nic}-primary`,
    standbyNetdev: `hs-${nic}`,
    primaryNetdev: `hp-${nic}`,
  }) as const;

export const rootPortId = (port: number): string => `rp${port}`;

/** Guest PCI slot on pcie.0 of root port N (1..28 → 0x03..0x1e). */
export const rootPortSlot = (port: number): number => port + 2;

/** Every root port has a fixed guest address so both sides of a migration agree. */
function rootPortArgs(port: number): string[] {
  return ["-device", `pcie-root-port,id=${rootPortId(port)},bus=pcie.0,chassis=${port},addr=0x${rootPortSlot(port).toString(16)}`];
}

/** `-netdev` value for a backend, or undefined when the NIC has no host side. */
export function netdevValue(id: string, b: NetBackend): string | undefined {
  switch (b.kind) {
    case "tap":
      return `tap,id=${id},ifname=${b.ifname},script=no,downscript=no`;
    case "none":
      return undefined;
  }
}

/** Properties of the primary (VF) device, as for `device_add` (driver first). */
export function primaryDeviceProps(nic: NicSpec, primary: PrimaryDevice): Record<string, string> {
  const ids = deviceIds(nic.name);
  const port = nic.guestPorts.primary;
  if (port === undefined) throw new Error(`NIC ${nic.name}: no guest port for the primary`);
  const props: Record<string, string> =
    primary.kind === "vfio"
      ? { driver: "vfio-pci", host: primary.host, id: ids.primary, bus: rootPortId(port), rombar: "0" }
      : {
          driver: primary.model,
          id: ids.primary,
          mac: nic.mac,
          bus: rootPortId(port),
          // romfile= is required: otherwise the destination fails on an unknown ROM ramblock (FINDINGS.md)
          romfile: "",
          ...(primary.backend.kind === "none" ? {} : { netdev: ids.primaryNetdev }),
        };
  if (nic.mode === "failover") props["failover_pair_id"] = ids.standby;
  return props;
}

export function standbyDeviceProps(nic: NicSpec): Record<string, string> {
  const ids = deviceIds(nic.name);
  const port = nic.guestPorts.standby;
  if (port === undefined || nic.standby === undefined) throw new Error(`NIC ${nic.name}: no standby`);
  const props: Record<string, string> = { driver: "virtio-net-pci", id: ids.standby, mac: nic.mac, bus: rootPortId(port) };
  if (nic.standby.kind !== "none") props["netdev"] = ids.standbyNetdev;
  if (nic.mode === "failover") props["failover"] = "on";
  return props;
}

export function deviceArg(props: Record<string, string>): string {
  const { driver, ...rest } = props;
  return [driver, ...Object.entries(rest).map(([k, v]) => `${k}=${v}`)].join(",");
}

/** QEMU option values escape ',' by doubling it. */
export const optEscape = (s: string): string => s.replaceAll(",", ",,");

/**
 * The guest's serial console: a unix socket QEMU listens on (input for the
 * guest, e.g. src/lab/memcheck.ts) with a log file that receives every byte
 * the guest prints, whether or not a client is connected (QEMU ≥ 5.2 logs a
 * write the unconnected socket refused). A connected client must keep reading:
 * one that does not stalls the console once the socket buffer is full.
 */
export function serialArgs(o: Pick<ArgvOptions, "serialSocket" | "serialLog">): string[] {
  return [
    "-chardev", `socket,id=ser0,path=${optEscape(o.serialSocket)},server=on,wait=off,logfile=${optEscape(o.serialLog)},logappend=on`,
    "-serial", "chardev:ser0",
  ];
}

/** The machine type and CPU model every instance runs (a migration's pre-flight checks compare them between hosts). */
export const MACHINE_TYPE = "q35";
export const CPU_MODEL = "qemu64";

export function buildArgv(spec: VmSpec, o: ArgvOptions): string[] {
  const machine = [MACHINE_TYPE, `accel=${o.accel}`];
  const argv: string[] = [
    "-name", `${spec.name},debug-threads=on`,
    "-uuid", spec.uuid,
    "-nodefaults", "-no-user-config", "-display", "none",
    "-cpu", CPU_MODEL,
    "-m", ramSizeArg(spec),
    "-smp", String(spec.vcpus),
    "-qmp", `unix:${optEscape(o.qmpSocket)},server=on,wait=off`,
    "-pidfile", o.pidfile,
    ...serialArgs(o),
    "-msg", "timestamp=on",
    // a guest kernel's panic reaches QMP (GUEST_PANICKED) through the pvpanic device; QEMU does nothing else
    // about it (panic=none: the VM stays as the guest left it). The ISA device has no migration state: a
    // source started without it migrates to a destination with it, and back.
    "-device", "pvpanic",
    "-action", "panic=none",
  ];
  if (spec.sharedMemory === true) {
    if (o.ramFile === undefined) throw new Error(`VM ${spec.name} asks for shared memory but no RAM file was given`);
    argv.push("-object", `memory-backend-file,id=mem0,size=${ramSizeArg(spec)},mem-path=${optEscape(o.ramFile)},share=on`);
    machine.push("memory-backend=mem0");
  }
  argv.unshift("-machine", machine.join(","));
  if (!spec.noOs) argv.push("-kernel", spec.kernel, "-initrd", spec.initrd, "-append", spec.cmdline);
  for (const nic of spec.nics) {
    const ids = deviceIds(nic.name);
    if (nic.guestPorts.standby !== undefined) argv.push(...rootPortArgs(nic.guestPorts.standby));
    if (nic.guestPorts.primary !== undefined) argv.push(...rootPortArgs(nic.guestPorts.primary));
    if (nic.standby !== undefined) {
      const nd = netdevValue(ids.standbyNetdev, nic.standby);
      if (nd) argv.push("-netdev", nd);
      argv.push("-device", deviceArg(standbyDeviceProps(nic)));
    }
    if (nic.primary !== undefined) {
      if (nic.primary.kind === "stand-in") {
        const nd = netdevValue(ids.primaryNetdev, nic.primary.backend);
        if (nd) argv.push("-netdev", nd);
      }
      argv.push("-device", deviceArg(primaryDeviceProps(nic, nic.primary)));
    }
  }
  if (o.incoming) argv.push("-incoming", "defer");
  return argv;
}
