// What the controller's parts share (controller.ts builds one and hands it to
// each: hosts.ts, cluster-view.ts, vms.ts, vm-local.ts, migrations.ts): the
// dependencies, the event bus, the agents' clients, the VMs busy with an
// operation, the VFs promised to plans, and the signal that stops everything
// when the controller closes.
import { AgentClient } from "../wire/agent-client.ts";
import type { Clock } from "../core/clock.ts";
import { FerryError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Store } from "../migration/store-port.ts";
import { vfKey } from "../model/cluster.ts";
import type { EventLog } from "../model/events.ts";
import type { ClusterStore, HostRecord } from "../store/cluster.ts";
import type { ControllerConfig } from "./config.ts";
import type { ConnectivityWatch } from "./connectivity.ts";
import { EventBus } from "./events.ts";
import { VfReservations } from "./vf-reservations.ts";
import type { ControllerEvent } from "../wire/events.ts";

export interface ControllerDeps {
  config: Pick<ControllerConfig, "heartbeatTimeoutMs" | "hostCapacity" | "deadlines"> & Partial<Pick<ControllerConfig, "plan">>;
  store: Store;
  cluster: ClusterStore;
  clock: Clock;
  log: Logger;
  /** The cluster's agent token. */
  agentToken: string;
  guestImage: () => Promise<{ kernel: string; initrd: string }>;
  /** Randomness for MACs (default crypto). */
  random?: (n: number) => Buffer;
  /** The agents' I/O seam (tests). */
  fetch?: typeof fetch;
  /** Lab: measures each NIC's connectivity during a migration (a peer probing the guest). */
  connectivity?: ConnectivityWatch;
  /** The leadership term this controller calls the agents with (default 1: the only controller, SQLite); null: it does not lead. */
  term?: () => number | null;
  /** Where events are written down (the SQLite file); without it they live in memory only. */
  eventLog?: EventLog<ControllerEvent>;
}

export class ControllerContext {
  readonly d: ControllerDeps;
  readonly events: EventBus;
  /** VMs (by uuid) with a migration or another operation in progress. */
  readonly busy = new Set<string>();
  /** Every plan that hands out VFs goes through it: none is given two plans (vf-reservations.ts). */
  readonly vfs: VfReservations;
  readonly #clients = new Map<string, AgentClient>();
  readonly #stop = new AbortController();

  constructor(deps: ControllerDeps) {
    this.d = deps;
    this.vfs = new VfReservations(async () =>
      (await deps.store.listActiveMigrations()).flatMap((r) => r.plan.nics.flatMap((n) => (n.after === null ? [] : [vfKey(n.after.host, n.after.vf)]))),
    );
    this.events = new EventBus(2000, {
      ...(deps.eventLog ? { log: deps.eventLog } : {}),
      onLogError: (e) => deps.log.warn({ err: e instanceof Error ? e.message : String(e) }, "event log: cannot write or read events"),
    });
  }

  /** Aborted when the controller closes. */
  get signal(): AbortSignal {
    return this.#stop.signal;
  }

  stop(reason: FerryError): void {
    this.#stop.abort(reason);
  }

  /** The client of a host's agent (from its last heartbeat). */
  agent(host: string): AgentClient {
    const c = this.#clients.get(host);
    if (!c) throw new FerryError("FERRY_ERR_AGENT", `no agent known for host ${host} (it has not sent a heartbeat)`, { details: { host } });
    return c;
  }

  /** The client of host `h`'s agent at its recorded URL (a new one when the URL changed). */
  client(h: HostRecord): AgentClient {
    const c = this.#clients.get(h.name);
    if (c && c.baseUrl === h.url.replace(/\/+$/, "")) return c;
    const fresh = new AgentClient({ baseUrl: h.url, token: this.d.agentToken, term: this.d.term ?? (() => 1), ...(this.d.fetch ? { fetch: this.d.fetch } : {}) });
    this.#clients.set(h.name, fresh);
    return fresh;
  }

  /** Run `fn` with VM `uuid` busy; FERRY_ERR_STATE (nothing done) when it is busy already. */
  async exclusive<T>(uuid: string, what: string, fn: () => Promise<T>): Promise<T> {
    if (this.busy.has(uuid)) throw new FerryError("FERRY_ERR_STATE", `${what}: the VM is busy: a migration or another operation on it is in progress; nothing was changed: wait for it to end ('ferry migrations', 'ferry events') and try again`, { details: { vm: uuid } });
    this.busy.add(uuid);
    try {
      return await fn();
    } finally {
      this.busy.delete(uuid);
    }
  }
}
