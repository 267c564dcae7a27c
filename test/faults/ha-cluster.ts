// The HA test cluster: the fault tests' cluster (FaultCluster: lab agents
// behind proxies, no-OS guests) with three etcd members (EtcdCluster, by pid)
// and three `ferry controller` processes on that etcd, one elected. The
// agents heartbeat to controller 0, and the test's API client talks to it:
// a follower forwards writes to the leader. killController() SIGKILLs the
// current leader (whichever it is) and measures the takeover: from the kill
// until a surviving controller names another leader; startController()
// starts every controller that is not running (a supervisor's restart).
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ControllerClient } from "../../src/api/client.ts";
import { systemClock } from "../../src/core/clock.ts";
import { EtcdCluster } from "../../src/store/testing/etcd-cluster.ts";
import type { MigrationRecord } from "../../src/migration/types.ts";
import type { ControllersViewT } from "../../src/wire/controllers.ts";
import type { Proc } from "../e2e/cluster.ts";
import { freePort } from "../../src/core/ports.ts";
import { kill, spawnFerry } from "../e2e/cluster.ts";
import { ended, FaultCluster, tail, waitFor } from "./cluster.ts";

export const LEASE_MS = 2_000;

export interface HaController {
  i: number;
  config: string;
  log: string;
  url: string;
  proc: Proc | null;
  api: ControllerClient;
}

const running = (p: Proc | null): p is Proc => p !== null && p.child.exitCode === null && p.child.signalCode === null;

export class HaCluster extends FaultCluster {
  etcd!: EtcdCluster;
  readonly ctls: HaController[] = [];
  /** Takeover times (ms) of every killController(). */
  readonly takeovers: number[] = [];

  static async startHa(o: { hosts: { name: string; vfs: number }[]; deadlines: string }): Promise<HaCluster> {
    const c = new HaCluster();
    c.etcd = await EtcdCluster.start({ members: 3 });
    try {
      await c.setUp({
        hosts: o.hosts.map((h) => ({ name: h.name, uplinks: [{ network: "physnet1", numVfs: h.vfs }] })),
        // shared layout: the three controllers listen on 127.0.0.1 (giving each its own address on the
        // management network of apart hosts is still to do)
        prefix: "fha-", heartbeatTimeoutMs: 8000, deadlines: o.deadlines, heartbeatMs: 500, lab: true, proxies: true, waitUp: true, apart: false,
      });
    } catch (e) {
      await c.close().catch(() => undefined);
      throw e;
    }
    return c;
  }

  async #configure(): Promise<void> {
    const base = await readFile(join(this.base, "controller.yaml"), "utf8");
    const token = (await readFile(join(this.base, "controller-token"), "utf8")).trim();
    for (let i = 0; i < 3; i++) {
      const port = i === 0 ? Number(/port: (\d+)/.exec(base)![1]) : await freePort();
      const config = join(this.base, `controller-${i}.yaml`);
      await writeFile(config, [
        base.replace(/port: \d+/, `port: ${port}`).replace("stateDir: cstate", `stateDir: cstate-${i}`).trimEnd(),
        `store: ${this.etcd.storeUrl}`,
        `election: { leaseMs: ${LEASE_MS}, renewMs: 500 }`,
        ``,
      ].join("\n"));
      const url = `http://127.0.0.1:${port}`;
      this.ctls.push({ i, config, log: join(this.base, `controller-${i}.log`), url, proc: null, api: new ControllerClient({ baseUrl: url, token }) });
    }
  }

  /** Start every controller not running; the first time controller 1 first, so that the agents' controller (0) starts as a follower. */
  override async startController(): Promise<void> {
    const first = this.ctls.length === 0;
    if (first) await this.#configure();
    for (const c of first ? [this.ctls[1]!, this.ctls[0]!, this.ctls[2]!] : this.ctls) {
      if (running(c.proc)) continue;
      c.proc = await spawnFerry(["controller", "--config", c.config], c.log);
      if (first && c.i === 1) await waitFor("controller 1 elected", async () => ((await c.api.controllers()).leader?.url === c.url ? true : undefined), 20_000);
    }
    const c0 = this.ctls[0]!;
    this.controller = c0.proc;
    this.api = c0.api;
    this.env = { ...process.env, FERRY_CONTROLLER: c0.url, FERRY_TOKEN_FILE: join(this.base, "controller-token"), FERRY_CONTEXT: join(this.base, "no-context.json") };
  }

  /**
   * A migration's end as any running controller answers it: the one the test
   * started it on may have exited meanwhile (a leader that cannot renew its
   * lease — etcd re-electing its own leader under load — stops, by design).
   */
  override async waitDone(id: string, timeoutMs = 120_000): Promise<MigrationRecord> {
    return waitFor(`migration ${id} done`, async () => {
      for (const c of this.ctls.filter((x) => running(x.proc))) {
        const r = await c.api.migration(id, { timeoutMs: 3_000 }).catch(() => undefined);
        if (r !== undefined) return ended(r) ? r : undefined;
      }
      return undefined;
    }, timeoutMs, 150);
  }

  override async controllerLogs(last: number): Promise<string> {
    const state = (p: Proc | null): string => (p === null ? " (not started)" : p.child.exitCode === null && p.child.signalCode === null ? "" : ` (exited: ${String(p.child.exitCode ?? p.child.signalCode)})`);
    return (await Promise.all(this.ctls.map((c) => tail(`controller ${c.i}${state(c.proc)}`, c.log, last)))).join("\n");
  }

  /** The leadership as a running controller sees it (the first that answers). */
  async view(skip?: string): Promise<ControllersViewT> {
    let last: unknown;
    for (const c of this.ctls) {
      if (c.url === skip) continue;
      if (!running(c.proc)) continue;
      try {
        return await c.api.controllers({ timeoutMs: 3_000 });
      } catch (e) {
        last = e;
      }
    }
    throw last instanceof Error ? last : new Error("no controller running");
  }

  async leader(): Promise<HaController & { term: number }> {
    return waitFor("a leader", async () => {
      const l = (await this.view()).leader;
      const c = this.ctls.find((x) => x.url === l?.url);
      return l && c && running(c.proc) ? { ...c, term: l.term } : undefined;
    }, 30_000, 100);
  }

  /** Wait until a running controller other than `notUrl` leads (a stopped one may still be named until its lease runs out). */
  async waitLeader(notUrl: string): Promise<HaController & { term: number }> {
    return waitFor(`a leader other than ${notUrl}`, async () => {
      const l = (await this.view(notUrl)).leader;
      const c = this.ctls.find((x) => x.url === l?.url);
      return l && c && c.url !== notUrl && running(c.proc) ? { ...c, term: l.term } : undefined;
    }, 30_000, 50);
  }

  /** While controller 0 (the agents' and the test's) leads: stop it (SIGTERM: it gives its lease back), wait for another leader, start it again as a follower. */
  async leaderNotFront(): Promise<void> {
    const l = await this.leader();
    if (l.i !== 0) return;
    await kill(l.proc!, "SIGTERM");
    await this.waitLeader(l.url);
    await this.startController();
  }

  /** SIGKILL the leader; resolves once a surviving controller names another (the takeover, timed). */
  override async killController(): Promise<void> {
    const l = await this.leader();
    const t0 = systemClock.monotonic();
    await kill(l.proc!, "SIGKILL");
    await this.waitLeader(l.url);
    this.takeovers.push(systemClock.monotonic() - t0);
  }

  override async close(): Promise<void> {
    for (const c of this.ctls) if (c.proc && c !== this.ctls[0]) await kill(c.proc, "SIGKILL");
    this.controller = this.ctls[0]?.proc ?? this.controller;
    await super.close();
    await this.etcd?.close();
  }
}
