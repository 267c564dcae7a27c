// The migration steps' view of this host (StepContext), built from the
// agent's parts: its config, state stores, VFs and the instances it runs.
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { Runner } from "../core/run.ts";
import type { HostConfig, UsableVf } from "../host/config.ts";
import type { LeaseStore, RecordStore } from "../host/leases.ts";
import type { Accel } from "../qemu/accel.ts";
import type { Instance } from "../qemu/instance.ts";
import type { Faults } from "./faults.ts";
import type { StepContext } from "./migration/context.ts";
import type { MigrationTransport } from "./migration/transport.ts";
import type { VfLife } from "./vf-life.ts";

export interface HostParts {
  config: HostConfig;
  accel: Accel;
  clock: Clock;
  leases: LeaseStore;
  records: RecordStore;
  run: Runner;
  vfs: ReadonlyMap<string, UsableVf>;
  /** The agent's own map: the steps add and remove instances in it. */
  instances: Map<string, Instance>;
  qemuBinary: string | undefined;
  vfLife: VfLife;
  faults: Faults;
  log: Logger;
  transport: MigrationTransport | null;
}

export function hostStepContext(p: HostParts): StepContext {
  const { config, instances } = p;
  return {
    host: config.name,
    runDir: config.runDir,
    memoryDir: config.memoryDir,
    accel: p.accel,
    clock: p.clock,
    leases: p.leases,
    records: p.records,
    run: p.run,
    vfs: () => [...p.vfs.values()],
    network: (name) => {
      const n = config.networks.find((x) => x.name === name);
      return n ? { bridge: n.bridge, netns: n.netns, forwarding: n.forwarding } : undefined;
    },
    instances: {
      get: (id) => instances.get(id),
      add: (inst) => void instances.set(inst.id, inst),
      remove: (id) => void instances.delete(id),
      all: () => [...instances.values()],
    },
    vfLife: p.vfLife,
    qemuBinary: p.qemuBinary,
    faults: p.faults,
    switchoverGraceMs: config.switchoverGraceMs,
    transport: p.transport,
    log: p.log,
  };
}
