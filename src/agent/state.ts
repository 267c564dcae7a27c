// What the agent's parts share (agent.ts, recovery.ts, instance-start.ts,
// instance-view.ts): its host, the instances it runs, and what it remembers
// of instances it lost. One object, owned by the Agent.
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { HostConfig } from "../host/config.ts";
import type { LeaseHolder, LeaseStore } from "../host/leases.ts";
import type { Instance } from "../qemu/instance.ts";
import type { GoneInstanceT } from "../wire/agent-api.ts";
import type { StepContext } from "./migration/context.ts";

export interface AgentState {
  readonly config: HostConfig;
  readonly clock: Clock;
  readonly log: Logger;
  readonly leases: LeaseStore;
  /** The instances this agent runs, by id. */
  readonly instances: Map<string, Instance>;
  /** Alive but QMP did not answer: instance id → runtime dir (retried every tick). */
  readonly unreachable: Map<string, string>;
  /** Instances found gone, newest last (at most 100). */
  readonly gone: GoneInstanceT[];
  /** The migration steps' view of this host (taps, steering, RAM files). */
  ctx(): StepContext;
}

export const instanceHolder = (i: Instance): LeaseHolder => ({ kind: "instance", vmUuid: i.meta.vmUuid, instanceId: i.id });
