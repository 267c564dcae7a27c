// Test helper: a unix-socket server that replays a recorded QMP transcript
// (src/qmp/testdata/*.jsonl) to a client, checking the client sends the
// recorded commands in order. Also usable as a scriptable fake QEMU monitor.
import { readFileSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import type { Server, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TranscriptEntry {
  dir: "c" | "s";
  line: string;
}

export function loadTranscript(name: string): TranscriptEntry[] {
  const text = readFileSync(new URL(`./testdata/${name}.jsonl`, import.meta.url), "utf8");
  return text.trim().split("\n").map((l) => JSON.parse(l) as TranscriptEntry);
}

export interface ReplayServer {
  path: string;
  /** Commands the client sent that differ from the transcript (should stay empty). */
  mismatches: string[];
  /** The server side of the current connection. */
  socket(): Socket | undefined;
  close(): Promise<void>;
}

function withId(line: string, id: unknown): string {
  const obj = JSON.parse(line) as Record<string, unknown>;
  if (("return" in obj || "error" in obj) && id !== undefined) obj["id"] = id;
  return JSON.stringify(obj);
}

/** Serve `entries` on a fresh unix socket. */
export async function replayServer(entries: TranscriptEntry[]): Promise<ReplayServer> {
  const dir = mkdtempSync(join(tmpdir(), "ferry-qmp-"));
  const path = join(dir, "qmp.sock");
  const mismatches: string[] = [];
  let current: Socket | undefined;
  const server: Server = createServer((sock) => {
    current = sock;
    let i = 0;
    const flush = (id?: unknown): void => {
      while (i < entries.length && entries[i]!.dir === "s") {
        sock.write(`${withId(entries[i]!.line, id)}\n`);
        i++;
      }
    };
    flush();
    let buf = "";
    sock.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const got = JSON.parse(line) as Record<string, unknown>;
        const want = i < entries.length ? (JSON.parse(entries[i]!.line) as Record<string, unknown>) : undefined;
        if (!want || want["execute"] !== got["execute"]) {
          mismatches.push(`expected ${String(want?.["execute"])}, got ${String(got["execute"])}`);
          sock.write(`${JSON.stringify({ error: { class: "GenericError", desc: "replay: unexpected command" }, id: got["id"] })}\n`);
          continue;
        }
        i++;
        flush(got["id"]);
      }
    });
    sock.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path,
    mismatches,
    socket: () => current,
    close: async () => {
      current?.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A monitor that sends the greeting, answers qmp_capabilities, then hands each later line to `onLine`. */
export async function scriptedServer(onLine: (sock: Socket, cmd: Record<string, unknown>) => void): Promise<ReplayServer> {
  const greeting = loadTranscript("basic")[0]!;
  const dir = mkdtempSync(join(tmpdir(), "ferry-qmp-"));
  const path = join(dir, "qmp.sock");
  let current: Socket | undefined;
  const server = createServer((sock) => {
    current = sock;
    sock.write(`${greeting.line}\n`);
    let buf = "";
    sock.on("data", (d: Buffer) => {
      buf += d.toString("utf8");
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const cmd = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        if (cmd["execute"] === "qmp_capabilities") sock.write(`${JSON.stringify({ return: {}, id: cmd["id"] })}\n`);
        else onLine(sock, cmd);
      }
    });
    sock.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path,
    mismatches: [],
    socket: () => current,
    close: async () => {
      current?.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
