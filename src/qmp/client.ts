// QMP client: greeting and capability negotiation, commands correlated by
// id, events to subscribers and as filtered waits/iterators. Every call takes
// a signal; when the connection ends every pending call rejects at once.
import { connect as netConnect } from "node:net";
import type { Socket } from "node:net";
import { systemClock } from "../core/clock.ts";
import type { Clock } from "../core/clock.ts";
import { abortError, deadline, withSignal } from "../core/deadline.ts";
import { FerryError } from "../core/errors.ts";
import { DEFAULT_MAX_LINE_BYTES, LineReader, decodeMessage, encodeCommand } from "./protocol.ts";
import type { QmpEvent, QmpGreeting, QmpMessage } from "./protocol.ts";

export type { QmpEvent, QmpGreeting } from "./protocol.ts";

/** QEMU refused a command: carries QMP's error class (GenericError, DeviceNotFound, …). */
export class QmpCommandError extends FerryError {
  readonly qmpClass: string;
  constructor(command: string, qmpClass: string, desc: string) {
    super("FERRY_ERR_QMP", `${command}: ${desc}`, { details: { command, class: qmpClass } });
    this.name = "QmpCommandError";
    this.qmpClass = qmpClass;
  }
}

export type EventFilter = string | ((e: QmpEvent) => boolean) | { event: string; data?: Record<string, unknown> };

export function matches(filter: EventFilter, e: QmpEvent): boolean {
  if (typeof filter === "string") return e.event === filter;
  if (typeof filter === "function") return filter(e);
  if (e.event !== filter.event) return false;
  for (const [k, v] of Object.entries(filter.data ?? {})) if (e.data[k] !== v) return false;
  return true;
}

export interface QmpConnectOptions {
  signal?: AbortSignal;
  /** Total time allowed to connect and negotiate (default 10 s). */
  timeoutMs?: number;
  maxLineBytes?: number;
  clock?: Clock;
}

export interface CallOptions {
  signal?: AbortSignal;
  /** Default 30 s. */
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

export class QmpClient {
  readonly greeting: QmpGreeting;
  readonly #socket: Socket;
  readonly #clock: Clock;
  readonly #pending = new Map<string, Pending>();
  readonly #listeners = new Set<(e: QmpEvent) => void>();
  readonly #closeListeners = new Set<(err: FerryError) => void>();
  #nextId = 1;
  #closed: FerryError | undefined;

  private constructor(socket: Socket, greeting: QmpGreeting, reader: LineReader, clock: Clock) {
    this.#socket = socket;
    this.greeting = greeting;
    this.#clock = clock;
    socket.on("data", (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = reader.push(chunk);
      } catch (e) {
        this.#fail(e as FerryError);
        return;
      }
      for (const line of lines) {
        let msg: QmpMessage;
        try {
          msg = decodeMessage(line);
        } catch (e) {
          this.#fail(e as FerryError);
          return;
        }
        this.#dispatch(msg);
      }
    });
    socket.on("close", () => this.#fail(new FerryError("FERRY_ERR_QMP_CLOSED", "QMP connection closed (QEMU exited or closed the monitor)")));
    socket.on("error", (e) => this.#fail(new FerryError("FERRY_ERR_QMP_CLOSED", `QMP connection error: ${e.message}`, { cause: e })));
    socket.resume();
  }

  /** Connect to a QMP unix socket, read the greeting, negotiate capabilities. */
  static async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const clock = options.clock ?? systemClock;
    const signal = deadline(options.timeoutMs ?? 10_000, options.signal, clock);
    const reader = new LineReader(options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES);
    const socket = await withSignal(openSocket(path), signal, `QMP connect ${path}`);
    try {
      const greeting = await withSignal(readGreeting(socket, reader), signal, `QMP greeting on ${path}`);
      const client = new QmpClient(socket, greeting, reader, clock);
      await client.execute("qmp_capabilities", undefined, { signal });
      return client;
    } catch (e) {
      socket.destroy();
      throw e;
    }
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Run a command; resolves with its `return` value, rejects with QmpCommandError or a FerryError. */
  async execute(command: string, args?: Record<string, unknown>, options: CallOptions = {}): Promise<unknown> {
    if (this.#closed) throw this.#closed;
    const id = `ferry-${this.#nextId++}`;
    const signal = deadline(options.timeoutMs ?? 30_000, options.signal, this.#clock);
    const result = new Promise<unknown>((resolve, reject) => {
      this.#pending.set(id, { command, resolve, reject });
    });
    this.#socket.write(encodeCommand(id, command, args));
    try {
      return await withSignal(result, signal, `QMP ${command}`);
    } finally {
      this.#pending.delete(id);
    }
  }

  /** Subscribe to every event; returns an unsubscribe function. */
  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Called once when the connection ends, with the reason. */
  onClose(listener: (err: FerryError) => void): () => void {
    if (this.#closed) {
      listener(this.#closed);
      return () => undefined;
    }
    this.#closeListeners.add(listener);
    return () => this.#closeListeners.delete(listener);
  }

  /**
   * The next event matching `filter`, from now on. Arm it before issuing the
   * command that causes the event. Rejects on deadline/abort or when the
   * connection closes.
   */
  waitEvent(filter: EventFilter, options: CallOptions & { what?: string } = {}): Promise<QmpEvent> {
    const what = options.what ?? `QMP event ${describe(filter)}`;
    if (this.#closed) return Promise.reject(this.#closed);
    const signal = deadline(options.timeoutMs ?? 30_000, options.signal, this.#clock);
    return new Promise<QmpEvent>((resolve, reject) => {
      const cleanup = (): void => {
        off();
        offClose();
        signal.removeEventListener("abort", onAbort);
      };
      const off = this.onEvent((e) => {
        if (matches(filter, e)) {
          cleanup();
          resolve(e);
        }
      });
      const offClose = this.onClose((err) => {
        cleanup();
        reject(err);
      });
      const onAbort = (): void => {
        cleanup();
        reject(abortError(signal, what));
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Matching events as an async iterator, buffered from the moment of the
   * call (not from the first `next()`). Ends when the signal aborts, the
   * connection closes, or the consumer breaks out of its loop.
   */
  events(filter: EventFilter = () => true, options: { signal?: AbortSignal } = {}): AsyncIterableIterator<QmpEvent> {
    const queue: QmpEvent[] = [];
    let wake: (() => void) | undefined;
    let done = false;
    const finish = (): void => {
      done = true;
      off();
      offClose();
      options.signal?.removeEventListener("abort", finish);
      wake?.();
    };
    const off = this.onEvent((e) => {
      if (matches(filter, e)) {
        queue.push(e);
        wake?.();
      }
    });
    const offClose = this.onClose(finish);
    if (options.signal?.aborted) finish();
    else options.signal?.addEventListener("abort", finish, { once: true });
    const iterator: AsyncIterableIterator<QmpEvent> = {
      next: async (): Promise<IteratorResult<QmpEvent>> => {
        for (;;) {
          const e = queue.shift();
          if (e) return { value: e, done: false };
          if (done) return { value: undefined, done: true };
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      },
      return: (): Promise<IteratorResult<QmpEvent>> => {
        finish();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  close(): void {
    this.#fail(new FerryError("FERRY_ERR_QMP_CLOSED", "QMP connection closed by Ferry"));
  }

  #dispatch(msg: QmpMessage): void {
    switch (msg.kind) {
      case "event":
        for (const l of [...this.#listeners]) l(msg);
        return;
      case "return":
      case "error": {
        const p = msg.id === undefined ? undefined : this.#pending.get(msg.id);
        if (!p) return; // reply to a call that already gave up
        this.#pending.delete(msg.id as string);
        if (msg.kind === "return") p.resolve(msg.value);
        else p.reject(new QmpCommandError(p.command, msg.errorClass, msg.desc));
        return;
      }
      case "greeting":
        this.#fail(new FerryError("FERRY_ERR_QMP_PROTOCOL", "QMP: unexpected second greeting"));
        return;
    }
  }

  #fail(err: FerryError): void {
    if (this.#closed) return;
    this.#closed = err;
    this.#socket.destroy();
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    for (const l of [...this.#closeListeners]) l(err);
    this.#closeListeners.clear();
    this.#listeners.clear();
  }
}

function describe(filter: EventFilter): string {
  if (typeof filter === "string") return filter;
  if (typeof filter === "function") return "(predicate)";
  return filter.data ? `${filter.event} ${JSON.stringify(filter.data)}` : filter.event;
}

function openSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ path });
    s.once("connect", () => {
      s.removeAllListeners("error");
      resolve(s);
    });
    s.once("error", (e) => {
      s.destroy();
      reject(new FerryError("FERRY_ERR_QMP_CLOSED", `QMP connect ${path}: ${e.message}`, { cause: e, retryable: true }));
    });
  });
}

function readGreeting(socket: Socket, reader: LineReader): Promise<QmpGreeting> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      socket.off("data", onData);
      socket.off("close", onClose);
    };
    const onData = (chunk: Buffer): void => {
      try {
        // The greeting is the first line; QEMU sends nothing else before qmp_capabilities.
        const lines = reader.push(chunk);
        const first = lines[0];
        if (first === undefined) return;
        cleanup();
        socket.pause();
        const msg = decodeMessage(first);
        if (msg.kind !== "greeting") throw new FerryError("FERRY_ERR_QMP_PROTOCOL", `QMP: expected a greeting first, got ${first.slice(0, 200)}; the socket may not be this QEMU's monitor: see the instance's qemu.log, and retry (docs/known-issues.md)`, { details: { line: first.slice(0, 1000) } });
        resolve(msg); // the client's constructor resumes the socket once it listens
      } catch (e) {
        cleanup();
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    };
    const onClose = (): void => {
      cleanup();
      reject(new FerryError("FERRY_ERR_QMP_CLOSED", "QMP connection closed before the greeting"));
    };
    socket.on("data", onData);
    socket.on("close", onClose);
  });
}
