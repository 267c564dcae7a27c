// Host agent configuration: one YAML file per host. Parsing is pure (no I/O
// besides `loadHostConfig` reading the file); every error names the line and
// the field. Unknown keys are errors (a typo must not silently drop a setting).
//
//   name: host-a                     # required; the host's name in the cluster
//   sysfsRoot: /sys                  # default /sys; a fixture root in the lab
//   listen: { address: 127.0.0.1, port: 7601 }   # default loopback, port 7601
//   stateDir: /var/lib/ferry         # SQLite state file (state.db) lives here; default /var/lib/ferry
//   runDir: /run/ferry               # QEMU instances' runtime dirs; default /run/ferry
//   saveDir: /var/lib/ferry/saves    # VM state files of `ferry vm save` (default <stateDir>/saves); share it to restore elsewhere
//   authTokenFile: /etc/ferry/token  # default <stateDir>/token
//   memoryDir: /dev/shm/ferry-host-a # guest RAM files of VMs with shared memory (owner-only dir, one file per
//                                    #   instance, on tmpfs); default /dev/shm/ferry-<name>
//   imageDirs: [/var/cache/ferry/guest]   # the only dirs a VM's kernel and initrd may come from
//                                    #   (default: $FERRY_CACHE_DIR/guest, else /var/cache/ferry/guest)
//   qemuBinaries: [/opt/qemu-8.2/bin/qemu-system-x86_64]   # QEMU binaries a local migration may switch to
//                                    #   (an upgrade): absolute paths of executables, or dirs whose executables
//                                    #   are allowed; the agent's own QEMU is always allowed
//   portProfileExec: /usr/libexec/ferry-port-profile   # optional: run as `<exe> associate|disassociate <profile> <mac> <vf-bdf>`
//   networks:                        # physical networks, by name
//     physnet1:
//       bridge: br-phys1             # lab: the bridge stand-ins and standbys attach to (optional)
//       netns: ferry-lab             # lab: the namespace holding that bridge (optional)
//       vlan: 100                    # optional VLAN (1-4094) applied to this network's VFs
//       spoofchk: true               # optional: the VFs' spoof check while a guest has them (unset: left as is)
//       trust: false                 # optional: the VFs' trust while a guest has them (unset: left as is)
//       forwarding: managed          # lab bridge: managed (default; DESIGN P10 pins the guest MAC to the live half)
//                                    # or unmanaged (raw QEMU failover: ports learn, nothing pinned; benchmarks only)
//   uplinks:                         # which PF uplinks which network
//     - pf: 0000:3b:00.0             # a PCI address or the PF's netdev name (enp59s0f0)
//       network: physnet1
//       bandwidthMbps: 10000         # optional; default: the PF netdev's link speed
//       standIns:                    # optional: VFs without real SR-IOV behind them
//         vfs: all                   # "all" or a list of VF PCI addresses of this PF
//         model: vmxnet3             # vmxnet3 (default) | rtl8139 | e1000e | e1000
//       onRelease:                   # optional, real VFs: what a VF is left with when its guest lets it go
//         mac: 00:00:00:00:00:00     #   the MAC it is reset to (default zero); its VLAN is always cleared
//         restoreDriver: false       #   true: given back to its host driver (default: stays on vfio-pci)
//   controller:                      # optional: register and heartbeat with a controller
//     url: http://127.0.0.1:7600
//     alternates: [http://10.0.0.2:7600]   # optional: the cluster's other controllers (etcd store), tried in order
//                                    #   when the last that answered cannot be connected to
//     tokenFile: /etc/ferry/controller-token   # the controller API's bearer token
//     heartbeatMs: 2000              # default 2000
//     advertiseUrl: http://10.0.0.5:7601   # optional: the URL the controller calls this agent at (default: the listen address)
//   switchoverGraceMs: 500           # at pre-switchover (guest paused) the source waits the controller's
//                                    #   destination check (precheckMs) plus this for the switch-over; then it
//                                    #   cancels the migration and resumes the guest itself (no pause waits on
//                                    #   a dead controller)
//   migration:                       # the migration network: where this host's incoming QEMU listens
//     address: 10.92.0.11            #   an IPv4 address of this host on the migration network (required in
//                                    #   the block; the agent refuses to start when no interface holds it)
//     ports: [49152, 49215]          #   the port range incoming migrations listen on (open it in the firewall);
//                                    #   default 49152-49215 (libvirt's); busy ports are skipped
//     tls: true                      #   TLS on the migration stream (default): true uses the agent's tls files
//                                    #   below (their certificate must name this address), or { cert, key, ca };
//                                    #   false: plain TCP (a warning in 'ferry hosts' and 'ferry migrate')
//                                    # Without the block the host takes no cross-host migration (a local one, on
//                                    #   the same host, needs no network).
//   lab: false                       # true only on lab hosts: allows fault switches (/v1/faults)
//   tls:                             # optional mutual TLS (files from 'ferry ca init' / 'ferry ca issue'):
//     cert: /etc/ferry/tls/host-a.crt  #   the agent serves HTTPS with it and presents it to the controller
//     key: /etc/ferry/tls/host-a.key
//     ca: /etc/ferry/tls/ca.crt      #   clients (controller, CLI) must present a certificate signed by it
//
// Relative paths are resolved against the config file's directory.
// A stand-in VF is given to QEMU as an emulated PCIe NIC with the VF's MAC on
// the network's bridge instead of `vfio-pci,host=BDF` (DESIGN: running on one machine).
import { isIP } from "node:net";
import { FerryError, invalid } from "../core/errors.ts";
import type { TlsFiles } from "../core/tls.ts";
import { STAND_IN_MODELS } from "../model/vm.ts";
import type { StandInModel } from "../model/vm.ts";
import * as v from "../model/validate.ts";
import { parseTls, parseYamlConfig, readConfigFile } from "../model/yaml-config.ts";
import type { Ctx, Path } from "../model/yaml-config.ts";
import type { Inventory, PciNetDevice } from "./sysfs.ts";
import { findDevice, virtualFunctionsOf } from "./sysfs.ts";

export interface NetworkConfig {
  name: string;
  bridge: string | null;
  netns: string | null;
  vlan: number | null;
  /** The VFs' spoof check / trust while a guest has them (real VFs); null: left as the PF has them. */
  spoofchk: boolean | null;
  trust: boolean | null;
  /** P10 forwarding-path management on the lab bridge; "unmanaged" is raw QEMU failover (a baseline for benchmarks). */
  forwarding: "managed" | "unmanaged";
}

export interface UplinkConfig {
  /** As written: a PCI address or a netdev name. */
  pf: string;
  network: string;
  bandwidthMbps: number | null;
  standIns: { vfs: "all" | string[]; model: StandInModel } | null;
  /** Real VFs on release: the MAC they are reset to, and whether their host driver gets them back. */
  onRelease: { mac: string; restoreDriver: boolean };
}

export const ZERO_MAC = "00:00:00:00:00:00";

export interface HostConfig {
  name: string;
  sysfsRoot: string;
  listen: { address: string; port: number };
  stateDir: string;
  runDir: string;
  /** Where `save` writes VM state files (restore reads them; hosts that share it can restore each other's saves). */
  saveDir: string;
  authTokenFile: string;
  /** Where the agent creates guest RAM files (shared memory): an owner-only dir it makes. */
  memoryDir: string;
  /** The dirs kernels and initrds may come from (a VM spec names files inside them only). */
  imageDirs: string[];
  /** QEMU binaries (files, or dirs of them) a local migration may name. */
  qemuBinaries: string[];
  portProfileExec: string | null;
  networks: NetworkConfig[];
  uplinks: UplinkConfig[];
  /** Where this agent registers and heartbeats; null: standalone. */
  controller: { url: string; tokenFile: string; heartbeatMs: number; advertiseUrl?: string; alternates?: string[] } | null;
  /**
   * At pre-switchover the guest is paused: the source waits for the switch-over
   * no longer than the destination check (the plan's precheckMs) plus this,
   * then cancels the migration and resumes the guest itself.
   */
  switchoverGraceMs: number;
  /** The migration network (see MigrationNetConfig); null: this host takes no cross-host migration. */
  migration: MigrationNetConfig | null;
  /** Lab host: fault switches (`/v1/faults`) are allowed. Never on a production host. */
  lab: boolean;
  /** Mutual TLS for the agent API and for its calls to the controller; null: plain HTTP (the token still required). */
  tls: TlsFiles | null;
}

export interface MigrationNetConfig {
  /** This host's IPv4 address on the migration network: where its incoming QEMU listens. */
  address: string;
  /** Inclusive port range for incoming migrations. */
  ports: { from: number; to: number };
  /** TLS files for the migration stream (the agent's own `tls` unless given); null: plain TCP. */
  tls: TlsFiles | null;
}

export const DEFAULT_PORT = 7601;
/** libvirt's default migration port range. */
export const DEFAULT_MIGRATION_PORTS = { from: 49152, to: 49215 } as const;
/** See HostConfig.switchoverGraceMs: well under a second beyond the destination check. */
export const DEFAULT_SWITCHOVER_GRACE_MS = 500;
export const STATE_FILE_NAME = "state.db";

function parseNetwork(c: Ctx, name: string, x: unknown): NetworkConfig {
  const p = ["networks", name];
  const o = x === null ? {} : c.obj(p, x, ["bridge", "netns", "vlan", "spoofchk", "trust", "forwarding"]);
  return {
    name,
    bridge: o["bridge"] === undefined ? null : c.check([...p, "bridge"], (f) => v.ifname(f, o["bridge"])),
    netns: o["netns"] === undefined ? null : c.check([...p, "netns"], (f) => v.name(f, o["netns"])),
    vlan: o["vlan"] === undefined ? null : c.check([...p, "vlan"], (f) => v.int(f, o["vlan"], 1, 4094)),
    spoofchk: o["spoofchk"] === undefined ? null : c.bool([...p, "spoofchk"], o["spoofchk"], false),
    trust: o["trust"] === undefined ? null : c.bool([...p, "trust"], o["trust"], false),
    forwarding: o["forwarding"] === undefined ? "managed" : c.check([...p, "forwarding"], (f) => v.oneOf(f, o["forwarding"], ["managed", "unmanaged"] as const)),
  };
}

function parseUplink(c: Ctx, i: number, x: unknown, networks: ReadonlySet<string>): UplinkConfig {
  const p = ["uplinks", i];
  const o = c.obj(p, x, ["pf", "network", "bandwidthMbps", "standIns", "onRelease"]);
  const pf = c.check([...p, "pf"], (f) => {
    const s = v.str(f, o["pf"]);
    return v.isPciAddress(s.toLowerCase()) ? s.toLowerCase() : v.ifname(f, s);
  });
  const network = c.check([...p, "network"], (f) => v.name(f, o["network"]));
  if (!networks.has(network)) throw c.error([...p, "network"], `unknown network ${JSON.stringify(network)} (declare it under networks)`);
  let standIns: UplinkConfig["standIns"] = null;
  if (o["standIns"] !== undefined) {
    const sp = [...p, "standIns"];
    const s = c.obj(sp, o["standIns"], ["vfs", "model"]);
    const vfsRaw = s["vfs"] ?? "all";
    const vfs =
      vfsRaw === "all"
        ? ("all" as const)
        : c.check([...sp, "vfs"], (f) => v.arr(f, vfsRaw)).map((b, j) => c.check([...sp, "vfs", j], (f) => v.pciAddress(f, b)));
    const model = s["model"] === undefined ? "vmxnet3" : c.check([...sp, "model"], (f) => v.oneOf(f, s["model"], STAND_IN_MODELS));
    standIns = { vfs, model };
  }
  const onRelease = { mac: ZERO_MAC, restoreDriver: false };
  if (o["onRelease"] !== undefined) {
    const rp = [...p, "onRelease"];
    const r = c.obj(rp, o["onRelease"], ["mac", "restoreDriver"]);
    if (r["mac"] !== undefined) {
      onRelease.mac = c.check([...rp, "mac"], (f) => {
        const s = v.str(f, r["mac"]).toLowerCase();
        return s === ZERO_MAC ? s : v.mac(f, s);
      });
    }
    onRelease.restoreDriver = c.bool([...rp, "restoreDriver"], r["restoreDriver"], false);
  }
  return {
    pf,
    network,
    bandwidthMbps: o["bandwidthMbps"] === undefined ? null : c.check([...p, "bandwidthMbps"], (f) => v.int(f, o["bandwidthMbps"], 1, 10_000_000)),
    standIns,
    onRelease,
  };
}

/**
 * Parse and validate a host config. `source` names the file in errors;
 * relative paths are resolved against `baseDir` (default: source's directory).
 */
function pathList(c: Ctx, key: string, x: unknown): string[] {
  return c.check([key], (f) => v.arr(f, x)).map((p, i) => c.path([key, i], p));
}

/**
 * `cacheDir`: the guest image cache whose guest/ dir is the default image dir
 * (default $FERRY_CACHE_DIR, else /var/cache/ferry).
 */
export function parseHostConfig(text: string, options: { source?: string; baseDir?: string; cacheDir?: string } = {}): HostConfig {
  const { raw, c } = parseYamlConfig(text, options.source ?? "host config", options.baseDir);
  const o = c.obj([], raw ?? {}, ["name", "sysfsRoot", "listen", "stateDir", "runDir", "saveDir", "authTokenFile", "memoryDir", "imageDirs", "qemuBinaries", "portProfileExec", "networks", "uplinks", "controller", "switchoverGraceMs", "migration", "lab", "tls"]);
  if (o["name"] === undefined) throw c.error(["name"], "required");
  const name = c.check(["name"], (f) => v.name(f, o["name"]));

  const listenRaw = o["listen"] === undefined ? {} : c.obj(["listen"], o["listen"], ["address", "port"]);
  const address = c.check(["listen", "address"], (f) => {
    const s = v.str(f, listenRaw["address"] ?? "127.0.0.1");
    if (isIP(s) === 0) throw invalid(f, s, "not an IP address");
    return s;
  });
  const port = c.check(["listen", "port"], (f) => v.int(f, listenRaw["port"] ?? DEFAULT_PORT, 1, 65535));

  const stateDir = o["stateDir"] === undefined ? "/var/lib/ferry" : c.path(["stateDir"], o["stateDir"]);
  const networksRaw = o["networks"] === undefined ? {} : c.check(["networks"], (f) => v.obj(f, o["networks"]));
  const networks = Object.entries(networksRaw).map(([k, x]) => {
    c.check(["networks", k], (f) => v.name(f, k));
    return parseNetwork(c, k, x);
  });
  const names = new Set(networks.map((n) => n.name));
  const uplinks = (o["uplinks"] === undefined ? [] : c.check(["uplinks"], (f) => v.arr(f, o["uplinks"]))).map((x, i) => parseUplink(c, i, x, names));
  const seen = new Map<string, number>();
  uplinks.forEach((u, i) => {
    const prev = seen.get(u.pf);
    if (prev !== undefined) throw c.error(["uplinks", i, "pf"], `${u.pf} is already the uplink of uplinks[${prev}]`);
    seen.set(u.pf, i);
  });

  const tls = o["tls"] === undefined ? null : parseTls(c, ["tls"], o["tls"]);
  return {
    name,
    sysfsRoot: o["sysfsRoot"] === undefined ? "/sys" : c.path(["sysfsRoot"], o["sysfsRoot"]),
    listen: { address, port },
    stateDir,
    runDir: o["runDir"] === undefined ? "/run/ferry" : c.path(["runDir"], o["runDir"]),
    saveDir: o["saveDir"] === undefined ? `${stateDir}/saves` : c.path(["saveDir"], o["saveDir"]),
    authTokenFile: o["authTokenFile"] === undefined ? `${stateDir}/token` : c.path(["authTokenFile"], o["authTokenFile"]),
    memoryDir: o["memoryDir"] === undefined ? `/dev/shm/ferry-${name}` : c.path(["memoryDir"], o["memoryDir"]),
    imageDirs: o["imageDirs"] === undefined ? [`${options.cacheDir ?? process.env["FERRY_CACHE_DIR"] ?? "/var/cache/ferry"}/guest`] : pathList(c, "imageDirs", o["imageDirs"]),
    qemuBinaries: o["qemuBinaries"] === undefined ? [] : pathList(c, "qemuBinaries", o["qemuBinaries"]),
    portProfileExec: o["portProfileExec"] === undefined ? null : c.path(["portProfileExec"], o["portProfileExec"]),
    networks,
    uplinks,
    controller: o["controller"] === undefined ? null : parseController(c, o["controller"]),
    switchoverGraceMs: o["switchoverGraceMs"] === undefined ? DEFAULT_SWITCHOVER_GRACE_MS : c.check(["switchoverGraceMs"], (f) => v.int(f, o["switchoverGraceMs"], 50, 60_000)),
    migration: o["migration"] === undefined ? null : parseMigrationNet(c, o["migration"], tls),
    lab: c.bool(["lab"], o["lab"], false),
    tls,
  };
}

function parseMigrationNet(c: Ctx, x: unknown, agentTls: TlsFiles | null): MigrationNetConfig {
  const p = ["migration"];
  const o = c.obj(p, x, ["address", "ports", "tls"]);
  if (o["address"] === undefined) throw c.error([...p, "address"], "required (this host's IPv4 address on the migration network, e.g. 10.92.0.11)");
  const address = c.check([...p, "address"], (f) => {
    const s = v.str(f, o["address"]);
    if (isIP(s) !== 4) throw invalid(f, s, "must be an IPv4 address, e.g. 10.92.0.11");
    if (s === "0.0.0.0" || s.startsWith("127.")) throw invalid(f, s, "must be an address other hosts can reach (not loopback, not 0.0.0.0)");
    return s;
  });
  let ports: { from: number; to: number } = { ...DEFAULT_MIGRATION_PORTS };
  if (o["ports"] !== undefined) {
    const arr = c.check([...p, "ports"], (f) => v.arr(f, o["ports"]));
    if (arr.length !== 2) throw c.error([...p, "ports"], "must be [FROM, TO], e.g. [49152, 49215]");
    const from = c.check([...p, "ports", 0], (f) => v.int(f, arr[0], 1024, 65535));
    const to = c.check([...p, "ports", 1], (f) => v.int(f, arr[1], 1024, 65535));
    if (to < from) throw c.error([...p, "ports"], `[${from}, ${to}]: the range is empty (FROM must not exceed TO)`);
    ports = { from, to };
  }
  let tls: TlsFiles | null;
  const t = o["tls"];
  if (t === false) tls = null;
  else if (t === undefined || t === true) {
    if (agentTls === null) {
      throw c.error([...p, "tls"], "TLS on the migration stream needs certificate files: add tls: { cert, key, ca } for the agent (its certificate must name the migration address; 'ferry ca issue --ip ADDRESS'), or migration.tls: { cert, key, ca }, or migration.tls: false for plain TCP");
    }
    tls = agentTls;
  } else tls = parseTls(c, [...p, "tls"], t);
  return { address, ports, tls };
}

function parseController(c: Ctx, x: unknown): NonNullable<HostConfig["controller"]> {
  const o = c.obj(["controller"], x, ["url", "tokenFile", "heartbeatMs", "advertiseUrl", "alternates"]);
  const url = httpUrl(c, ["controller", "url"], o["url"]);
  if (o["tokenFile"] === undefined) throw c.error(["controller", "tokenFile"], "required (the controller's API token, to authenticate the heartbeat)");
  return {
    url,
    tokenFile: c.path(["controller", "tokenFile"], o["tokenFile"]),
    heartbeatMs: o["heartbeatMs"] === undefined ? 2000 : c.check(["controller", "heartbeatMs"], (f) => v.int(f, o["heartbeatMs"], 100, 60_000)),
    ...(o["advertiseUrl"] === undefined ? {} : { advertiseUrl: httpUrl(c, ["controller", "advertiseUrl"], o["advertiseUrl"]) }),
    ...(o["alternates"] === undefined ? {} : { alternates: c.check(["controller", "alternates"], (f) => v.arr(f, o["alternates"])).map((u, i) => httpUrl(c, ["controller", "alternates", i], u)) }),
  };
}

function httpUrl(c: Ctx, path: Path, x: unknown): string {
  return c.check(path, (f) => {
    const s = v.str(f, x);
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      throw invalid(f, s, "not a URL (expected http://HOST:PORT)");
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") throw invalid(f, s, "must be an http:// or https:// URL");
    return s.replace(/\/+$/, "");
  });
}

/** Read and parse a host config file. */
export async function loadHostConfig(file: string, signal?: AbortSignal): Promise<HostConfig> {
  const { text, source } = await readConfigFile(file, signal);
  return parseHostConfig(text, { source });
}

/** The state file inside the state dir. */
export function stateFile(config: HostConfig): string {
  return `${config.stateDir}/${STATE_FILE_NAME}`;
}

export interface UsableVf {
  bdf: string;
  pf: string;
  pfIfname: string | null;
  vfIndex: number;
  network: string;
  vendor: string;
  device: string;
  numaNode: number | null;
  /** The VF's current MAC from sysfs (a stand-in's identity); null when it has no netdev. */
  mac: string | null;
  vlan: number | null;
  standIn: null | { model: StandInModel };
}

export interface ResolvedUplink {
  pf: string;
  pfIfname: string | null;
  network: string;
  /** Configured, else the PF's link speed, else null. */
  bandwidthMbps: number | null;
  numaNode: number | null;
  vfs: UsableVf[];
}

function configError(message: string, field: string): FerryError {
  return new FerryError("FERRY_ERR_CONFIG", `${field}: ${message}`, { details: { field } });
}

/**
 * Join the config's uplinks with the inventory. Throws FERRY_ERR_CONFIG when
 * an uplink names a PF the inventory lacks (or a device that is not an
 * SR-IOV PF), or a stand-in VF that is not one of that PF's VFs.
 */
export function resolveUplinks(config: HostConfig, inv: Inventory): ResolvedUplink[] {
  const networks = new Map(config.networks.map((n) => [n.name, n]));
  const taken = new Map<string, number>();
  return config.uplinks.map((u, i) => {
    const field = `uplinks[${i}].pf`;
    let dev: PciNetDevice | undefined;
    if (v.isPciAddress(u.pf)) dev = findDevice(inv, u.pf);
    else dev = inv.devices.find((d) => d.netdevs.some((n) => n.ifname === u.pf));
    if (!dev) {
      const broken = inv.problems.find((p) => p.bdf === u.pf);
      throw configError(
        `${u.pf} is not a network device on this host (sysfs root ${inv.root})${broken ? `: ${broken.path}: ${broken.message}` : ""}`,
        field,
      );
    }
    if (!dev.sriov) throw configError(`${u.pf} (${dev.bdf}) is not an SR-IOV physical function`, field);
    const prev = taken.get(dev.bdf);
    if (prev !== undefined) throw configError(`${u.pf} is the same PF (${dev.bdf}) as uplinks[${prev}]`, field);
    taken.set(dev.bdf, i);
    const pfIfname = dev.netdevs[0]?.ifname ?? null;
    const vfDevs = virtualFunctionsOf(inv, dev.bdf).filter((d) => d.vf?.index !== null && d.vf?.index !== undefined);
    const standIn = u.standIns;
    if (standIn && standIn.vfs !== "all") {
      for (const [j, b] of standIn.vfs.entries()) {
        if (!vfDevs.some((d) => d.bdf === b)) throw configError(`${b} is not a VF of ${dev.bdf} (${u.pf})`, `uplinks[${i}].standIns.vfs[${j}]`);
      }
    }
    const isStandIn = (b: string): boolean => standIn !== null && (standIn.vfs === "all" || standIn.vfs.includes(b));
    const net = networks.get(u.network);
    return {
      pf: dev.bdf,
      pfIfname,
      network: u.network,
      bandwidthMbps: u.bandwidthMbps ?? dev.netdevs[0]?.speedMbps ?? null,
      numaNode: dev.numaNode,
      vfs: vfDevs.map((d) => ({
        bdf: d.bdf,
        pf: dev.bdf,
        pfIfname,
        vfIndex: d.vf?.index ?? -1,
        network: u.network,
        vendor: d.vendor,
        device: d.device,
        numaNode: d.numaNode,
        mac: d.netdevs[0]?.mac ?? null,
        vlan: net?.vlan ?? null,
        standIn: isStandIn(d.bdf) && standIn ? { model: standIn.model } : null,
      })),
    };
  });
}

/** Every VF this host may lease, with its network and stand-in model. */
export function usableVfs(config: HostConfig, inv: Inventory): UsableVf[] {
  return resolveUplinks(config, inv).flatMap((u) => u.vfs);
}
