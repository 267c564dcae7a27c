// What a lab writes for its components: each host's host.yaml (a shared host,
// whose paths are the lab dir's, or an apart host, which sees its own
// /var/lib/ferry, /run and /dev/shm), and the lab's CA and certificates.
import { join } from "node:path";
import { initCa, issueCert } from "../core/ca.ts";
import type { TlsFiles } from "../core/tls.ts";
import type { StandInModel } from "../model/vm.ts";

export interface HostYamlInput {
  name: string;
  /** The agent's tls block (YAML flow map), or null for plain HTTP. */
  tls: string | null;
  model: StandInModel;
  forwarding: "managed" | "unmanaged";
  pfs: { bdf: string; network: string }[];
  networks: string[];
  controllerUrl: string;
  /** The other controllers (etcd store): the agent heartbeats to the next when one cannot be connected to. */
  controllerAlternates?: readonly string[];
  controllerTokenFile: string;
  agentTokenFile: string;
  qemuDir: string;
}

export const bridgeOf = (network: string): string => `br-${network}`.slice(0, 15);

/** The lines after the host's own paths and addresses; `net`: a network's settings. */
function tail(s: HostYamlInput, net: (n: string) => string): string[] {
  return [
    `lab: true`,
    ...(s.tls === null ? [] : [`tls: ${s.tls}`]),
    `networks:`,
    ...s.networks.map((n) => `  ${n}: ${net(n)}`),
    `uplinks:`,
    ...s.pfs.flatMap((p) => [`  - pf: ${p.bdf}`, `    network: ${p.network}`, `    standIns: { vfs: all, model: ${s.model} }`]),
    "",
  ];
}

/** The host.yaml's controller: line. */
const controllerLine = (s: HostYamlInput): string =>
  `controller: { url: ${s.controllerUrl}, ${s.controllerAlternates && s.controllerAlternates.length > 0 ? `alternates: [${s.controllerAlternates.join(", ")}], ` : ""}tokenFile: ${s.controllerTokenFile}, heartbeatMs: 1000 }`;

/** A local migration may switch to any QEMU binary an operator puts in <labDir>/qemu (an "upgrade"). */
const access = (s: HostYamlInput): string[] => [`qemuBinaries: [${s.qemuDir}]`, `authTokenFile: ${s.agentTokenFile}`];

/** A host sharing the machine: paths in the lab dir, its bridges in the lab's namespace, loopback. */
export function sharedHostYaml(s: HostYamlInput & { dir: string; port: number; netns: string; saveDir: string; memoryDir: string }): string {
  return [
    `name: ${s.name}`,
    `sysfsRoot: ${s.dir}/sys`,
    `stateDir: ${s.dir}/state`,
    `runDir: ${s.dir}/run`,
    `saveDir: ${s.saveDir}`,
    `memoryDir: ${s.memoryDir}`,
    ...access(s),
    `listen: { address: 127.0.0.1, port: ${s.port} }`,
    controllerLine(s),
    ...tail(s, (n) => `{ bridge: ${bridgeOf(n)}, netns: ${s.netns}, forwarding: ${s.forwarding} }`),
  ].join("\n");
}

/**
 * An apart host, in its own view (host-holder.ts mounts it): /var/lib/ferry
 * is its lab dir, /var/lib/ferry/saves the lab's shared save dir; it listens
 * on its management address; its bridges are in its own namespace.
 */
export function apartHostYaml(s: HostYamlInput & { mgmtIp: string; port: number; migIp: string }): string {
  return [
    ...apartHostPaths(s.name),
    ...access(s),
    `listen: { address: ${s.mgmtIp}, port: ${s.port} }`,
    controllerLine(s),
    // TLS on the migration stream with the agent's own files (its certificate names this address); off in a plain lab
    apartMigrationLine(s.migIp, s.tls === null ? null : "agent"),
    ...tail(s, (n) => `{ bridge: ${bridgeOf(n)}, forwarding: ${s.forwarding} }`),
  ].join("\n");
}

/** An apart host's name and its own paths, as host-holder.ts mounts them (the first lines of its host.yaml). */
export function apartHostPaths(name: string): string[] {
  return [
    `name: ${name}`,
    `sysfsRoot: /var/lib/ferry/sys`,
    `stateDir: /var/lib/ferry/state`,
    `runDir: /run/ferry`,
    `saveDir: /var/lib/ferry/saves`,
    `memoryDir: /dev/shm/ferry-${name}`,
  ];
}

/** An apart host's `migration:` line: its migration address, TLS with the agent's own files ("agent"), with files of its own (`yaml`: a flow map), or off (null). */
export function apartMigrationLine(migIp: string, tls: "agent" | { yaml: string } | null): string {
  return `migration: { address: ${migIp}${tls === null ? ", tls: false" : tls === "agent" ? "" : `, tls: ${tls.yaml}`} }`;
}

/** A CA and one certificate per component (and "cli" for the lab's clients) in <dir>/tls, owner-only; each with its IPs. */
export async function labCerts(dir: string, certs: readonly { name: string; ips?: readonly string[] }[]): Promise<{ files: (name: string) => TlsFiles; yaml: (name: string) => string }> {
  const ca = await initCa(join(dir, "tls"));
  for (const c of certs) await issueCert(ca.dir, { name: c.name, ...(c.ips ? { ips: c.ips } : {}) });
  const files = (name: string): TlsFiles => ({ cert: join(ca.dir, `${name}.crt`), key: join(ca.dir, `${name}.key`), ca: ca.cert });
  const yaml = (name: string): string => {
    const f = files(name);
    return `{ cert: ${f.cert}, key: ${f.key}, ca: ${f.ca} }`;
  };
  return { files, yaml };
}
