// Controller configuration: one YAML file. Parsing is pure (loadControllerConfig
// only reads the file); every error names the line and the field; unknown keys
// are errors.
//
//   listen: { address: 127.0.0.1, port: 7600 }   # defaults
//   stateDir: /var/lib/ferry-controller           # controller.db (SQLite, WAL, 0600) lives here
//   tokenFile: /etc/ferry/controller-token        # the controller API's bearer token (default <stateDir>/token; created 0600 if absent)
//   agentTokenFile: /etc/ferry/agent-token        # the cluster's agent token (required): the controller calls every agent with it
//   heartbeatTimeoutMs: 6000                      # a host that misses heartbeats this long is down
//   hostCapacity: { memoryMiB: 16384, vcpus: 16 } # per host, until agents report theirs
//   lab: { fabric: NAME }                         # lab only: probe guests from that fabric's peer during migrations, and
//                                                 # after, until each NIC answers steadily: settleMs (5000, at least 5000),
//                                                 # settleDeadlineMs past the end (60000), outageMs (100: a longer gap is an outage)
//   tls: { cert: tls/ctl.crt, key: tls/ctl.key, ca: tls/ca.crt }  # optional mutual TLS ('ferry ca'): HTTPS with client
//                                                 # certificates required; the agents are called over HTTPS with this cert
//   store: etcd://10.0.0.1:2379,10.0.0.2:2379       # default sqlite (controller.db in stateDir); etcd for several
//                                                 # controllers, with tls and auth options: see store-config.ts
//   election: { leaseMs: 2000, renewMs: 500, advertiseUrl: https://10.0.0.1:7600 }  # etcd store only: the leader's
//                                                 # lease (whole seconds; a takeover comes this long after the leader
//                                                 # dies), how often it is renewed (default a quarter of the lease,
//                                                 # at most half), the URL other controllers forward writes to
//                                                 # (default from listen:, required when listening on 0.0.0.0 or ::)
//   deadlines: { unplugMs: 15000, convergeMs: 300000, precheckMs: 2000, primaryBackMs: 30000, stepMs: 120000 }
//   plan: { bandwidthMiBps: 1000 }                # 'ferry migrate --plan' predicts with this migration-link bandwidth
//                                                 # between two hosts that have no completed migration to measure it by
//
// Relative paths are resolved against the config file's directory.
import { isIP } from "node:net";
import { join } from "node:path";
import { invalid } from "../core/errors.ts";
import type { TlsFiles } from "../core/tls.ts";
import type { Deadlines } from "../migration/types.ts";
import * as v from "../model/validate.ts";
import type { StoreConfig } from "../store/backend.ts";
import { parseStoreConfig } from "./store-config.ts";
import { parseTls, parseYamlConfig, readConfigFile } from "../model/yaml-config.ts";

export interface ControllerConfig {
  listen: { address: string; port: number };
  stateDir: string;
  tokenFile: string;
  agentTokenFile: string;
  heartbeatTimeoutMs: number;
  hostCapacity: { memoryMiB: number; vcpus: number };
  deadlines: Deadlines;
  /** Lab only: the fabric whose peer probes guests during migrations. */
  lab: { fabric: string; settleMs: number; settleDeadlineMs: number; outageMs: number } | null;
  /** Mutual TLS for the controller API and for its calls to the agents; null: plain HTTP (the token still required). */
  tls: TlsFiles | null;
  /** Where the state lives: SQLite in stateDir (default) or etcd. */
  store: StoreConfig;
  /** With an etcd store: the leader election's lease and renew period, and this controller's URL for the others (null: from listen). */
  election: { leaseMs: number; renewMs: number; advertiseUrl: string | null };
  /** A migration plan's prediction: the link bandwidth assumed between hosts with no completed migration to measure it by (MiB/s). */
  plan: { bandwidthMiBps: number };
}

export const DEFAULT_PLAN_BANDWIDTH_MIBPS = 1000;

export const DEFAULT_CONTROLLER_PORT = 7600;
export const DB_FILE_NAME = "controller.db";
/** The leader's etcd lease: a takeover comes about this long after the leader dies. */
export const DEFAULT_LEASE_MS = 2_000;
export const DEFAULT_DEADLINES: Deadlines = { unplugMs: 15_000, convergeMs: 300_000, precheckMs: 2_000, primaryBackMs: 30_000, stepMs: 120_000 };
/** How often agents are asked to heartbeat, at most. */
export const HEARTBEAT_INTERVAL_MS = 2_000;

/**
 * The interval the controller asks agents to heartbeat at: 2 s, or a third of
 * the heartbeat timeout when that is shorter, so that a host is deemed down
 * only after three beats in a row went missing. (A fixed 2 s against a 2.5 s
 * timeout made a host "down" whenever one beat took 0.5 s longer: a migration
 * refused with HOST_DOWN on a loaded machine.)
 */
export function heartbeatIntervalMs(heartbeatTimeoutMs: number): number {
  return Math.max(100, Math.min(HEARTBEAT_INTERVAL_MS, Math.floor(heartbeatTimeoutMs / 3)));
}

export function parseControllerConfig(text: string, options: { source?: string; baseDir?: string } = {}): ControllerConfig {
  const { raw, c } = parseYamlConfig(text, options.source ?? "controller config", options.baseDir);
  const o = c.obj([], raw ?? {}, ["listen", "stateDir", "tokenFile", "agentTokenFile", "heartbeatTimeoutMs", "hostCapacity", "deadlines", "lab", "tls", "store", "election", "plan"]);

  const listenRaw = o["listen"] === undefined ? {} : c.obj(["listen"], o["listen"], ["address", "port"]);
  const address = c.check(["listen", "address"], (f) => {
    const s = v.str(f, listenRaw["address"] ?? "127.0.0.1");
    if (isIP(s) === 0) throw invalid(f, s, "not an IP address");
    return s;
  });
  const port = c.int(["listen", "port"], listenRaw["port"], DEFAULT_CONTROLLER_PORT, 0, 65535);
  if (o["stateDir"] === undefined) throw c.error(["stateDir"], "required");
  const stateDir = c.path(["stateDir"], o["stateDir"]);
  if (o["agentTokenFile"] === undefined) throw c.error(["agentTokenFile"], "required (the cluster's agent token: the controller calls every agent with it)");
  const agentTokenFile = c.path(["agentTokenFile"], o["agentTokenFile"]);
  const tokenFile = o["tokenFile"] === undefined ? join(stateDir, "token") : c.path(["tokenFile"], o["tokenFile"]);
  const heartbeatTimeoutMs = c.int(["heartbeatTimeoutMs"], o["heartbeatTimeoutMs"], 6_000, 500, 3_600_000);

  const capRaw = o["hostCapacity"] === undefined ? {} : c.obj(["hostCapacity"], o["hostCapacity"], ["memoryMiB", "vcpus"]);
  const hostCapacity = {
    memoryMiB: c.int(["hostCapacity", "memoryMiB"], capRaw["memoryMiB"], 16_384, 64, 1 << 30),
    vcpus: c.int(["hostCapacity", "vcpus"], capRaw["vcpus"], 16, 1, 4096),
  };

  const keys = Object.keys(DEFAULT_DEADLINES) as (keyof Deadlines)[];
  const dRaw = o["deadlines"] === undefined ? {} : c.obj(["deadlines"], o["deadlines"], keys);
  const deadlines = { ...DEFAULT_DEADLINES };
  for (const k of keys) deadlines[k] = c.int(["deadlines", k], dRaw[k], DEFAULT_DEADLINES[k], 1, 24 * 3_600_000);

  const labRaw = o["lab"] === undefined ? undefined : c.obj(["lab"], o["lab"], ["fabric", "settleMs", "settleDeadlineMs", "outageMs"]);
  let lab: ControllerConfig["lab"] = null;
  if (labRaw !== undefined) {
    const settleMs = c.int(["lab", "settleMs"], labRaw["settleMs"], 5_000, 5_000, 600_000);
    const settleDeadlineMs = c.int(["lab", "settleDeadlineMs"], labRaw["settleDeadlineMs"], Math.max(60_000, settleMs), 1, 3_600_000);
    if (settleDeadlineMs < settleMs) throw c.error(["lab", "settleDeadlineMs"], `must be at least settleMs (${settleMs}): the deadline counts from the migration's end and the window must fit in it`);
    const outageMs = c.int(["lab", "outageMs"], labRaw["outageMs"], 100, 20, 60_000);
    lab = { fabric: c.check(["lab", "fabric"], (f) => v.name(f, labRaw["fabric"])), settleMs, settleDeadlineMs, outageMs };
  }
  const tls = o["tls"] === undefined ? null : parseTls(c, ["tls"], o["tls"]);
  const store = parseStoreConfig(c, ["store"], o["store"]);
  const eRaw = o["election"] === undefined ? {} : c.obj(["election"], o["election"], ["leaseMs", "renewMs", "advertiseUrl"]);
  const leaseMs = c.int(["election", "leaseMs"], eRaw["leaseMs"], DEFAULT_LEASE_MS, 1_000, 60_000);
  if (leaseMs % 1000 !== 0) throw c.error(["election", "leaseMs"], "must be whole seconds (a multiple of 1000): etcd leases count seconds");
  const renewMs = c.int(["election", "renewMs"], eRaw["renewMs"], Math.floor(leaseMs / 4), 50, Math.floor(leaseMs / 2));
  const advertiseUrl = eRaw["advertiseUrl"] === undefined ? null : c.check(["election", "advertiseUrl"], (f) => {
    const u = v.str(f, eRaw["advertiseUrl"]);
    if (!/^https?:\/\/[A-Za-z0-9.\-[\]:]+:\d{1,5}\/?$/.test(u)) throw invalid(f, u, "must be http(s)://host:port, where the other controllers reach this one's API");
    return u.replace(/\/$/, "");
  });
  const pRaw = o["plan"] === undefined ? {} : c.obj(["plan"], o["plan"], ["bandwidthMiBps"]);
  const plan = { bandwidthMiBps: c.int(["plan", "bandwidthMiBps"], pRaw["bandwidthMiBps"], DEFAULT_PLAN_BANDWIDTH_MIBPS, 1, 1 << 20) };
  return { listen: { address, port }, stateDir, tokenFile, agentTokenFile, heartbeatTimeoutMs, hostCapacity, deadlines, lab, tls, store, election: { leaseMs, renewMs, advertiseUrl }, plan };
}

export async function loadControllerConfig(file: string, signal?: AbortSignal): Promise<ControllerConfig> {
  const { text, source } = await readConfigFile(file, signal);
  return parseControllerConfig(text, { source });
}

export function dbFile(config: ControllerConfig): string {
  return join(config.stateDir, DB_FILE_NAME);
}
