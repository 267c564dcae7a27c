// Fault switches for tests and demos, lab hosts only (`lab: true` in the
// host config): a switch is armed by name, optionally for one use, and the
// migration step that checks it fails the way the name says.
//
// `hold:<step>` switches stop a migration step at a fixed point so that a
// test can land a fault there (kill a process, cut a connection) at a known
// phase: the step waits until the switches are cleared (DELETE /v1/faults),
// its hold deadline passes (holdMs, default 30 s, at most 120 s) or the step's
// own deadline does, then goes on. GET /v1/faults lists the holds in
// progress. Where each step holds (src/agent/migration/source.ts, destination.ts):
//   begin      source, on entry (nothing done yet)
//   prepare    destination, once the incoming QEMU runs and the VFs are leased, before answering
//   perform    source, on entry (the destination is prepared, nothing streamed yet)
//   precheck   destination, on entry (the source is paused at pre-switchover)
//   switchover source, once the migration completed, before answering (the guest waits paused on the destination)
//   finish     destination, once the guest runs and its NICs are back, before the leases move to the instance
//   confirm    source, on entry of a successful confirm (the guest runs on the destination; the source instance still exists)
import type { Clock } from "../core/clock.ts";
import { FerryError } from "../core/errors.ts";

export const FAILURE_FAULTS = ["replug-fail", "precheck-fail", "port-profile-fail", "agent-crash-in-prepare", "qemu-crash-on-destination"] as const;
export const HOLD_STEPS = ["begin", "prepare", "perform", "precheck", "switchover", "finish", "confirm"] as const;
export type HoldStep = (typeof HOLD_STEPS)[number];
export const FAULTS = [...FAILURE_FAULTS, ...HOLD_STEPS.map((s) => `hold:${s}` as const)] as const;
export type FaultName = (typeof FAULTS)[number];

export const DEFAULT_HOLD_MS = 30_000;
export const MAX_HOLD_MS = 120_000;

export interface ArmedFault {
  name: FaultName;
  once: boolean;
  /** hold:<step> only: how long the step holds at most. */
  holdMs?: number;
}

/** A step holding at its hold point. */
export interface Holding {
  step: HoldStep;
  migrationId: string;
  /** Epoch ms. */
  since: number;
  /** Epoch ms: the hold ends by itself then. */
  until: number;
}

export class Faults {
  readonly #armed = new Map<FaultName, { once: boolean; holdMs?: number }>();
  readonly #holding = new Map<Holding, AbortController>();
  readonly #enabled: boolean;

  constructor(enabled: boolean) {
    this.#enabled = enabled;
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  arm(name: FaultName, once: boolean, holdMs?: number): void {
    if (!this.#enabled) {
      throw new FerryError("FERRY_ERR_STATE", "fault switches are for lab hosts only: this host's config does not say `lab: true`", { details: { fault: name } });
    }
    if (holdMs !== undefined && !name.startsWith("hold:")) {
      throw new FerryError("FERRY_ERR_INVALID", `holdMs applies to hold:<step> switches only, not ${name}`, { details: { fault: name } });
    }
    if (holdMs !== undefined && (!Number.isInteger(holdMs) || holdMs < 1 || holdMs > MAX_HOLD_MS)) {
      throw new FerryError("FERRY_ERR_INVALID", `holdMs must be an integer from 1 to ${MAX_HOLD_MS} (got ${holdMs})`, { details: { holdMs } });
    }
    this.#armed.set(name, holdMs === undefined ? { once } : { once, holdMs });
  }

  /** Disarm one switch, or every switch; clearing all also releases every hold in progress. */
  clear(name?: FaultName): void {
    if (name !== undefined) {
      this.#armed.delete(name);
      return;
    }
    this.#armed.clear();
    for (const ctl of this.#holding.values()) ctl.abort();
  }

  list(): ArmedFault[] {
    return [...this.#armed].map(([name, f]) => ({ name, once: f.once, ...(f.holdMs === undefined ? {} : { holdMs: f.holdMs }) }));
  }

  holding(): Holding[] {
    return [...this.#holding.keys()].map((h) => ({ ...h }));
  }

  /** True when `name` is armed; a --once switch disarms itself here. */
  fire(name: FaultName): boolean {
    const f = this.#armed.get(name);
    if (!f) return false;
    if (f.once) this.#armed.delete(name);
    return true;
  }

  /**
   * The hold point of `step`: when hold:<step> is armed, wait until released
   * (clear()), the hold deadline or `signal` (the step's own deadline). Never
   * throws: the step goes on and meets whatever the test did meanwhile.
   */
  async hold(step: HoldStep, migrationId: string, clock: Clock, signal: AbortSignal): Promise<void> {
    const name: FaultName = `hold:${step}`;
    const holdMs = this.#armed.get(name)?.holdMs ?? DEFAULT_HOLD_MS;
    if (!this.fire(name)) return;
    const now = clock.now();
    const h: Holding = { step, migrationId, since: now, until: now + holdMs };
    const released = new AbortController();
    this.#holding.set(h, released);
    try {
      await clock.sleep(holdMs, AbortSignal.any([signal, released.signal])).catch(() => undefined);
    } finally {
      this.#holding.delete(h);
    }
  }
}
