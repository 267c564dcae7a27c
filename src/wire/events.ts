// The controller's events as the API streams them (GET /v1/events, SSE):
// the coordinator's (phases, outcomes, NIC degradation, step retries:
// migration/runner.ts), host liveness and VM lifecycle, each numbered by the
// controller's EventBus (controller/events.ts).
import type { CoordinatorEvent } from "../migration/runner.ts";

export type HostEvent = { type: "host-up" | "host-down" | "host-registered"; host: string; reason: string; at: number };
export type VmEvent = { type: "vm-created" | "vm-started" | "vm-stopped" | "vm-deleted" | "vm-moved"; vm: string; host: string; instanceId: string | null; at: number };

/** An operator changed a running migration's limits (ferry migration set / force-complete): what QEMU on the source holds now. */
export type MigrationTunedEvent = { type: "tuned"; migrationId: string; action: "set" | "force-complete"; maxBandwidthMiBps: number; downtimeLimitMs: number; at: number };

export type ControllerEvent = (CoordinatorEvent | HostEvent | VmEvent | MigrationTunedEvent) & { seq: number };
export type ControllerEventInput = CoordinatorEvent | HostEvent | VmEvent | MigrationTunedEvent;
