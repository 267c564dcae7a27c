// Test support for the migration steps' unit tests: a fake QEMU monitor
// (commands answered from a little state, events emitted with the timestamps a
// QEMU would give them) and a step context around it on a real RecordStore.
import { join } from "node:path";
import type { Clock } from "../../core/clock.ts";
import { openStateDb, RecordStore } from "../../host/leases.ts";
import type { NicSpec, VmSpec } from "../../model/vm.ts";
import type { Instance } from "../../qemu/instance.ts";
import type { QmpEvent } from "../../qmp/protocol.ts";
import type { StepContext } from "./context.ts";

export const failover: NicSpec = {
  name: "net0", mode: "failover", mac: "52:54:00:00:00:01", network: "physnet1", guestPorts: { standby: 1, primary: 2 },
  standby: { kind: "tap", ifname: "fs-net0" },
  primary: { kind: "stand-in", model: "vmxnet3", backend: { kind: "tap", ifname: "fp-net0" }, vf: "0000:3b:10.0" },
};

/** A QEMU monitor as far as a migration's steps use it; `onMigrate` and `onQuery` play what QEMU does once `migrate` is sent, and while it streams. */
export class FakeQmp {
  closed = false;
  status = "none";
  /** The guest's vCPUs run (query-status); migrate_cancel resumes a guest paused by the migration, as QEMU does. */
  running = true;
  /** The devices under /machine/peripheral (qom-list): a failover primary QEMU plugged back appears here. */
  devices: string[] = [];
  /** The next this many query-migrate calls fail (a monitor that does not answer in time). */
  failQueries = 0;
  readonly sent: string[] = [];
  /** The downtime-limit of every migrate-set-parameters that set one, in order. */
  readonly limits: number[] = [];
  /** What query-migrate answers while the status is "active" (beside the status). */
  active: Record<string, unknown> = {};
  readonly #listeners = new Set<(e: QmpEvent) => void>();
  onMigrate: () => void = () => undefined;
  onQuery: () => void = () => undefined;

  onEvent(l: (e: QmpEvent) => void): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }

  emit(event: string, timestampUs: number, data: Record<string, unknown> = {}): void {
    for (const l of [...this.#listeners]) l({ kind: "event", event, data, timestampUs });
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    this.sent.push(command);
    if (command === "migrate-set-parameters" && typeof args?.["downtime-limit"] === "number") this.limits.push(args["downtime-limit"]);
    switch (command) {
      case "query-migrate":
        if (this.failQueries > 0) {
          this.failQueries--;
          return Promise.reject(new Error("fake QMP: query-migrate timed out"));
        }
        this.onQuery();
        return Promise.resolve(this.status === "completed" ? { status: "completed", "total-time": 900, downtime: 12, ram: { transferred: 1000 } } : { status: this.status, ...(this.status === "active" ? this.active : {}) });
      case "query-status":
        return Promise.resolve({ status: this.running ? "running" : "paused", running: this.running });
      case "qom-list":
        return Promise.resolve(this.devices.map((name) => ({ name, type: "child<virtio-net-pci>" })));
      case "query-dirty-rate":
        return Promise.resolve({ status: "unstarted" });
      case "migrate":
        this.onMigrate();
        return Promise.resolve({});
      case "migrate-continue":
        this.status = "completed";
        return Promise.resolve({});
      case "migrate_cancel":
        if (this.status !== "completed") {
          this.status = "cancelled";
          if (!this.running) {
            this.running = true;
            this.emit("RESUME", Date.now() * 1000);
          }
        }
        return Promise.resolve({});
      default:
        return Promise.resolve({});
    }
  }
}

/** A source-side step context with one instance ("i-src") on a fake monitor; `pins` collects the bridge fdb commands run. */
export function rig(dir: string, clock: Clock, spec: VmSpec): { ctx: StepContext; inst: Instance; qmp: FakeQmp; pins: string[] } {
  const qmp = new FakeQmp();
  const pins: string[] = [];
  const inst = { id: "i-src", qmp, meta: { spec } } as unknown as Instance;
  const records = new RecordStore(openStateDb(join(dir, `${Math.random().toString(36).slice(2)}.db`)), clock);
  const ctx = {
    host: "hv-a", clock, records, vfs: () => [],
    run: (file: string, args: readonly string[]) => {
      if (args.includes("fdb")) pins.push(args.join(" "));
      return Promise.resolve({ code: 0, stdout: "", stderr: "" });
    },
    network: (name: string) => (name === "physnet1" ? { bridge: "br-physnet1", netns: null } : undefined),
    instances: { get: (id: string) => (id === inst.id ? inst : undefined), add: () => undefined, remove: () => undefined, all: () => [inst] },
  } as unknown as StepContext;
  return { ctx, inst, qmp, pins };
}

export const spec = (nics: NicSpec[]): VmSpec => ({ uuid: "6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab", name: "vm", memoryMiB: 256, vcpus: 1, nics } as unknown as VmSpec);
