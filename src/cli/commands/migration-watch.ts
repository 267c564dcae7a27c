// Follow one migration from the controller's stream (GET
// /v1/migrations/:id/events) to its settled end: on a TTY a progress bar
// (percent of RAM sent, rate, ETA, current phase; cli-progress, loaded only
// then) with a line per phase above it; otherwise a plain line per phase and
// event (progress at most once a second); with `lines`, each event as one
// JSON line; `quiet`, nothing. A stream cut (the controller restarting) is
// opened again: the phases so far come first each time, and each is told once.
import type { ControllerClient } from "../../api/client.ts";
import { systemClock } from "../../core/clock.ts";
import { isFerryError } from "../../core/errors.ts";
import type { MigrationViewT } from "../../wire/controller-api.ts";
import type { MigrationStreamEvent, ProgressStreamEvent } from "../../wire/migration-stream.ts";
import { etaText, PaceWindow, plainEventLine, progressDetail, progressFigures, rateText } from "../render/migration-progress.ts";

export type WatchMode = "tty" | "plain" | "lines" | "quiet";

/** How long a cut stream is retried before giving up (the controller restarting takes seconds). */
const RECONNECT_FOR_MS = 120_000;

interface Sink {
  event(e: MigrationStreamEvent): void;
  close(): void;
}

function plainSink(t0: number, write: (s: string) => void): Sink {
  let told: ProgressStreamEvent | undefined;
  const pace = new PaceWindow();
  return {
    event(e) {
      if (e.type === "progress") {
        const prev = pace.push(e);
        if (told && e.at - told.at < 1_000) return;
        const line = plainEventLine(e, t0, prev);
        told = e;
        write(`${line ?? ""}\n`);
        return;
      }
      const line = plainEventLine(e, t0);
      if (line !== null) write(`${line}\n`);
    },
    close: () => undefined,
  };
}

async function ttySink(t0: number): Promise<Sink> {
  const { MultiBar, Presets } = await import("cli-progress");
  const bars = new MultiBar({ format: "{phase} [{bar}] {percentage}% | {rate} | ETA {eta_text} | {detail}", hideCursor: true, clearOnComplete: false, stopOnComplete: false, barsize: 30, etaBuffer: 1 }, Presets.shades_classic);
  let phase = "planned";
  const pace = new PaceWindow();
  let prev: ProgressStreamEvent | undefined;
  let last: ProgressStreamEvent | undefined;
  const payload = (): Record<string, string> => {
    const f = last && phase === "perform" ? progressFigures(last, prev) : undefined;
    return { phase: phase.padEnd(10), rate: f ? rateText(f.bytesPerSecond) : "-", eta_text: f ? etaText(f.etaS) : "-", detail: last && phase === "perform" ? progressDetail(last) : "" };
  };
  const bar = bars.create(100, 0, payload());
  return {
    event(e) {
      if (e.type === "progress") {
        [prev, last] = [pace.push(e), e];
        bar.update(progressFigures(e, prev).percent, payload());
        return;
      }
      if (e.type === "phase") {
        phase = e.to;
        // past perform the RAM is across (pre-switchover: the last pass is part of the switch-over)
        if (last && e.to !== "perform") bar.update(100, payload());
        else bar.update(payload());
      }
      const line = plainEventLine(e, t0);
      if (line !== null) bars.log(`${line}\n`);
    },
    close: () => bars.stop(),
  };
}

/** Follow migration `id` to its end; answers its settled record. */
export async function watchMigration(client: ControllerClient, id: string, o: { mode: WatchMode; createdAt: number; signal?: AbortSignal }): Promise<MigrationViewT> {
  const write = (s: string): void => void process.stdout.write(s);
  const sink: Sink = o.mode === "tty" ? await ttySink(o.createdAt)
    : o.mode === "plain" ? plainSink(o.createdAt, write)
    : o.mode === "lines" ? { event: (e) => write(`${JSON.stringify(e)}\n`), close: () => undefined }
    : { event: () => undefined, close: () => undefined };
  const told = new Set<string>();
  let end: MigrationViewT | undefined;
  let cutSince: number | undefined;
  try {
    while (end === undefined) {
      try {
        await client.migrationEvents(id, (e) => {
          cutSince = undefined;
          if (e.type === "phase") {
            const k = `${e.to}@${e.at}`;
            if (told.has(k)) return;
            told.add(k);
          }
          if (e.type === "end") end = e.migration;
          sink.event(e);
        }, o.signal ? { signal: o.signal } : {});
      } catch (e) {
        // the controller restarting: it resumes the migration; open the stream again
        if (!isFerryError(e, "FERRY_ERR_CONTROLLER")) throw e;
        cutSince ??= systemClock.monotonic();
        if (systemClock.monotonic() - cutSince > RECONNECT_FOR_MS) throw e;
      }
      if (o.signal?.aborted) break;
      if (end === undefined) await systemClock.sleep(500);
    }
  } finally {
    sink.close();
  }
  return end ?? client.migration(id);
}
