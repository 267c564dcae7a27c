// Fault switches for tests and demos, lab hosts only (`lab: true` in the
// host config): a switch is armed by name, optionally for one use, and the
// migration step that checks it fails the way the name says.
import { FerryError } from "../core/errors.ts";

export const FAULTS = ["replug-fail", "precheck-fail", "port-profile-fail", "agent-crash-in-prepare", "qemu-crash-on-destination"] as const;
export type FaultName = (typeof FAULTS)[number];

export class Faults {
  readonly #armed = new Map<FaultName, { once: boolean }>();
  readonly #enabled: boolean;

  constructor(enabled: boolean) {
    this.#enabled = enabled;
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  arm(name: FaultName, once: boolean): void {
    if (!this.#enabled) {
      throw new FerryError("FERRY_ERR_STATE", "fault switches are for lab hosts only: this host's config does not say `lab: true`", { details: { fault: name } });
    }
    this.#armed.set(name, { once });
  }

  clear(name?: FaultName): void {
    if (name === undefined) this.#armed.clear();
    else this.#armed.delete(name);
  }

  list(): { name: FaultName; once: boolean }[] {
    return [...this.#armed].map(([name, f]) => ({ name, once: f.once }));
  }

  /** True when `name` is armed; a --once switch disarms itself here. */
  fire(name: FaultName): boolean {
    const f = this.#armed.get(name);
    if (!f) return false;
    if (f.once) this.#armed.delete(name);
    return true;
  }
}
