// The controller's event stream: coordinator events (phases, outcomes, NIC
// degradation, step retries) and host liveness, each with a sequence number.
// Kept in memory (the last `capacity`); subscribers get every event after
// they subscribe. The SSE route replays the buffer, then follows.
import type { CoordinatorEvent } from "../migration/runner.ts";

export type HostEvent = { type: "host-up" | "host-down" | "host-registered"; host: string; reason: string; at: number };
export type VmEvent = { type: "vm-created" | "vm-started" | "vm-stopped" | "vm-deleted" | "vm-moved"; vm: string; host: string; instanceId: string | null; at: number };

export type ControllerEvent = (CoordinatorEvent | HostEvent | VmEvent) & { seq: number };
export type ControllerEventInput = CoordinatorEvent | HostEvent | VmEvent;

export class EventBus {
  readonly #buffer: ControllerEvent[] = [];
  readonly #subs = new Set<(e: ControllerEvent) => void>();
  readonly #capacity: number;
  #seq = 0;

  constructor(capacity = 2000) {
    this.#capacity = capacity;
  }

  publish(e: ControllerEventInput): ControllerEvent {
    const ev: ControllerEvent = { ...e, seq: ++this.#seq };
    this.#buffer.push(ev);
    if (this.#buffer.length > this.#capacity) this.#buffer.shift();
    for (const s of this.#subs) s(ev);
    return ev;
  }

  /** Events still buffered with seq > after. */
  since(after = 0): ControllerEvent[] {
    return this.#buffer.filter((e) => e.seq > after);
  }

  subscribe(fn: (e: ControllerEvent) => void): () => void {
    this.#subs.add(fn);
    return () => this.#subs.delete(fn);
  }
}
