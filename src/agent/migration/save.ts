// Save and restore with passthrough NICs (seed 003). Save: ephemeral VFs are
// unplugged first (failover primaries are unplugged by QEMU itself, as in a
// migration), the state is streamed to a file through a loopback socket that
// the agent owns (no shell, no exec: URI), the instance is stopped and its VF
// leases released; the result says which NICs must come back. Restore: a
// new instance is started with -incoming on the VFs chosen now (possibly on
// another host), the file is streamed back in, the guest resumes, ephemeral
// NICs are re-plugged and failover primaries awaited.
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { createServer, connect } from "node:net";
import type { Server, Socket } from "node:net";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { FerryError } from "../../core/errors.ts";
import type { NicSpec, VmSpec } from "../../model/vm.ts";
import { parseVmSpec, portableSpec } from "../../model/vm.ts";
import { plugPrimary } from "../../qemu/hotplug.ts";
import { newInstanceId } from "../../qemu/instance.ts";
import type { Instance } from "../../qemu/instance.ts";
import { queryMigrate, queryStatus } from "../../qmp/commands.ts";
import type { StepContext } from "./context.ts";
import { discard, startIncoming, waitRunning } from "./lifecycle.ts";
import { arrivingNics, bringBackNics, unplugEphemerals } from "./nics.ts";
import { migrateOut } from "./outgoing.ts";
import { releaseHeld, releaseLeased, wantedVfs } from "../vf-life.ts";
import type { RestoreReply, SaveReply } from "../../wire/instance-ops.ts";

export type SaveResult = SaveReply;

export interface SavedState {
  version: 1;
  savedAt: number;
  host: string;
  spec: VmSpec;
}

const vfOfNic = (n: NicSpec): string | null => (n.primary?.kind === "stand-in" ? n.primary.vf : n.primary?.kind === "vfio" ? n.primary.host : null);

async function listen(server: Server, path: string): Promise<void> {
  await rm(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
}

export async function saveInstance(ctx: StepContext, instanceId: string, file: string, o: { unplugMs: number; timeoutMs: number }, signal: AbortSignal): Promise<SaveResult> {
  const inst = ctx.instances.get(instanceId);
  if (!inst) throw new FerryError("FERRY_ERR_NOT_FOUND", `no instance ${instanceId} on ${ctx.host}`, { details: { instanceId } });
  const spec = inst.meta.spec;
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const partial = `${file}.partial`;
  const unplugged: string[] = [];
  await unplugEphemerals(ctx, inst, [], o.unplugMs, signal, (n) => unplugged.push(n));
  // QEMU streams its state to a loopback socket the agent owns, into a file
  const server = createServer();
  let written: Promise<void> | undefined;
  server.once("connection", (sock: Socket) => {
    server.close();
    written = pipeline(sock, createWriteStream(partial, { mode: 0o600 }));
  });
  // a unix socket: reachable from QEMU in whatever network namespace it runs (the lab's)
  const sockPath = join(inst.paths.dir, "save.sock");
  try {
    await listen(server, sockPath);
    // paused while its RAM is written, as libvirt's save does: the VM stops after a save anyway, and a
    // guest that keeps writing makes a live save copy pages again (a file-backed guest that had just
    // come through a local migration came back corrupted from live saves now and then: docs/known-issues.md)
    await migrateOut(ctx, inst, `unix:${sockPath}`, { setup: {}, until: "completed", unplugMs: o.unplugMs, timeoutMs: o.timeoutMs, pauseWhenActive: true }, signal);
    if (!written) throw new FerryError("FERRY_ERR_MIGRATION", "QEMU completed a save without connecting to the agent");
    await written;
  } catch (e) {
    server.close();
    await rm(partial, { force: true });
    // the guest runs on where it is (it may have been paused for the save)
    if (!(await queryStatus(inst.qmp, { signal }).catch(() => ({ running: true }))).running) await inst.qmp.execute("cont", undefined, { signal }).catch(() => undefined);
    for (const name of unplugged) {
      const nic = spec.nics.find((n) => n.name === name);
      if (nic?.primary) await plugPrimary(inst.qmp, nic, nic.primary, { signal }).catch(() => undefined);
    }
    throw e;
  }
  const state: SavedState = { version: 1, savedAt: ctx.clock.now(), host: ctx.host, spec: portableSpec(spec) };
  await writeFile(`${file}.json`, JSON.stringify(state, null, 2), { mode: 0o600 });
  await rename(partial, file);
  // the VM now lives in the file: the instance goes, its VFs are free
  await discard(ctx, inst);
  const releasedVfs = await releaseHeld(ctx.vfLife, ctx.leases, { kind: "instance", instanceId });
  return {
    file,
    bytes: (await stat(file)).size,
    spec,
    nicsToRestore: spec.nics.filter((n) => n.mode !== "emulated").map((n) => ({ name: n.name, mode: n.mode, vf: vfOfNic(n) })),
    releasedVfs,
  };
}

/**
 * The VM spec in a save file's JSON, as parseVmSpec wants it: files written
 * by older agents named the RAM file and the taps (the agent picks both now).
 */
export function savedSpec(raw: unknown): VmSpec {
  if (typeof raw !== "object" || raw === null) return parseVmSpec(raw);
  const o = { ...(raw as Record<string, unknown>) };
  if (typeof o["sharedMemoryPath"] === "string") {
    delete o["sharedMemoryPath"];
    o["sharedMemory"] = true;
  }
  const spec = Array.isArray(o["nics"]) ? { ...o, nics: o["nics"].map(unwire) } : o;
  return parseVmSpec(spec);
}

function unwire(n: unknown): unknown {
  if (typeof n !== "object" || n === null) return n;
  const nic = { ...(n as Record<string, unknown>) };
  if (typeof nic["standby"] === "object" && nic["standby"] !== null) nic["standby"] = { kind: "none" };
  const p = nic["primary"];
  if (typeof p === "object" && p !== null && (p as Record<string, unknown>)["kind"] === "stand-in") nic["primary"] = { ...(p as Record<string, unknown>), backend: { kind: "none" } };
  return nic;
}

export type RestoreResult = RestoreReply;

/** Restore a saved VM on this host with the VFs chosen now (`nics`: NIC name → VF BDF here, or null). */
export async function restoreInstance(ctx: StepContext, file: string, saved: VmSpec, nics: { name: string; vf: string | null }[], o: { primaryBackMs: number; timeoutMs: number }, signal: AbortSignal): Promise<RestoreResult> {
  await stat(file).catch((e: unknown) => {
    throw new FerryError("FERRY_ERR_NOT_FOUND", `no saved state at ${file} on ${ctx.host}: restore on a host that can read the file`, { cause: e, details: { file } });
  });
  const instanceId = newInstanceId();
  const holder = { kind: "instance" as const, vmUuid: saved.uuid, instanceId };
  const leased: string[] = [];
  let out: NicSpec[];
  let planned: Record<string, string | null>;
  try {
    ({ nics: out, planned } = arrivingNics(ctx, saved.nics, nics, holder, leased));
    // real VFs: on vfio-pci with the guest's MAC before the restoring QEMU opens them
    await ctx.vfLife.acquire(wantedVfs(saved.nics, planned), signal);
  } catch (e) {
    await releaseLeased(ctx.vfLife, ctx.leases, leased, holder);
    throw e;
  }
  const base: VmSpec = { ...saved, nics: out };
  let inst: Instance | undefined;
  try {
    const restoreSock = (i: Instance): string => join(i.paths.dir, "restore.sock");
    ({ inst } = await startIncoming(ctx, { spec: base, instanceId, listen: (i) => `unix:${restoreSock(i)}` }, signal));
    const sock = connect(restoreSock(inst));
    // QEMU closes the socket once it has read the whole state, which may be
    // before this end sees its own end() through ("Premature close"): QEMU's
    // status is the verdict; a stream error only explains a failure
    let streamError: unknown;
    const streamed = pipeline(createReadStream(file), sock, { signal }).catch((e: unknown) => {
      streamError = e;
    });
    const until = ctx.clock.monotonic() + o.timeoutMs;
    for (;;) {
      const m = await queryMigrate(inst.qmp, { signal });
      if (m.status === "completed") break;
      if (m.status === "failed") throw new FerryError("FERRY_ERR_MIGRATION", `restoring ${file} failed${m.errorDesc ? `: ${m.errorDesc}` : ""}${streamError instanceof Error ? ` (streaming the file: ${streamError.message})` : ""}`, { cause: streamError });
      if (ctx.clock.monotonic() > until) throw new FerryError("FERRY_ERR_TIMEOUT", `restoring ${file} did not complete within ${o.timeoutMs} ms`);
      await ctx.clock.sleep(20, signal);
    }
    sock.destroy();
    await streamed;
    await waitRunning(ctx, inst, signal);
    const nics = await bringBackNics(ctx, inst, inst.meta.spec, planned, { primaryBackMs: o.primaryBackMs, replugFails: false }, signal);
    await inst.saveMeta();
    return { instanceId, nics };
  } catch (e) {
    if (inst) await discard(ctx, inst);
    await releaseLeased(ctx.vfLife, ctx.leases, leased, holder);
    throw e;
  }
}
