// The life of a QEMU instance the agent runs: started (the one place the
// agent calls startInstance), started to receive a guest (startIncoming: an
// incoming migration, a local migration, a restore), waited for until its
// guest runs, and discarded when it will never run.
import { FerryError } from "../../core/errors.ts";
import type { VmSpec } from "../../model/vm.ts";
import { startInstance } from "../../qemu/instance.ts";
import type { Instance } from "../../qemu/instance.ts";
import { prepareIncoming } from "../../qemu/migration.ts";
import type { MigrationSetup } from "../../qemu/migration.ts";
import { queryStatus } from "../../qmp/commands.ts";
import type { StepContext } from "./context.ts";
import { listenIncoming } from "./transport.ts";
import type { MigrationTransport } from "./transport.ts";
import { attachTaps, newRamFile, releaseRamFile, withTaps } from "./wiring.ts";

export interface LaunchOptions {
  /** Wired already (withTaps). */
  spec: VmSpec;
  instanceId: string;
  incoming: boolean;
  netns: string | undefined;
  signal?: AbortSignal | undefined;
  /** Default: the agent's QEMU (StepContext.qemuBinary). */
  qemuBinary?: string | undefined;
  /** A RAM file that exists (a local migration maps its predecessor's); default: a new one when the VM has shared memory (newRamFile). */
  ram?: { file: string; create: false } | undefined;
}

/** Start QEMU for an instance on this host. */
export function launchInstance(ctx: StepContext, o: LaunchOptions): Promise<Instance> {
  return startInstance({
    runDir: ctx.runDir, spec: o.spec, accel: ctx.accel, instanceId: o.instanceId, incoming: o.incoming, netns: o.netns,
    qemuBinary: o.qemuBinary ?? ctx.qemuBinary, signal: o.signal, clock: ctx.clock, ...(o.ram ? { ram: o.ram } : newRamFile(ctx, o.spec, o.instanceId)),
  });
}

export interface IncomingOptions {
  /** The guest's spec with its VFs chosen here and no backends yet (withTaps wires them for this instance). */
  spec: VmSpec;
  instanceId: string;
  /**
   * Where QEMU takes the guest's state in: a migration URI, one in the
   * started instance's dir (a unix socket), or this host's migration network
   * (transport.ts: its address and port range, TLS admitting only the source).
   */
  listen: string | ((inst: Instance) => string) | { network: MigrationTransport | null; sourceIdentity?: string | undefined };
  setup?: MigrationSetup;
  qemuBinary?: string;
  ram?: { file: string; create: false };
}

export interface Incoming {
  inst: Instance;
  /** The spec as wired for this instance (taps). */
  spec: VmSpec;
  /** Where the guest's state goes (a tcp port chosen by QEMU resolved). */
  uri: string;
}

/**
 * Start an instance that waits for a guest (QEMU -incoming): taps wired,
 * registered with the agent, taps attached, listening. On failure the
 * instance is discarded (the caller undoes what it did before: leases).
 */
export async function startIncoming(ctx: StepContext, o: IncomingOptions, signal: AbortSignal): Promise<Incoming> {
  const wired = withTaps(ctx, o.instanceId, o.spec);
  const inst = await launchInstance(ctx, { spec: wired.spec, instanceId: o.instanceId, incoming: true, netns: wired.netns, signal, qemuBinary: o.qemuBinary, ram: o.ram });
  ctx.instances.add(inst);
  try {
    await attachTaps(ctx, wired.spec, signal);
    const l = o.listen;
    const uri = typeof l === "object"
      ? await listenIncoming(l.network, inst, o.setup ?? {}, l.sourceIdentity, signal)
      : await prepareIncoming(inst.qmp, typeof l === "string" ? l : l(inst), o.setup ?? {}, signal);
    return { inst, spec: wired.spec, uri };
  } catch (e) {
    await discard(ctx, inst);
    throw e;
  }
}

/** Kill an instance by pid, drop its runtime dir and forget it (a destination that will never run). */
export async function discard(ctx: StepContext, inst: Instance): Promise<void> {
  inst.kill();
  await inst.waitExit(5_000);
  inst.qmp.close();
  await inst.remove();
  ctx.instances.remove(inst.id);
  await releaseRamFile(ctx, inst.meta);
}

/** Wait until an instance's guest runs (an incoming instance starts by itself once the migration completes). */
export async function waitRunning(ctx: StepContext, inst: Instance, signal: AbortSignal, timeoutMs = 30_000): Promise<void> {
  const until = ctx.clock.monotonic() + timeoutMs;
  for (;;) {
    const s = await queryStatus(inst.qmp, { signal });
    if (s.running) return;
    if (s.status === "paused" || s.status === "prelaunch") {
      await inst.qmp.execute("cont", undefined, { signal });
      return;
    }
    if (ctx.clock.monotonic() > until) throw new FerryError("FERRY_ERR_TIMEOUT", `guest of instance ${inst.id} did not start running within ${timeoutMs} ms (status ${s.status})`);
    await ctx.clock.sleep(20, signal);
  }
}
