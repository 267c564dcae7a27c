// The parts of the controller API's replies the dashboard reads (the full
// schemas: src/wire/controller-api.ts, GET /openapi.json). Types only.

/** @typedef {{ network: string, used: number, total: number }} HostVfs */
/** @typedef {{ name: string, url: string, version: string, state: "up" | "down" | "draining", lastHeartbeat: number, vfs?: HostVfs[] | null, warnings?: string[] }} HostView */
/** @typedef {{ host: string, vf: string, pf: string, network: string, vendor: string, model: string, lease: string | null, vm: string | null }} DeviceRow */
/** @typedef {{ name: string, network: string, mode: string, policy: string, mac: string, address: string, vf: string | null }} VmNic */
/** @typedef {{ uuid: string, name: string, memoryMiB: number, vcpus: number, host: string, instanceId: string | null, state: string, noOs: boolean, nics: VmNic[] }} VmView */

/** @typedef {{ host: string, vf: string, pf: string }} VfRef */
/** @typedef {{ name: string, network: string, mode: string, policy: string, before: VfRef | null, after: VfRef | null }} NicPlan */
/** @typedef {{ name: string, policy: string, status: string, vf: VfRef | null, error?: string }} NicResult */
/** @typedef {{ startedAt: number, endedAt?: number, ms?: number }} PhaseTiming */
/** @typedef {{ probes: number, lost: number, longestGapMs: number, untilStableMs?: number | null }} Connectivity */
/** @typedef {{ status: string, transferredBytes: number, remainingBytes: number, totalBytes: number, dirtyPagesRate: number, mbps: number }} Progress */
/**
 * @typedef {{
 *   id: string, version: number,
 *   plan: { vm: { name: string, memoryMiB: number }, source: { host: string }, destination: { host: string }, nics: NicPlan[] },
 *   phase: string, outcome: string | null, reason: string | null, code: string | null, refused: boolean,
 *   runsOn: { host: string, instanceId: string } | null,
 *   nics: NicResult[],
 *   switchover: { totalMs: number, downtimeMs: number } | null,
 *   pastPointOfNoReturn: boolean, cancelRequested: boolean, pausedMs?: number,
 *   timings: Record<string, PhaseTiming | undefined>,
 *   connectivity?: Record<string, Connectivity>,
 *   settling?: boolean, measuring?: boolean, progress?: Progress,
 *   createdAt: number, updatedAt: number,
 * }} Migration
 */
/** @typedef {{ nic: string, network: string, mode: string, policy: string, vf: { vf: string, pf: string } | null, note: string }} NicAssignment */
/** @typedef {{ host: string, rank: number, score: number, complete: boolean, nics: NicAssignment[], explanation: string }} Destination */
/** @typedef {{ vm: string, source: string, destinations: Destination[], rejections: { host: string, code: string, message: string }[], message: string | null }} Plan */
/** @typedef {{ result: string, message: string, record: Migration }} CancelReport */
/** @typedef {{ seq: number, type: string, at: number, migrationId?: string, from?: string, to?: string, outcome?: string, reason?: string, host?: string, vm?: string, nic?: string, text?: string, step?: string, message?: string }} ControllerEvent */
/**
 * One migration's stream (GET /v1/migrations/:id/events; src/wire/migration-stream.ts): `phase` (replayed: told from the record),
 * `progress` (QEMU's RAM copy, while perform runs), `end` (the settled record; the stream closes), and its other events.
 * @typedef {{ type: "phase", migrationId: string, from: string | null, to: string, at: number, replayed?: true }
 *   | (Progress & { type: "progress", migrationId: string, at: number, expectedDowntimeMs?: number, iterations?: number })
 *   | { type: "end", migrationId: string, migration: Migration, at: number }
 *   | { type: "outcome", migrationId: string, outcome: string, reason: string, code: string | null, at: number }
 *   | { type: "step" | "step-failed" | "warning" | "tuned" | "cancel-requested" | "cleanup" | "nic-degraded" | "nic-missing", migrationId: string, at: number }} MigrationStreamEvent
 */

export {};
