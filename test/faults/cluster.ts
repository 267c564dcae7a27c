// The fault tests' cluster: the shared TestCluster (../e2e/cluster.ts) with
// `ferry controller` and lab `ferry agent`s as real processes, each host
// apart (its own namespaces, migrating over TLS on a migration network),
// each agent reached through a TCP proxy of this process in both directions
// (controller → agent: the agent advertises the proxy's URL; agent →
// controller: its heartbeats go through another proxy), so a test can cut the
// controller↔agent connection and restore it. Processes are killed by pid and
// restarted on the same config; QEMU processes are found through the agents
// and killed by pid. `check()` compares the store with the hosts' real state
// (DESIGN invariants 1–3, and 4 where the guest prints a heartbeat).
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Type } from "typebox";
import type { InstanceViewT } from "../../src/wire/agent-api.ts";
import type { MigrationRecord } from "../../src/migration/types.ts";
import { guestMemsum } from "../../src/lab/memcheck.ts";
import { lastHeartbeat, readConsole, waitForHeartbeat } from "../../src/qemu/console.ts";
import { qemuPidsOf } from "./observe.ts";
import { alive, TestCluster, waitFor } from "../e2e/cluster.ts";

const FaultView = Type.Object({
  enabled: Type.Boolean(),
  armed: Type.Array(Type.Object({ name: Type.String() }, { additionalProperties: true })),
  holding: Type.Array(Type.Object({ step: Type.String(), migrationId: Type.String() }, { additionalProperties: true })),
});

export interface ClusterOptions {
  hosts: { name: string; vfs: number }[];
  /** Controller deadlines (defaults: generous, for a loaded 2-core machine). */
  deadlines?: string;
  heartbeatTimeoutMs?: number;
  /**
   * Wire the guests' NICs to a real bridge: a lab fabric (src/lab/fabric.ts)
   * of this cluster's own, in a ferry-t-<…> namespace, whose peer can ping
   * the real test guest (FaultCluster.fabric).
   */
  fabric?: boolean;
  /** Keep the controller's requests to each agent (agent.inbound.requests()), to replay them. */
  record?: boolean;
  /** false: every agent in this process's namespaces on 127.0.0.1 (TestClusterOptions.apart). */
  apart?: boolean;
}

export { alive, waitFor };

/** Hosts with one physnet1 uplink each, lab agents behind proxies heartbeating every 500 ms; start() waits until every host is up. */
export class FaultCluster extends TestCluster {
  /** An instance's serial log as this process reads it (through its host's namespaces). */
  async serialLogOf(host: string, instanceId: string): Promise<string> {
    return this.hostPath(host, (await this.agent(host).client.instance(instanceId)).serialLog);
  }

  /** Whether the instance took its guest in by migration, save or restore (it never booted it). */
  async arrivedByMigration(host: string, instanceId: string): Promise<boolean> {
    return (await this.agent(host).client.instance(instanceId)).incoming;
  }

  /** Memory checks `check()` made (a real guest's checksum against its boot one), and how many differed. */
  readonly memchecks = { compared: 0, mismatched: 0 };

  static async start(o: ClusterOptions): Promise<FaultCluster> {
    const c = new FaultCluster();
    await c.setUp({
      hosts: o.hosts.map((h) => ({ name: h.name, uplinks: [{ network: "physnet1", numVfs: h.vfs }] })),
      prefix: "ff-",
      heartbeatTimeoutMs: o.heartbeatTimeoutMs ?? 4000,
      deadlines: o.deadlines ?? "{ unplugMs: 10000, convergeMs: 60000, precheckMs: 2000, primaryBackMs: 20000, stepMs: 30000 }",
      heartbeatMs: 500,
      lab: true,
      proxies: true,
      record: o.record === true,
      fabric: o.fabric === true,
      waitUp: true,
      ...(o.apart === undefined ? {} : { apart: o.apart }),
    });
    return c;
  }

  // ---- lab fault switches

  async arm(host: string, name: string, o: { once?: boolean; holdMs?: number } = {}): Promise<void> {
    await this.agent(host).client.request("POST", "/v1/faults", FaultView, { name, once: o.once ?? true, ...(o.holdMs === undefined ? {} : { holdMs: o.holdMs }) });
  }

  /** Disarm every switch on a live host and release its holds. */
  async clearFaults(host: string): Promise<void> {
    await this.agent(host).client.request("DELETE", "/v1/faults", FaultView);
  }

  async waitHolding(host: string, step: string, migrationId: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(`${host} holding at ${step} for ${migrationId}`, async () => {
      const v = await this.agent(host).client.request("GET", "/v1/faults", FaultView);
      return v.holding.some((h) => h.step === step && h.migrationId === migrationId) ? true : undefined;
    }, timeoutMs, 50);
  }

  // ---- QEMU processes

  /** Every QEMU instance of a VM on every host (as the agents see them). */
  async instancesOf(vmUuid: string): Promise<(InstanceViewT & { host: string })[]> {
    const out: (InstanceViewT & { host: string })[] = [];
    for (const a of this.agents.values()) {
      for (const i of (await a.client.instances()).instances) if (i.vmUuid === vmUuid) out.push({ ...i, host: a.name });
    }
    return out;
  }

  async killQemu(host: string, instanceId: string): Promise<void> {
    const i = await this.agent(host).client.instance(instanceId);
    process.kill(i.pid, "SIGKILL");
    await waitFor(`QEMU ${i.pid} gone`, () => Promise.resolve(alive(i.pid) ? undefined : true), 10_000, 20);
  }

  /** SIGSTOP a QEMU by pid; it stays stopped until contQemu. */
  async stopQemu(host: string, instanceId: string): Promise<number> {
    const i = await this.agent(host).client.instance(instanceId);
    process.kill(i.pid, "SIGSTOP");
    await waitFor(`QEMU ${i.pid} stopped`, async () => ((await readFile(`/proc/${i.pid}/stat`, "latin1")).match(/\) T /) ? true : undefined), 5_000, 20);
    return i.pid;
  }

  contQemu(pid: number): void {
    if (alive(pid)) process.kill(pid, "SIGCONT");
  }

  /**
   * Wait until the cluster is healthy — every agent process alive and
   * answering, the controller answering and seeing every host up, no
   * migration in flight, no fault switch holding — or fail saying what is
   * not (a point must never start on a cluster a previous one broke).
   */
  async waitHealthy(timeoutMs = 60_000): Promise<void> {
    let why = "";
    try {
      await waitFor("a healthy cluster", async () => {
        const bad: string[] = [];
        for (const a of this.agents.values()) {
          if (a.proc.child.exitCode !== null || a.proc.child.signalCode !== null) bad.push(`${a.name}: agent process exited (${String(a.proc.child.exitCode ?? a.proc.child.signalCode)})`);
          else {
            const f = await a.client.request("GET", "/v1/faults", FaultView).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
            if (f instanceof Error) bad.push(`${a.name}: agent does not answer (${f.message})`);
            else if (f.holding.length > 0) bad.push(`${a.name}: still holding ${f.holding.map((h) => `${h.step}/${h.migrationId}`).join(", ")}`);
          }
        }
        if (this.controller === null || this.controller.child.exitCode !== null || this.controller.child.signalCode !== null) bad.push("controller process exited");
        else {
          const hosts = await this.api.hosts().catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
          if (hosts instanceof Error) bad.push(`controller does not answer (${hosts.message})`);
          else {
            for (const name of this.agents.keys()) {
              const h = hosts.find((x) => x.name === name);
              if (h?.state !== "up") bad.push(`controller sees ${name} ${h?.state ?? "unregistered"}`);
            }
            const busy = (await this.api.migrations()).filter((m) => m.phase !== "done");
            if (busy.length > 0) bad.push(`migrations in flight: ${busy.map((m) => `${m.id} (${m.phase})`).join(", ")}`);
          }
        }
        why = bad.join("; ");
        return bad.length === 0 ? true : undefined;
      }, timeoutMs, 250);
    } catch {
      throw new Error(`the cluster did not become healthy within ${timeoutMs / 1000} s: ${why}. A previous point left it broken; start the matrix again (FERRY_MATRIX_ONLY= selects points).\n${await this.agentLogs({ last: 8 })}\n${await this.controllerLogs(12)}`);
    }
  }

  /**
   * Every agent's log as a failure message quotes it: the lines that mention
   * `mentioning` (a migration id; an agent restarted on its config appends
   * to the same log), else the last `last` lines.
   */
  /** The controllers' logs' last lines, as a failure message quotes them (one controller here; HaCluster has three). */
  async controllerLogs(last: number): Promise<string> {
    return tail("controller", join(this.base, "controller.log"), last);
  }

  async agentLogs(o: { mentioning?: string; last?: number }): Promise<string> {
    const parts = await Promise.all([...this.agents.values()].map(async (a) => {
      const lines = (await readFile(a.log, "utf8").catch(() => "")).split("\n");
      const picked = o.mentioning === undefined ? lines.slice(-(o.last ?? 8)) : lines.filter((l) => l.includes(o.mentioning!) || /"agent ready"|reconnected to instance/.test(l)).slice(-(o.last ?? 40));
      return `--- ${a.name} agent log (${o.mentioning === undefined ? "last lines" : `lines about ${o.mentioning}, and its starts`}):\n${picked.join("\n")}`;
    }));
    return parts.join("\n");
  }

  async waitDone(id: string, timeoutMs = 120_000): Promise<MigrationRecord> {
    return waitFor(`migration ${id} done`, async () => {
      const r = await this.api.migration(id);
      return ended(r) ? r : undefined;
    }, timeoutMs, 150);
  }

  // ---- the invariants

  /**
   * DESIGN invariants against the hosts' real state, after a migration of
   * `vm` ended: the guest runs in exactly one instance — the one the store
   * names (the migration's runsOn and the VM record) — or, when `down` (the
   * only running QEMU was killed), in none and the store says so; no instance
   * of the VM is left over; every lease on every host belongs to a running
   * instance and the VM's leases are the VFs its record names; the migration
   * has a terminal outcome (rec null: the request was refused). With `heartbeatAfter`, the guest's heartbeat
   * counter continues past it; with `bootSum`, the guest's memory checksum
   * (asked on its console) is still the one it printed at boot (guest memory
   * kept; counted in `memchecks`). Returns the violations.
   */
  /**
   * check() after migration `id` ended, asked again every 500 ms until it
   * finds nothing or `timeoutMs` passed (an agent reaps a dead QEMU on its own
   * tick); returns the last violations.
   */
  async checkSettled(vm: { name: string; uuid: string }, id: string, o: { down?: boolean; heartbeatAfter?: number; bootSum?: string } = {}, timeoutMs = 25_000): Promise<string[]> {
    let v: string[] = [];
    await waitFor("invariants", async () => {
      v = await this.check(vm, await this.api.migration(id), o);
      return v.length === 0 ? true : undefined;
    }, timeoutMs, 500).catch(() => undefined);
    return v;
  }

  async check(vm: { name: string; uuid: string }, rec: MigrationRecord | null, o: { down?: boolean; heartbeatAfter?: number; bootSum?: string } = {}): Promise<string[]> {
    const v: string[] = [];
    if (rec && (rec.phase !== "done" || rec.outcome === null)) v.push(`migration ${rec.id} not terminal (${rec.phase})`);
    const procs = await qemuPidsOf(vm.uuid);
    const want = o.down === true ? 0 : 1;
    if (procs.length !== want) v.push(`${procs.length} QEMU processes of the VM in /proc (pids ${procs.map((p) => p.pid).join(", ") || "none"}), expected ${want}`);
    for (const p of procs.filter((x) => x.state === "T")) v.push(`QEMU ${p.pid} is left stopped (SIGSTOP)`);
    const insts = await this.instancesOf(vm.uuid);
    const running = insts.filter((i) => i.running);
    const stray = insts.filter((i) => !i.running);
    if (stray.length > 0) v.push(`left-over instances: ${stray.map((i) => `${i.host}/${i.instanceId} (${i.state})`).join(", ")}`);
    const record = await this.api.vm(vm.name);
    if (o.down === true) {
      if (running.length > 0) v.push(`guest should be down, runs in ${running.map((i) => `${i.host}/${i.instanceId}`).join(", ")}`);
      // a migration that had done its work when the QEMU died (Finish, Confirm) rightly names the destination; the VM record must say down
      const done = rec?.outcome === "succeeded" || rec?.outcome === "degraded" || rec?.outcome === "recovered";
      if (rec && rec.runsOn !== null && !done) v.push(`migration says it runs on ${rec.runsOn.host}/${rec.runsOn.instanceId}, but it is down`);
      if (record.state === "running" || record.instanceId !== null) v.push(`VM record says ${record.state} on ${record.host}/${String(record.instanceId)}, but it is down`);
    } else {
      if (running.length !== 1) v.push(`guest runs in ${running.length} instances: ${running.map((i) => `${i.host}/${i.instanceId}`).join(", ") || "none"}`);
      const r = running[0];
      if (r) {
        if (rec && (rec.runsOn?.host !== r.host || rec.runsOn.instanceId !== r.instanceId)) v.push(`migration says runsOn ${JSON.stringify(rec.runsOn)}, it runs on ${r.host}/${r.instanceId}`);
        if (record.state !== "running" || record.host !== r.host || record.instanceId !== r.instanceId) v.push(`VM record says ${record.state} on ${record.host}/${String(record.instanceId)}, it runs on ${r.host}/${r.instanceId}`);
        const leased = (await this.agent(r.host).client.leases()).leases.filter((l) => l.holder.kind === "instance" && l.holder.instanceId === r.instanceId).map((l) => l.vf).sort();
        // a VF that did not come back after the switch-over stays leased to the instance (steps.ts finish), unnamed by the record
        const named = record.nics.map((n) => n.vf).filter((x): x is string => x !== null).sort();
        if (!named.every((x) => leased.includes(x))) v.push(`VM record names VFs ${JSON.stringify(named)}, its instance holds ${JSON.stringify(leased)}`);
        const serialLog = this.hostPath(r.host, r.serialLog);
        if (o.heartbeatAfter !== undefined) {
          const hb = await waitForHeartbeat(serialLog, o.heartbeatAfter, { timeoutMs: 30_000 }).catch(() => undefined);
          if (hb === undefined) v.push(`heartbeat did not continue past ${o.heartbeatAfter} (last: ${String(lastHeartbeat(await readConsole(serialLog)))})`);
        }
        if (o.bootSum !== undefined) {
          const now = await guestMemsum({ serialLog }, { timeoutMs: 30_000 }).catch((e: unknown) => `not answered (${e instanceof Error ? e.message : String(e)})`);
          this.memchecks.compared++;
          if (now !== o.bootSum) {
            this.memchecks.mismatched++;
            v.push(`guest memory checksum ${now}, it printed ${o.bootSum} at boot`);
          }
        }
      }
    }
    v.push(...(await this.leaseViolations()));
    return v;
  }

  /**
   * The store against the hosts, for every VM: a VM recorded running runs in
   * exactly that instance (QMP says running) and holds the VFs its record
   * names; a VM recorded otherwise runs nowhere; no instance of it is left
   * over; with `rec`, the migration is terminal and names where the VM runs
   * (or nothing when it is down); every lease belongs to a running instance.
   */
  async checkStore(rec: MigrationRecord | null): Promise<string[]> {
    const v: string[] = [];
    for (const vm of await this.api.vms()) {
      const insts = await this.instancesOf(vm.uuid);
      const running = insts.filter((i) => i.running);
      for (const i of insts.filter((x) => !x.running)) v.push(`${vm.name}: left-over instance ${i.host}/${i.instanceId} (${i.state})`);
      if (vm.state === "running") {
        const r = running[0];
        if (running.length !== 1 || !r || r.host !== vm.host || r.instanceId !== vm.instanceId) {
          v.push(`${vm.name}: recorded running on ${vm.host}/${String(vm.instanceId)}, runs in ${running.map((i) => `${i.host}/${i.instanceId}`).join(", ") || "nothing"}`);
        } else {
          const leased = (await this.agent(r.host).client.leases()).leases.filter((l) => l.holder.kind === "instance" && l.holder.instanceId === r.instanceId).map((l) => l.vf);
          const named = vm.nics.map((n) => n.vf).filter((x): x is string => x !== null);
          if (!named.every((x) => leased.includes(x))) v.push(`${vm.name}: record names VFs ${JSON.stringify(named)}, its instance holds ${JSON.stringify(leased)}`);
        }
      } else if (running.length > 0) {
        v.push(`${vm.name}: recorded ${vm.state}, runs in ${running.map((i) => `${i.host}/${i.instanceId}`).join(", ")}`);
      }
      if (rec && rec.plan.vm.uuid === vm.uuid) {
        if (rec.phase !== "done" || rec.outcome === null) v.push(`${vm.name}: migration ${rec.id} not terminal (${rec.phase})`);
        const where = rec.runsOn ? `${rec.runsOn.host}/${rec.runsOn.instanceId}` : "nowhere";
        const recorded = vm.state === "running" ? `${vm.host}/${String(vm.instanceId)}` : "nowhere";
        if (where !== recorded && !(vm.state !== "running" && rec.runsOn !== null && running.length === 0 && rec.outcome !== null && ["succeeded", "degraded", "recovered"].includes(rec.outcome))) {
          v.push(`${vm.name}: migration ${rec.id} says it runs on ${where}, the VM record ${recorded}`);
        }
      }
    }
    v.push(...(await this.leaseViolations()));
    return v;
  }

  /** Every lease on every host is held by a running instance (no migration lease, no dead holder). */
  async leaseViolations(): Promise<string[]> {
    const v: string[] = [];
    for (const a of this.agents.values()) {
      const runningIds = new Set((await a.client.instances()).instances.filter((i) => i.running).map((i) => i.instanceId));
      for (const l of (await a.client.leases()).leases) {
        if (l.holder.kind !== "instance") v.push(`${a.name} ${l.vf}: leaked to migration ${l.holder.migrationId}`);
        else if (!runningIds.has(l.holder.instanceId)) v.push(`${a.name} ${l.vf}: held by ${l.holder.instanceId}, which is not running`);
      }
    }
    return v;
  }
}

/** The last heartbeat in an instance's serial log (0 when none yet). */
export async function heartbeatOf(serialLog: string): Promise<number> {
  return lastHeartbeat(await readConsole(serialLog)) ?? 0;
}

/** A log's last lines under a heading (empty when it cannot be read). */
export async function tail(what: string, file: string, last: number): Promise<string> {
  const lines = (await readFile(file, "utf8").catch(() => "")).trimEnd().split("\n").slice(-last);
  return `--- ${what} log (last lines):\n${lines.join("\n")}`;
}

/** A migration record at its end: phase done, no lab measurement still settling. */
export function ended(r: MigrationRecord): boolean {
  return r.phase === "done" && (r as MigrationRecord & { settling?: boolean }).settling !== true;
}
