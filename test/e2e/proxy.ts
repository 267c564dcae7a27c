// A TCP proxy in the test process that a test can cut (every socket
// destroyed, new connections refused) and restore: the cluster (cluster.ts,
// proxies: true) puts one in each direction between the controller and each
// agent. It listens where both sides reach it (loopback, or an apart
// cluster's management bridge) and connects to its target's address.
import type { Server, Socket } from "node:net";
import { connect, createServer } from "node:net";
import type { HttpRequest } from "../faults/observe.ts";
import { parseHttpRequests } from "../faults/observe.ts";

/** A TCP proxy to targetHost:target (default loopback), listening on listenHost (default loopback), that can be cut (every socket destroyed, new ones refused) and restored. */
export class CutProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  /** Client→server bytes of each connection, in order of connection (record: true). */
  readonly #recorded: Buffer[][] = [];
  readonly #record: boolean;
  #cut = false;
  readonly target: number;
  readonly targetHost: string;
  readonly listenHost: string;
  port = 0;

  constructor(target: number, o: { record?: boolean; targetHost?: string; listenHost?: string } = {}) {
    this.target = target;
    this.targetHost = o.targetHost ?? "127.0.0.1";
    this.listenHost = o.listenHost ?? "127.0.0.1";
    this.#record = o.record === true;
    this.#server = createServer((client) => {
      if (this.#cut) {
        client.destroy();
        return;
      }
      const upstream = connect(this.target, this.targetHost);
      if (this.#record) {
        const chunks: Buffer[] = [];
        this.#recorded.push(chunks);
        client.on("data", (b: Buffer) => chunks.push(b));
      }
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on("close", () => this.#sockets.delete(s));
        s.on("error", () => undefined);
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(0, this.listenHost, () => resolve());
    });
    const a = this.#server.address();
    this.port = typeof a === "object" && a !== null ? a.port : 0;
    return this;
  }

  get url(): string {
    return `http://${this.listenHost}:${this.port}`;
  }

  /** Every complete request that went through (record: true), connection by connection. */
  requests(): HttpRequest[] {
    return this.#recorded.flatMap((c) => parseHttpRequests(Buffer.concat(c)));
  }

  cut(): void {
    this.#cut = true;
    for (const s of this.#sockets) s.destroy();
  }

  restore(): void {
    this.#cut = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
