// A scripted AgentPort: stands in for the source and destination agents
// (real agents are tested against real QEMU elsewhere). By default it behaves
// like a correct idempotent agent pair: prepare answers the same instance for
// the same migration id, finish attaches every planned VF. Tests override a
// step with a script; every call is recorded.
import { FerryError } from "../../core/errors.ts";
import type { AgentPort, CancelSourceResult, ConfirmResult, FinishResult, PerformResult, PrecheckResult, PrepareResult, SwitchoverResult } from "../port.ts";
import type { Deadlines, MigrationPlan, NicPlan } from "../types.ts";

export type Method = keyof AgentPort;

export interface Call {
  method: Method;
  migrationId: string;
  /** confirmSource's success flag. */
  success?: boolean;
  uri?: string;
}

export interface Script {
  begin?: (plan: MigrationPlan, signal: AbortSignal, n: number) => Promise<void>;
  prepare?: (plan: MigrationPlan, signal: AbortSignal, n: number) => Promise<PrepareResult>;
  perform?: (plan: MigrationPlan, signal: AbortSignal, n: number) => Promise<PerformResult>;
  precheck?: (plan: MigrationPlan, signal: AbortSignal, n: number) => Promise<PrecheckResult>;
  switchover?: (plan: MigrationPlan, signal: AbortSignal, n: number) => Promise<SwitchoverResult>;
  finish?: (plan: MigrationPlan, signal: AbortSignal, n: number) => Promise<FinishResult>;
  confirmSource?: (plan: MigrationPlan, success: boolean, signal: AbortSignal, n: number) => Promise<ConfirmResult | void>;
  abortDestination?: (plan: MigrationPlan, signal: AbortSignal, n: number) => Promise<void>;
  cancelSource?: (plan: MigrationPlan, signal: AbortSignal, n: number) => Promise<CancelSourceResult>;
}

/** Waits until the signal aborts (a cooperative agent that never answers). */
export function hang<T>(signal: AbortSignal): Promise<T> {
  return new Promise<T>((_, reject) => {
    signal.addEventListener("abort", () => reject(signal.reason as Error), { once: true });
  });
}

/** Never settles, whatever the signal says (an agent that ignores it). */
export function hangForever<T>(): Promise<T> {
  return new Promise<T>(() => undefined);
}

export class ScriptedPort implements AgentPort {
  readonly calls: Call[] = [];
  script: Script;
  /** Destination instances made by prepare, by migration id (the agent's idempotency). */
  readonly instances = new Map<string, string>();
  #made = 0;

  constructor(script: Script = {}) {
    this.script = script;
  }

  #n(method: Method, plan: MigrationPlan, extra: Partial<Call> = {}): number {
    this.calls.push({ method, migrationId: plan.id, ...extra });
    return this.calls.filter((c) => c.method === method && c.migrationId === plan.id).length;
  }

  /** "method" or "method(true)" per call of one migration, in order. */
  trace(migrationId: string): string[] {
    return this.calls.filter((c) => c.migrationId === migrationId).map((c) => (c.success === undefined ? c.method : `${c.method}(${String(c.success)})`));
  }

  count(method: Method, migrationId?: string): number {
    return this.calls.filter((c) => c.method === method && (migrationId === undefined || c.migrationId === migrationId)).length;
  }

  async begin(plan: MigrationPlan, signal: AbortSignal): Promise<void> {
    const n = this.#n("begin", plan);
    await this.script.begin?.(plan, signal, n);
  }

  async prepare(plan: MigrationPlan, signal: AbortSignal): Promise<PrepareResult> {
    const n = this.#n("prepare", plan);
    if (this.script.prepare) return this.script.prepare(plan, signal, n);
    let id = this.instances.get(plan.id);
    if (id === undefined) {
      id = `i-${plan.destination.host}-${++this.#made}`;
      this.instances.set(plan.id, id);
    }
    return { instanceId: id, uri: `tcp:${plan.destination.host}:49152` };
  }

  async perform(plan: MigrationPlan, uri: string, signal: AbortSignal): Promise<PerformResult> {
    const n = this.#n("perform", plan, { uri });
    if (this.script.perform) return this.script.perform(plan, signal, n);
    return { status: "pre-switchover" };
  }

  async precheck(plan: MigrationPlan, signal: AbortSignal): Promise<PrecheckResult> {
    const n = this.#n("precheck", plan);
    if (this.script.precheck) return this.script.precheck(plan, signal, n);
    return { ok: true };
  }

  async switchover(plan: MigrationPlan, signal: AbortSignal): Promise<SwitchoverResult> {
    const n = this.#n("switchover", plan);
    if (this.script.switchover) return this.script.switchover(plan, signal, n);
    return { totalMs: 1200, downtimeMs: 45 };
  }

  async finish(plan: MigrationPlan, signal: AbortSignal): Promise<FinishResult> {
    const n = this.#n("finish", plan);
    if (this.script.finish) return this.script.finish(plan, signal, n);
    return { nics: plan.nics.filter((x) => x.after !== null).map((x) => ({ name: x.name, attached: true })) };
  }

  async confirmSource(plan: MigrationPlan, success: boolean, signal: AbortSignal): Promise<ConfirmResult | void> {
    const n = this.#n("confirmSource", plan, { success });
    return this.script.confirmSource?.(plan, success, signal, n);
  }

  async abortDestination(plan: MigrationPlan, signal: AbortSignal): Promise<void> {
    const n = this.#n("abortDestination", plan);
    await this.script.abortDestination?.(plan, signal, n);
  }

  async cancelSource(plan: MigrationPlan, signal: AbortSignal): Promise<CancelSourceResult> {
    const n = this.#n("cancelSource", plan);
    if (this.script.cancelSource) return this.script.cancelSource(plan, signal, n);
    return "cancelled";
  }
}

export function noVf(what: string): FerryError {
  return new FerryError("FERRY_ERR_NO_VF", `${what}: no free VF on network physnet1`);
}

export const DEADLINES: Deadlines = { unplugMs: 40, convergeMs: 40, precheckMs: 30, primaryBackMs: 40, stepMs: 60 };

export function nic(name: string, over: Partial<NicPlan> = {}): NicPlan {
  const i = name.replace(/\D/g, "") || "0";
  return {
    name,
    network: "physnet1",
    mode: "failover",
    policy: "mandatory",
    mac: `52:54:00:00:00:0${i}`,
    guestPorts: { standby: 2 * Number(i) + 1, primary: 2 * Number(i) + 2 },
    before: { host: "hv-a", vf: `0000:3b:10.${i}`, pf: "0000:3b:00.0" },
    after: { host: "hv-b", vf: `0000:5e:10.${i}`, pf: "0000:5e:00.0" },
    ...over,
  };
}

let seq = 0;
export function plan(nics: NicPlan[] = [nic("net0")], over: Partial<MigrationPlan> = {}): MigrationPlan {
  return {
    id: `m-${++seq}`,
    vm: { uuid: "11111111-1111-4111-8111-111111111111", name: "vm1", memoryMiB: 512, vcpus: 1 },
    source: { host: "hv-a", instanceId: "i-hv-a-src" },
    destination: { host: "hv-b" },
    nics,
    deadlines: DEADLINES,
    ...over,
  };
}
