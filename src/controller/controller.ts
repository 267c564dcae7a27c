// The controller: hosts (registered by their agents' heartbeats, marked down
// when they stop), VMs (created and started through the agents), migrations
// (planned with the scheduler, run by the durable coordinator in the
// background, the VM record updated from the outcome). The HTTP layer
// (src/api) turns requests into calls here; nothing here knows HTTP.
//
// A façade over one file per concept, which share a ControllerContext
// (context.ts): hosts.ts (heartbeats, liveness), cluster-view.ts (inventories,
// snapshot, devices), vms.ts (create, start, stop, delete), vm-local.ts
// (local migration, save, restore), migrations.ts.
import type { AgentClient } from "../wire/agent-client.ts";
import { FerryError } from "../core/errors.ts";
import type { CancelReport } from "../migration/runner.ts";
import type { MigrationRecord } from "../migration/types.ts";
import type { ClusterSnapshot } from "../model/cluster.ts";
import type { ClusterStore, HostRecord, VmRecord } from "../store/cluster.ts";
import { ClusterView } from "./cluster-view.ts";
import type { DeviceRow } from "./cluster-view.ts";
import { ControllerContext } from "./context.ts";
import type { ControllerDeps } from "./context.ts";
import type { LocalMigrateReply, MigrationProgress } from "../wire/instance-ops.ts";
import type { EventBus } from "./events.ts";
import type { ForceCompleteViewT, MigrationLimitsViewT, MigrationStreamEvent } from "../wire/migration-stream.ts";
import { Hosts } from "./hosts.ts";
import type { HeartbeatInput, VfUse } from "./hosts.ts";
import { Migrations } from "./migrations.ts";
import type { ConvergenceRequest } from "../migration/convergence.ts";
import type { MigrateInput, PlanView } from "./migrations.ts";
import { VmLocal } from "./vm-local.ts";
import { Vms } from "./vms.ts";
import type { CreateVmInput } from "./vms.ts";

export type { DeviceRow } from "./cluster-view.ts";
export { connectivityWarnings, LATE_OUTAGE_MS } from "./connectivity.ts";
export type { ConnectivityHandle, ConnectivityWatch, SettleOptions } from "./connectivity.ts";
export type { ControllerDeps } from "./context.ts";
export type { HeartbeatInput, VfUse } from "./hosts.ts";
export type { MigrateInput, PlanView } from "./migrations.ts";
export type { CreateVmInput } from "./vms.ts";

export class Controller {
  readonly events: EventBus;
  readonly #c: ControllerContext;
  readonly #view: ClusterView;
  readonly #hosts: Hosts;
  readonly #vms: Vms;
  readonly #local: VmLocal;
  readonly #migrations: Migrations;

  constructor(deps: ControllerDeps) {
    this.#c = new ControllerContext(deps);
    this.events = this.#c.events;
    this.#view = new ClusterView(this.#c);
    this.#vms = new Vms(this.#c, this.#view);
    this.#hosts = new Hosts(this.#c, this.#view, this.#vms);
    this.#local = new VmLocal(this.#c, this.#vms);
    this.#migrations = new Migrations(this.#c, this.#view, this.#vms);
  }

  /** The client of a host's agent (from its last heartbeat). */
  agent(host: string): AgentClient {
    return this.#c.agent(host);
  }

  /** Load the hosts, start the liveness loop, resume every migration not yet done (in the background). */
  async start(): Promise<void> {
    await this.#hosts.start();
    await this.#migrations.resume();
  }

  /** Abort every step in flight now (close() waits for them to end). */
  stop(): void {
    this.#c.stop(new FerryError("FERRY_ERR_ABORTED", "controller shutting down"));
  }

  async close(): Promise<void> {
    this.stop();
    await this.#hosts.stopped();
    await this.#migrations.close();
  }

  // ------------------------------------------------------------------ hosts (hosts.ts)

  heartbeat(h: HeartbeatInput): Promise<{ intervalMs: number; ended?: string[] }> {
    return this.#hosts.heartbeat(h);
  }

  /** Mark down every host whose last heartbeat is older than the timeout. */
  checkLiveness(): Promise<void> {
    return this.#hosts.checkLiveness();
  }

  /** Mark down (or follow) every VM recorded running whose QEMU its agent reports gone. */
  checkVms(): Promise<void> {
    return this.#hosts.checkVms();
  }

  listHosts(): Promise<HostRecord[]> {
    return this.#hosts.listHosts();
  }

  /** The hosts with each one's VF use per network, from its agent's inventory (null: it did not answer). */
  hostsWithVfs(): Promise<(HostRecord & { vfs: VfUse[] | null })[]> {
    return this.#hosts.hostsWithVfs();
  }

  // ------------------------------------------------------------------ cluster view (cluster-view.ts)

  /** For evacuation (./evacuation.ts): the cluster store and a fresh snapshot. */
  get cluster(): ClusterStore {
    return this.#c.d.cluster;
  }

  /** Also the VFs promised to migrations in flight and to plans not yet recorded (vf-reservations.ts): an evacuation's plan leaves them out. */
  async snapshot(): Promise<{ snapshot: ClusterSnapshot; vms: VmRecord[]; reservedVfs: ReadonlySet<string> }> {
    const { value } = await this.#c.vfs.plan(() => this.#view.snapshot(), ({ snapshot, vms }, reservedVfs) => ({ value: { snapshot, vms, reservedVfs }, hold: [] }));
    return value;
  }

  devices(filter: { host?: string; network?: string } = {}): Promise<DeviceRow[]> {
    return this.#view.devices(filter);
  }

  // ------------------------------------------------------------------ VMs (vms.ts, vm-local.ts)

  listVms(): Promise<VmRecord[]> {
    return this.#vms.list();
  }

  getVm(name: string): Promise<VmRecord> {
    return this.#vms.get(name);
  }

  /** Create a VM and start it; `warnings`: what runs degraded from the start (an optional NIC with no VF). */
  createVm(input: CreateVmInput): Promise<{ vm: VmRecord; warnings: string[] }> {
    return this.#vms.create(input);
  }

  startVm(name: string): Promise<VmRecord> {
    return this.#vms.start(name);
  }

  stopVm(name: string): Promise<VmRecord> {
    return this.#vms.stop(name);
  }

  /** Change a VM's migration policy (convergence null: the default, auto). */
  setVmPolicy(name: string, change: { convergence: ConvergenceRequest | null }): Promise<VmRecord> {
    return this.#vms.setPolicy(name, change);
  }

  deleteVm(name: string): Promise<{ deleted: string }> {
    return this.#vms.delete(name);
  }

  /** Local migration (a QEMU upgrade in place): a new instance on the same host, RAM shared, VF leases moved to it. */
  localMigrate(name: string, o: { qemuBinary?: string } = {}): Promise<{ vm: VmRecord; result: LocalMigrateReply; migration?: MigrationRecord }> {
    return this.#local.localMigrate(name, o);
  }

  /** Save a running VM to a state file on its host (its VFs are released); the record remembers it. */
  saveVm(name: string, file: string): Promise<VmRecord> {
    return this.#local.save(name, file);
  }

  /** Restore a saved VM on `host` (default: where it was saved) with VFs chosen anew there. */
  restoreVm(name: string, o: { host?: string } = {}): Promise<VmRecord> {
    return this.#local.restore(name, o);
  }

  // ------------------------------------------------------------------ migrations (migrations.ts)

  plan(input: MigrateInput, o: { predict?: boolean } = {}): Promise<PlanView & { snapshot: ClusterSnapshot; vmRecord: VmRecord }> {
    return this.#migrations.plan(input, o);
  }

  /** Plan, record and start a migration; resolves once it is recorded (it runs in the background). */
  migrate(input: MigrateInput): Promise<MigrationRecord> {
    return this.#migrations.migrate(input);
  }

  listMigrations(): Promise<MigrationRecord[]> {
    return this.#migrations.list();
  }

  /** A migration; `settling` while its outcome is still followed up (the VM record), `measuring` while its NICs are still watched (lab). */
  getMigration(id: string): Promise<MigrationRecord & { settling: boolean; measuring: boolean; progress?: MigrationProgress }> {
    return this.#migrations.get(id);
  }

  cancelMigration(id: string): Promise<CancelReport> {
    return this.#migrations.cancel(id);
  }

  /** Migration `id`'s live stream: the phases so far, then its events and QEMU's progress until `end` (migration-live.ts). */
  followMigration(id: string, send: (e: MigrationStreamEvent) => void, signal: AbortSignal): Promise<void> {
    return this.#migrations.live.follow(id, send, signal);
  }

  /** Change a running migration's bandwidth cap or downtime limit on the source's QEMU (phase perform only). */
  setMigrationLimits(id: string, input: { maxBandwidthMiBps?: number; downtimeLimitMs?: number }): Promise<MigrationLimitsViewT> {
    return this.#migrations.live.setLimits(id, input);
  }

  /** Make a running migration converge now: its downtime limit raised (post-copy is not possible: migration-live.ts). */
  forceCompleteMigration(id: string, input: { downtimeLimitMs?: number } = {}): Promise<ForceCompleteViewT> {
    return this.#migrations.live.forceComplete(id, input);
  }
}
