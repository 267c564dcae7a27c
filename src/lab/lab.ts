// A lab: several simulated hosts on this machine. One network namespace of
// its own (the fabric: a bridge and a peer per physical network), a
// controller and one agent per host as separate processes, each host with its
// own sysfs fixture of stand-in VFs, state file, runtime dir and loopback
// port. Everything lives under the lab dir; `lab.json` records the pids and
// addresses, and `down` works from the files and names alone (also after a
// crash). Processes are stopped by recorded pid, never by name.
// Mutual TLS by default (`tls: false` in lab.yaml or `--no-tls` turns it
// off): a CA and one certificate per component under <dir>/tls (owner-only),
// HTTPS everywhere, and a "cli" certificate that the context file, labFetch
// and labClient present.
// Apart hosts (`apart: true`, `ferry lab up --apart`): each host in network,
// mount and UTS namespaces of its own, held by a holder process, cabled to the
// others by a management network (the root namespace's side: the controller
// and the CLI), a migration network and an uplink per physical network
// (lab-hosts-plan.ts); its agent and its QEMUs run inside. The lab reads a
// host's files through hostPath().
// Several controllers (`--controllers 3 --store etcd`): three etcd members
// (lab-etcd.ts) and controller-1..N on it, one elected; each listens on the
// management address at a port of its own. The agents and the CLI context
// know every controller's URL and go to the next when one cannot be connected
// to (core/http/failover.ts); a follower forwards writes to the leader.
// `lab kill controller` kills the leader (asked with GET /v1/controllers).
import { randomBytes } from "node:crypto";
import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { parse as parseYaml } from "yaml";
import { ControllerClient } from "../api/client.ts";
import type { ControllersViewT } from "../wire/controllers.ts";
import { FerryError, invalid } from "../core/errors.ts";
import { fetchFor, loadTls } from "../core/tls.ts";
import type { TlsFiles } from "../core/tls.ts";
import { networkSubnet } from "../controller/vm-spec.ts";
import { writeSysfsFixture } from "../host/fixture.ts";
import type { StandInModel } from "../model/vm.ts";
import { STAND_IN_MODELS } from "../model/vm.ts";
import * as v from "../model/validate.ts";
import { createFabric, destroyFabric, describeFabric } from "./fabric.ts";
import { fabricNetns } from "./fabric-plan.ts";
import { apartHostYaml, bridgeOf, labCerts, sharedHostYaml } from "./lab-host-config.ts";
import { createApartHosts, destroyApartHosts, holderPath, spawnInHost, startHolder } from "./lab-hosts.ts";
import { APART_AGENT_PORT } from "./lab-hosts-plan.ts";
import type { ApartPlan } from "./lab-hosts-plan.ts";
import { etcdStoreUrl, startLabEtcd } from "./lab-etcd.ts";
import type { LabEtcdMember } from "./lab-etcd.ts";
import { freePort } from "../core/ports.ts";
import { ownedAlive, spawnDetached, stopPid, waitHttp } from "./lab-process.ts";

export interface LabHostSpec {
  name: string;
  /** VFs per network (each network is one PF on the host). 0: the host has no VF on it. */
  vfs: Record<string, number>;
}

export interface LabSpec {
  name: string;
  networks: string[];
  hosts: LabHostSpec[];
  model: StandInModel;
  /** DESIGN P10 forwarding management on the lab's bridges; "unmanaged" = raw QEMU failover (benchmarks' baseline). */
  forwarding: "managed" | "unmanaged";
  /** Mutual TLS between every component and the lab's clients (default on). */
  tls: boolean;
  /** Each host in namespaces of its own, cabled by management, migration and uplink networks (default off for now). */
  apart: boolean;
  /** How many controllers (more than one needs the etcd store). */
  controllers: number;
  /** The controllers' store: SQLite in the controller's state dir, or a three-member etcd cluster of the lab's own. */
  store: "sqlite" | "etcd";
}

export interface LabComponent {
  name: string;
  kind: "controller" | "agent";
  pid: number;
  url: string;
  config: string;
  log: string;
  /** Apart hosts: the holder of the host's namespaces (nsenter target, /proc/<pid>/root), the unshare that forked it, the host's network namespace. */
  holderPid?: number;
  unsharePid?: number;
  netns?: string;
  /** Apart hosts: the host's address on the migration network (where its QEMU listens for incoming migrations). */
  migIp?: string;
}

export interface LabState {
  name: string;
  dir: string;
  netns: string;
  controller: LabComponent;
  hosts: LabComponent[];
  agentTokenFile: string;
  controllerTokenFile: string;
  contextFile: string;
  /** The lab clients' certificate ("cli") and the CA; null: the lab runs plain HTTP. Absent in labs made before TLS. */
  tls?: TlsFiles | null;
  /** Apart hosts: the management network (root-namespace bridge, subnet, the controller's address) and the migration subnet. */
  apart?: { mgmtBridge: string; mgmtSubnet: string; controllerIp: string; migSubnet: string } | null;
  /** The etcd store: every controller (controller-1..N; `controller` is the first of them) and the etcd members. Absent: one controller on SQLite. */
  store?: "sqlite" | "etcd";
  controllers?: LabComponent[];
  etcd?: LabEtcdMember[];
  createdAt: number;
}

/** Every controller of a lab (one on SQLite). */
export function labControllers(state: LabState): LabComponent[] {
  return state.controllers ?? [state.controller];
}

export function labDir(name: string): string {
  // every lab command (down, status, kill, start, fault) finds its lab here: the name must not climb out
  return join(process.env["FERRY_LAB_DIR"] ?? "/var/tmp/ferry-lab", v.name("lab name", name));
}

export const defaultContextFile = (): string => process.env["FERRY_CONTEXT"] || join(homedir(), ".config", "ferry", "context.json");

/**
 * `--hosts N`, `--forwarding managed|unmanaged`, `--controllers N`, `--store sqlite|etcd` and an optional lab.yaml:
 * `{ networks: [..], model: vmxnet3, vfs: { physnet1: 8 }, hosts: { host2: { physnet2: 0 } }, forwarding: unmanaged, tls: false, controllers: 3, store: etcd }`.
 */
export function labSpec(o: { name?: string; hosts?: number; configText?: string; forwarding?: string; tls?: boolean; apart?: boolean; controllers?: number; store?: string }): LabSpec {
  const raw = o.configText === undefined ? {} : v.obj("lab config", parseYaml(o.configText) ?? {});
  const networks = raw["networks"] === undefined ? ["physnet1", "physnet2"] : v.arr("networks", raw["networks"]).map((n, i) => v.name(`networks[${i}]`, n));
  const model = raw["model"] === undefined ? "vmxnet3" : v.oneOf("model", raw["model"], STAND_IN_MODELS);
  const forwarding = v.oneOf("forwarding", o.forwarding ?? raw["forwarding"] ?? "managed", ["managed", "unmanaged"] as const);
  if (raw["tls"] !== undefined && typeof raw["tls"] !== "boolean") throw invalid("tls", raw["tls"], "must be true or false");
  const tls = o.tls ?? raw["tls"] ?? true;
  const perNet = raw["vfs"] === undefined ? {} : v.obj("vfs", raw["vfs"]);
  const overrides = raw["hosts"] === undefined ? {} : v.obj("hosts", raw["hosts"]);
  const count = v.int("--hosts", o.hosts ?? (raw["count"] ?? 3), 1, 16);
  const hosts: LabHostSpec[] = [];
  for (let i = 1; i <= count; i++) {
    const name = `host${i}`;
    const ov = overrides[name] === undefined ? {} : v.obj(`hosts.${name}`, overrides[name]);
    const vfs: Record<string, number> = {};
    for (const n of networks) vfs[n] = v.int(`hosts.${name}.${n}`, ov[n] ?? perNet[n] ?? 8, 0, 64);
    hosts.push({ name, vfs });
  }
  for (const k of Object.keys(overrides)) if (!hosts.some((h) => h.name === k)) throw new FerryError("FERRY_ERR_CONFIG", `lab config: hosts.${k}: no such host (the lab has host1..host${count})`);
  if (raw["apart"] !== undefined && typeof raw["apart"] !== "boolean") throw invalid("apart", raw["apart"], "must be true or false");
  const apart = o.apart ?? raw["apart"] ?? true;
  const store = v.oneOf(o.store !== undefined ? "--store" : "store", o.store ?? raw["store"] ?? "sqlite", ["sqlite", "etcd"] as const);
  const controllers = v.int(o.controllers !== undefined ? "--controllers" : "controllers", o.controllers ?? raw["controllers"] ?? 1, 1, 5);
  if (controllers > 1 && store !== "etcd") throw new FerryError("FERRY_ERR_CONFIG", `${controllers} controllers need the etcd store (SQLite is one controller's file): add --store etcd (or store: etcd in lab.yaml)`, { details: { field: "store" } });
  return { name: v.name("lab name", o.name ?? "lab"), networks, hosts, model, forwarding, tls, apart, controllers, store };
}

/** The fetch that reaches the lab's components: presents the lab's client certificate when the lab uses TLS. */
export async function labFetch(state: LabState): Promise<typeof fetch> {
  return fetchFor(state.tls ? await loadTls(state.tls) : null);
}

/** A path in a lab host's own view (an apart host's mount namespace) as this process reaches it; a shared host's paths are the machine's. */
export function hostPath(state: LabState, host: string, path: string): string {
  const h = state.hosts.find((x) => x.name === host);
  if (!h) throw new FerryError("FERRY_ERR_NOT_FOUND", `lab ${state.name} has no host ${host}`);
  return h.holderPid === undefined ? path : holderPath(h.holderPid, path);
}

/**
 * A ControllerClient for the lab's controller (its token, and its TLS
 * material when the lab uses TLS): its controllers in order, the others as
 * alternates; with `only`, that one controller and no alternates (a
 * benchmark that must reach the leader itself, not be forwarded).
 */
export async function labClient(state: LabState, o: { only?: string } = {}): Promise<ControllerClient> {
  const token = (await readFile(state.controllerTokenFile, "utf8")).trim();
  const [first, ...alternates] = o.only === undefined ? labControllers(state).map((c) => c.url) : [o.only];
  return new ControllerClient({ baseUrl: first!, token, fetch: await labFetch(state), ...(alternates.length > 0 ? { alternates } : {}) });
}

export async function readLabState(name: string): Promise<LabState | undefined> {
  try {
    return JSON.parse(await readFile(join(labDir(name), "lab.json"), "utf8")) as LabState;
  } catch {
    return undefined;
  }
}

async function writeLabState(s: LabState): Promise<void> {
  if (s.controllers?.[0]) s.controller = s.controllers[0];
  await writeFile(join(s.dir, "lab.json"), JSON.stringify(s, null, 2), { mode: 0o600 });
}

/** Where a lab host's agent creates guest RAM files (tmpfs; per lab and host, so labDown can remove it all). */
export function labMemoryDir(lab: string, host: string): string {
  return `/dev/shm/ferry-lab-${lab}-${host}`;
}

/** QEMU binaries a lab's local migrations may switch to: put one here (e.g. a wrapper) before 'ferry migrate --local --qemu'. */
export function labQemuDir(lab: string): string {
  return join(labDir(lab), "qemu");
}

const apartOf = (p: ApartPlan): NonNullable<LabState["apart"]> => ({ mgmtBridge: p.mgmt.bridge, mgmtSubnet: p.mgmt.subnet, controllerIp: p.mgmt.ip, migSubnet: p.mig.subnet });

/** Bring a lab up: fabric, controller, agents; returns its state (also in <dir>/lab.json). */
export async function labUp(spec: LabSpec, log: (line: string) => void = () => undefined): Promise<LabState> {
  const dir = labDir(spec.name);
  if (await readLabState(spec.name)) throw new FerryError("FERRY_ERR_STATE", `lab ${spec.name} is already up (${dir}); run 'ferry lab down' first`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await mkdir(labQemuDir(spec.name), { mode: 0o700 });
  const netns = fabricNetns(spec.name);
  log(`fabric: network namespace ${netns}, one bridge and peer per network (${spec.networks.join(", ")})`);
  await createFabric({
    name: spec.name,
    networks: spec.networks.map((n) => {
      const { n: a, m: b } = networkSubnet(n);
      return { name: n, bridge: bridgeOf(n), subnet: `10.${a}.${b}.0/24`, peerAddress: `10.${a}.${b}.1/24` };
    }),
  });
  const plan = spec.apart ? await createApartHosts({ lab: spec.name, hosts: spec.hosts.map((h) => h.name), networks: spec.networks.map((n) => ({ name: n, bridge: bridgeOf(n) })) }) : null;
  if (plan) log(`hosts apart: a namespace each (${plan.hosts.map((h) => h.netns).join(", ")}); management ${plan.mgmt.subnet} on ${plan.mgmt.bridge} (controller ${plan.mgmt.ip}), migration ${plan.mig.subnet}, an uplink per network to ${netns}`);
  const agentTokenFile = join(dir, "agent-token");
  const controllerTokenFile = join(dir, "controller-token");
  const controllerToken = randomBytes(32).toString("hex");
  await writeFile(agentTokenFile, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
  await writeFile(controllerTokenFile, `${controllerToken}\n`, { mode: 0o600 });
  const ctlNames = spec.store === "etcd" ? Array.from({ length: spec.controllers }, (_, i) => `controller-${i + 1}`) : ["controller"];
  const certNames = plan
    ? [...ctlNames.map((name) => ({ name, ips: [plan.mgmt.ip] })), { name: "cli" }, ...plan.hosts.map((h) => ({ name: h.name, ips: [h.mgmtIp, h.migIp] }))]
    : [...ctlNames, "cli", ...spec.hosts.map((h) => h.name)].map((name) => ({ name }));
  const certs = spec.tls ? await labCerts(dir, certNames) : null;
  if (certs) log(`tls: a CA and a certificate per component in ${join(dir, "tls")}; every component serves HTTPS and demands a client certificate`);
  const scheme = certs ? "https" : "http";
  const controllerIp = plan?.mgmt.ip ?? "127.0.0.1";
  let etcd: LabEtcdMember[] = [];
  if (spec.store === "etcd") {
    const started: LabEtcdMember[] = [];
    try {
      etcd = await startLabEtcd(dir, 3, (m) => void started.push(m));
    } catch (e) {
      for (const m of started) await stopPid(m.pid, dir, "SIGKILL");
      throw e;
    }
    log(`etcd: ${etcd.map((m) => `${m.name} pid ${m.pid} ${m.clientUrl}`).join(", ")} (data in ${join(dir, "etcd")})`);
  }
  const controllers: LabComponent[] = [];
  for (const cname of ctlNames) {
    const cport = await freePort();
    const cconfig = join(dir, `${cname}.yaml`);
    await writeFile(cconfig, [
      `listen: { address: ${controllerIp}, port: ${cport} }`,
      `stateDir: ${dir}/${cname}`,
      `tokenFile: ${controllerTokenFile}`,
      `agentTokenFile: ${agentTokenFile}`,
      // several controllers: a host's heartbeats may pause while the leadership changes hands (a lease of 2 s)
      `heartbeatTimeoutMs: ${spec.store === "etcd" ? 8000 : 4000}`,
      `lab: { fabric: ${spec.name} }`,
      `deadlines: { unplugMs: 15000, convergeMs: 300000, precheckMs: 2000, primaryBackMs: 20000, stepMs: 120000 }`,
      ...(certs ? [`tls: ${certs.yaml(cname)}`] : []),
      ...(spec.store === "etcd" ? [`store: ${etcdStoreUrl(etcd)}`, `election: { leaseMs: 2000, renewMs: 500 }`] : []),
      "",
    ].join("\n"), { mode: 0o600 });
    const clog = join(dir, `${cname}.log`);
    controllers.push({ name: cname, kind: "controller", pid: spawnDetached(["controller", "--config", cconfig], clog), url: `${scheme}://${controllerIp}:${cport}`, config: cconfig, log: clog });
  }
  const controller = controllers[0]!;
  const controllerUrl = controller.url;
  const alternates = controllers.slice(1).map((c) => c.url);
  const state: LabState = {
    name: spec.name, dir, netns, controller, hosts: [], agentTokenFile, controllerTokenFile, contextFile: defaultContextFile(), tls: certs ? certs.files("cli") : null, ...(plan ? { apart: apartOf(plan) } : {}),
    ...(spec.store === "etcd" ? { store: "etcd" as const, controllers, etcd } : {}), createdAt: Date.now(),
  };
  await writeLabState(state);
  for (const c of controllers) log(`${c.name}: pid ${c.pid}, ${c.url}${spec.store === "etcd" ? `, store ${etcdStoreUrl(etcd)}` : ""}`);
  const saveDir = join(dir, "saves");
  if (plan) await mkdir(saveDir, { mode: 0o700 });
  for (const host of spec.hosts) {
    const hdir = join(dir, host.name);
    const nets = spec.networks.filter((n) => (host.vfs[n] ?? 0) > 0);
    const fx = await writeSysfsFixture(join(hdir, "sys"), {
      seed: `${spec.name}/${host.name}`,
      pfs: nets.map((n, j) => ({ vendor: j % 2 === 0 ? ("intel-82599" as const) : ("mellanox-cx5" as const), numVfs: host.vfs[n]!, numaNode: j % 2 })),
    });
    const config = join(hdir, "host.yaml");
    const alog = join(hdir, "agent.log");
    const yaml = { name: host.name, tls: certs ? certs.yaml(host.name) : null, model: spec.model, forwarding: spec.forwarding, pfs: nets.map((n, j) => ({ bdf: fx.pfs[j]!.bdf, network: n })), networks: spec.networks, controllerUrl, controllerAlternates: alternates, controllerTokenFile, agentTokenFile, qemuDir: labQemuDir(spec.name) };
    const ph = plan?.hosts.find((h) => h.name === host.name);
    if (ph) {
      await writeFile(config, apartHostYaml({ ...yaml, mgmtIp: ph.mgmtIp, port: APART_AGENT_PORT, migIp: ph.migIp }), { mode: 0o600 });
      const { holderPid, unsharePid } = await startHolder({ dir, host: ph, hostDir: hdir, saveDir, log: join(hdir, "holder.log") });
      const pid = spawnInHost(holderPid, ["agent", "--config", config], alog);
      const url = `${scheme}://${ph.mgmtIp}:${APART_AGENT_PORT}`;
      state.hosts.push({ name: host.name, kind: "agent", pid, url, config, log: alog, holderPid, unsharePid, netns: ph.netns, migIp: ph.migIp });
      await writeLabState(state);
      log(`${host.name}: holder pid ${holderPid}, agent pid ${pid}, ${url}, migration ${ph.migIp}, VFs ${nets.map((n) => `${n}:${host.vfs[n]}`).join(" ") || "none"}`);
      continue;
    }
    const port = await freePort();
    await writeFile(config, sharedHostYaml({ ...yaml, dir: hdir, port, netns, saveDir, memoryDir: labMemoryDir(spec.name, host.name) }), { mode: 0o600 });
    const pid = spawnDetached(["agent", "--config", config], alog);
    state.hosts.push({ name: host.name, kind: "agent", pid, url: `${scheme}://127.0.0.1:${port}`, config, log: alog });
    await writeLabState(state);
    log(`${host.name}: agent pid ${pid}, ${scheme}://127.0.0.1:${port}, VFs ${nets.map((n) => `${n}:${host.vfs[n]}`).join(" ") || "none"}`);
  }
  await waitHttp(await labFetch(state), controllerUrl, controllerToken, "/v1/hosts", (b) => {
    const hosts = (b as { hosts?: { name: string; state: string }[] }).hosts ?? [];
    return spec.hosts.every((h) => hosts.some((x) => x.name === h.name && x.state === "up"));
  }, 60_000, "the lab's hosts");
  if (spec.store === "etcd") await waitHttp(await labFetch(state), controllerUrl, controllerToken, "/v1/controllers", (b) => (b as { members?: unknown[] }).members?.length === controllers.length && (b as { leader?: unknown }).leader != null, 30_000, "the lab's controllers (all members, one leader)");
  await mkdir(dirname(state.contextFile), { recursive: true, mode: 0o700 });
  await writeFile(state.contextFile, JSON.stringify({ controller: controllerUrl, ...(alternates.length > 0 ? { controllers: controllers.map((c) => c.url) } : {}), tokenFile: controllerTokenFile, ...(state.tls ? { tls: state.tls } : {}), lab: spec.name }, null, 2), { mode: 0o600 });
  log(`context: ${state.contextFile} (ferry commands in this shell now reach the lab's controller)`);
  return state;
}

/** Tear a lab down: processes by recorded pid (and QEMUs inside its namespaces), the namespaces and links, the dir. Harmless when already down. */
export async function labDown(name: string, log: (line: string) => void = () => undefined): Promise<{ stopped: number }> {
  const dir = labDir(name);
  const state = await readLabState(name);
  let stopped = 0;
  if (state) {
    // the etcd members last: the controllers give their leases back on the way out
    for (const c of [...state.hosts, ...labControllers(state), ...(state.etcd ?? [])]) {
      if (await ownedAlive(c.pid, dir)) {
        await stopPid(c.pid, dir, "SIGTERM");
        stopped++;
        log(`stopped ${c.name} (pid ${c.pid})`);
      }
    }
  }
  // QEMU instances: from their runtime dirs (meta.json pids), then anything left in the lab's namespace
  for (const host of await readdir(dir).catch(() => [] as string[])) {
    const run = join(dir, host, "run");
    for (const vm of await readdir(run).catch(() => [] as string[])) {
      for (const inst of await readdir(join(run, vm)).catch(() => [] as string[])) {
        const meta = await readFile(join(run, vm, inst, "meta.json"), "utf8").then((t) => JSON.parse(t) as { pid: number }, () => undefined);
        if (meta && (await ownedAlive(meta.pid, dir))) {
          await stopPid(meta.pid, dir, "SIGKILL");
          stopped++;
        }
      }
    }
    // the guest RAM files of instances the agent never stopped
    await rm(labMemoryDir(name, host), { recursive: true, force: true });
  }
  // apart hosts: every process in their namespaces (holders, QEMUs), the namespaces, the management network
  const holders = state?.hosts.flatMap((h) => (h.holderPid === undefined ? [] : [h.holderPid])) ?? [];
  stopped += (await destroyApartHosts(name, { log, marker: dir, holders })).stopped;
  const fabric = await describeFabric(name).catch(() => undefined);
  for (const pid of fabric?.pids ?? []) {
    // only QEMUs this lab started live in its namespace; check the command line all the same
    if (await ownedAlive(pid, dir)) {
      await stopPid(pid, dir, "SIGKILL");
      stopped++;
    }
  }
  const d = await destroyFabric(name);
  if (d.existed) log(`removed network namespace ${d.netns}`);
  const contextFile = state?.contextFile ?? defaultContextFile();
  const ctx = await readFile(contextFile, "utf8").then((t) => JSON.parse(t) as { lab?: string }, () => undefined);
  if (ctx?.lab === name) await rm(contextFile, { force: true });
  await rm(dir, { recursive: true, force: true });
  return { stopped };
}

export interface ComponentStatus extends LabComponent {
  alive: boolean;
  /** A controller's part, as a running controller of the lab sees it (GET /v1/controllers); absent when none answered. */
  role?: "leader" | "follower";
  term?: number;
}

export interface EtcdMemberStatus extends LabEtcdMember {
  alive: boolean;
}

/** The leadership as the first running controller that answers sees it; undefined when none answers. */
async function controllersView(state: LabState): Promise<ControllersViewT | undefined> {
  const token = (await readFile(state.controllerTokenFile, "utf8")).trim();
  const f = await labFetch(state);
  for (const c of labControllers(state)) {
    if (!(await ownedAlive(c.pid, state.dir))) continue;
    const view = await new ControllerClient({ baseUrl: c.url, token, fetch: f }).controllers({ timeoutMs: 3_000 }).catch(() => undefined);
    if (view) return view;
  }
  return undefined;
}

export async function labStatus(name: string): Promise<{ name: string; up: boolean; dir: string; netns: string | null; tls: TlsFiles | null; store: "sqlite" | "etcd"; components: ComponentStatus[]; etcd: EtcdMemberStatus[] }> {
  const state = await readLabState(name);
  if (!state) return { name, up: false, dir: labDir(name), netns: null, tls: null, store: "sqlite", components: [], etcd: [] };
  const view = await controllersView(state);
  const components: ComponentStatus[] = [];
  for (const c of labControllers(state)) {
    const alive = await ownedAlive(c.pid, state.dir);
    // a killed leader stays named until its lease runs out: a dead controller leads nothing
    const leads = alive && view?.leader?.url === c.url;
    const member = view?.members.some((m) => m.url === c.url) === true;
    components.push({ ...c, alive, ...(leads ? { role: "leader" as const, term: view.leader!.term } : alive && member ? { role: "follower" as const } : {}) });
  }
  for (const c of state.hosts) components.push({ ...c, alive: await ownedAlive(c.pid, state.dir) });
  const etcd: EtcdMemberStatus[] = [];
  for (const m of state.etcd ?? []) etcd.push({ ...m, alive: await ownedAlive(m.pid, state.dir) });
  return { name, up: true, dir: state.dir, netns: state.netns, tls: state.tls ?? null, store: state.store ?? "sqlite", components, etcd };
}

function component(state: LabState, which: string): LabComponent {
  const ctls = labControllers(state);
  const c = which === "controller" ? state.controller : [...ctls, ...state.hosts].find((h) => h.name === which);
  if (!c) throw new FerryError("FERRY_ERR_NOT_FOUND", `lab ${state.name} has no component ${which} (${[...new Set(["controller", ...ctls.map((x) => x.name)])].join(", ")}, ${state.hosts.map((h) => h.name).join(", ")})`);
  return c;
}

async function requireLab(name: string): Promise<LabState> {
  const s = await readLabState(name);
  if (!s) throw new FerryError("FERRY_ERR_STATE", `lab ${name} is not up (no ${join(labDir(name), "lab.json")}): run 'ferry lab up${name === "lab" ? "" : ` --name ${name}`}' first`);
  return s;
}

/** The running controller that leads now (asked of the controllers), with its term. */
async function currentLeader(s: LabState): Promise<{ c: LabComponent; term: number }> {
  const view = await controllersView(s);
  if (!view) throw new FerryError("FERRY_ERR_STATE", `no controller of lab ${s.name} answers, so none can be named the leader: 'ferry lab status --name ${s.name}' shows which run; kill one by name (controller-N) or start them ('ferry lab start controller --name ${s.name}')`);
  const c = labControllers(s).find((x) => x.url === view.leader?.url);
  if (!view.leader || !c || !(await ownedAlive(c.pid, s.dir))) {
    throw new FerryError("FERRY_ERR_STATE", `no running controller of lab ${s.name} leads right now (an election is in progress: it takes up to the 2 s lease): try again in a few seconds, or kill one by name (controller-N)`, { retryable: true });
  }
  return { c, term: view.leader.term };
}

/** SIGKILL a lab component by its recorded pid and wait until it is gone; `controller` with several controllers: the one that leads now. */
export async function labKillDetail(name: string, which: string): Promise<{ name: string; pid: number; term?: number }> {
  const s = await requireLab(name);
  const lead = which === "controller" && s.controllers ? await currentLeader(s) : undefined;
  const c = lead?.c ?? component(s, which);
  if (!(await ownedAlive(c.pid, s.dir))) throw new FerryError("FERRY_ERR_STATE", `${c.name} (pid ${c.pid}) is not running: nothing to kill; 'ferry lab start ${c.name} --name ${s.name}' starts it again`);
  // returns once it is gone (a `lab start` right after must not find it still running)
  await stopPid(c.pid, s.dir, "SIGKILL");
  return { name: c.name, pid: c.pid, ...(lead ? { term: lead.term } : {}) };
}

/** SIGKILL a lab component by its recorded pid (`controller`: the leader); its pid. */
export async function labKill(name: string, which: string): Promise<number> {
  return (await labKillDetail(name, which)).pid;
}

/** Start a lab component again with its recorded config; `controller` with several controllers: every one that is not running. */
export async function labStart(name: string, which: string): Promise<number> {
  const s = await requireLab(name);
  if (which === "controller" && s.controllers) {
    const down: LabComponent[] = [];
    for (const c of s.controllers) if (!(await ownedAlive(c.pid, s.dir))) down.push(c);
    if (down.length === 0) throw new FerryError("FERRY_ERR_STATE", `every controller of lab ${s.name} runs already: nothing to start ('ferry lab status --name ${s.name}' shows them)`);
    let pid = 0;
    for (const c of down) pid = await startComponent(s, c);
    return pid;
  }
  return startComponent(s, component(s, which));
}

async function startComponent(s: LabState, c: LabComponent): Promise<number> {
  if (await ownedAlive(c.pid, s.dir)) throw new FerryError("FERRY_ERR_STATE", `${c.name} already runs (pid ${c.pid}): to restart it, 'ferry lab kill ${c.name} --name ${s.name}' first`);
  if (c.holderPid !== undefined && !(await ownedAlive(c.holderPid, s.dir))) throw new FerryError("FERRY_ERR_STATE", `the holder of ${c.name}'s namespaces (pid ${c.holderPid}) is gone: run 'ferry lab down' and up again`);
  c.pid = c.holderPid === undefined ? spawnDetached([c.kind, "--config", c.config], c.log) : spawnInHost(c.holderPid, [c.kind, "--config", c.config], c.log);
  await writeLabState(s);
  const token = (await readFile(c.kind === "controller" ? s.controllerTokenFile : s.agentTokenFile, "utf8")).trim();
  await waitHttp(await labFetch(s), c.url, token, c.kind === "controller" ? "/v1/hosts" : "/v1/health", () => true, 30_000, c.name);
  return c.pid;
}

/** Arm a fault switch on a lab host's agent. */
export async function labFault(name: string, host: string, fault: string, once: boolean): Promise<unknown> {
  const s = await requireLab(name);
  const c = component(s, host);
  if (c.kind !== "agent") throw new FerryError("FERRY_ERR_INVALID", "fault switches are armed on hosts, not on the controller");
  const token = (await readFile(s.agentTokenFile, "utf8")).trim();
  const f = await labFetch(s);
  const r = await f(`${c.url}/v1/faults`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ name: fault, once }), signal: AbortSignal.timeout(5_000) });
  const body: unknown = await r.json();
  if (!r.ok) throw new FerryError("FERRY_ERR_INVALID", `${host} refused fault ${fault}: ${JSON.stringify(body)}`);
  return body;
}
