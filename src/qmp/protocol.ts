// QMP encoding: framing (one JSON object per line), decoding of server
// messages into a typed union, encoding of commands. No I/O here.
import { FerryError } from "../core/errors.ts";

export interface QmpGreeting {
  kind: "greeting";
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}
export interface QmpReturn {
  kind: "return";
  id: string | undefined;
  value: unknown;
}
export interface QmpErrorReply {
  kind: "error";
  id: string | undefined;
  errorClass: string;
  desc: string;
}
export interface QmpEvent {
  kind: "event";
  event: string;
  data: Record<string, unknown>;
  /** Microseconds since the epoch, from QEMU's timestamp. */
  timestampUs: number;
}
export type QmpMessage = QmpGreeting | QmpReturn | QmpErrorReply | QmpEvent;

export const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;

function protocolError(message: string, line?: string): FerryError {
  return new FerryError("FERRY_ERR_QMP_PROTOCOL", message, {
    details: line === undefined ? {} : { line: line.length > 200 ? `${line.slice(0, 200)}…` : line },
  });
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function optId(x: unknown): string | undefined {
  if (x === undefined) return undefined;
  if (typeof x === "string") return x;
  if (typeof x === "number") return String(x);
  return JSON.stringify(x);
}

/** Decode one line from QEMU. Throws FERRY_ERR_QMP_PROTOCOL on anything that is not a QMP message. */
export function decodeMessage(line: string): QmpMessage {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch (e) {
    throw protocolError(`QMP: malformed JSON from QEMU: ${(e as Error).message}`, line);
  }
  if (!isRecord(parsed)) throw protocolError("QMP: message is not a JSON object", line);
  if ("QMP" in parsed) {
    const qmp = parsed["QMP"];
    if (!isRecord(qmp) || !isRecord(qmp["version"]) || !isRecord(qmp["version"]["qemu"])) {
      throw protocolError("QMP: malformed greeting", line);
    }
    const q = qmp["version"]["qemu"];
    const caps = Array.isArray(qmp["capabilities"]) ? qmp["capabilities"].filter((c): c is string => typeof c === "string") : [];
    return {
      kind: "greeting",
      version: {
        qemu: { major: Number(q["major"]), minor: Number(q["minor"]), micro: Number(q["micro"]) },
        package: typeof qmp["version"]["package"] === "string" ? qmp["version"]["package"] : "",
      },
      capabilities: caps,
    };
  }
  if ("return" in parsed) return { kind: "return", id: optId(parsed["id"]), value: parsed["return"] };
  if ("error" in parsed) {
    const err = parsed["error"];
    if (!isRecord(err)) throw protocolError("QMP: malformed error reply", line);
    return {
      kind: "error",
      id: optId(parsed["id"]),
      errorClass: typeof err["class"] === "string" ? err["class"] : "GenericError",
      desc: typeof err["desc"] === "string" ? err["desc"] : "(no description)",
    };
  }
  if (typeof parsed["event"] === "string") {
    const ts = parsed["timestamp"];
    const timestampUs = isRecord(ts) ? Number(ts["seconds"]) * 1e6 + Number(ts["microseconds"]) : 0;
    return { kind: "event", event: parsed["event"], data: isRecord(parsed["data"]) ? parsed["data"] : {}, timestampUs };
  }
  throw protocolError("QMP: unknown message (no QMP, return, error or event member)", line);
}

export function encodeCommand(id: string, execute: string, args?: Record<string, unknown>): string {
  return `${JSON.stringify(args === undefined ? { execute, id } : { execute, arguments: args, id })}\n`;
}

/**
 * Splits a byte stream into lines. Rejects a line longer than maxLineBytes
 * and bytes that are not UTF-8.
 */
export class LineReader {
  readonly #max: number;
  #chunks: Buffer[] = [];
  #size = 0;
  readonly #decoder = new TextDecoder("utf-8", { fatal: true });

  constructor(maxLineBytes = DEFAULT_MAX_LINE_BYTES) {
    this.#max = maxLineBytes;
  }

  /** Feed bytes; returns the complete lines (without newline). Throws FERRY_ERR_QMP_PROTOCOL. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      const part = chunk.subarray(start, nl);
      if (this.#size + part.length > this.#max) throw this.#tooLong();
      this.#chunks.push(part);
      const whole = Buffer.concat(this.#chunks);
      this.#chunks = [];
      this.#size = 0;
      let text: string;
      try {
        text = this.#decoder.decode(whole);
      } catch {
        throw protocolError("QMP: line is not valid UTF-8");
      }
      text = text.replace(/\r$/, "");
      if (text.trim() !== "") lines.push(text);
      start = nl + 1;
    }
    const rest = chunk.subarray(start);
    if (rest.length > 0) {
      if (this.#size + rest.length > this.#max) throw this.#tooLong();
      this.#chunks.push(Buffer.from(rest));
      this.#size += rest.length;
    }
    return lines;
  }

  #tooLong(): FerryError {
    return protocolError(`QMP: line longer than ${this.#max} bytes`);
  }
}
