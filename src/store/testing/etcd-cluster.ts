// A real etcd cluster for tests: 1 or 3 members of Debian's `etcd` (package
// etcd-server, scripts/programs.txt) on 127.0.0.1, with ports chosen per
// cluster (free ones, asked of the kernel) and data in a temp dir. Members are
// started, killed, stopped (SIGSTOP) and restarted by pid, never by name, so
// the system's own etcd service (if any) and other tests' clusters are never
// touched. start() returns when every member answers /health, or fails at its
// deadline with the tail of each member's log; close() kills every member and
// removes the data, also when a test failed (and the process-exit hook kills
// members a crashed test left running).
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FerryError } from "../../core/errors.ts";
import { freePorts } from "../../core/ports.ts";
import { etcdEnv, etcdMemberArgs } from "../etcd-member.ts";

export interface EtcdClusterOptions {
  /** 1 (default) or 3 members. */
  members?: 1 | 3;
  /** How long start() waits for every member's /health (default 30 s). */
  startTimeoutMs?: number;
  /** The etcd binary (default `etcd` on PATH). */
  binary?: string;
  /** Serve clients over TLS with these PEM files, and demand client certificates signed by `ca`. */
  tls?: { cert: string; key: string; ca: string };
  /** Raft's election timeout (default 500 ms, as the lab's; etcd's own default is 1000). */
  electionTimeoutMs?: number;
}

export interface EtcdMember {
  name: string;
  clientPort: number;
  peerPort: number;
  /** http(s)://127.0.0.1:clientPort */
  endpoint: string;
  dataDir: string;
  /** The running process's pid; undefined while the member is down. */
  pid: number | undefined;
}

interface Running {
  child: ChildProcess;
  exited: Promise<void>;
  log: string[];
}

const live = new Set<number>();
process.on("exit", () => {
  for (const pid of live) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone already
    }
  }
});

export { freePorts } from "../../core/ports.ts";

/** Whether 127.0.0.1:port takes a TCP connection (within 1 s). */
function accepts(port: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: "127.0.0.1", port, signal: AbortSignal.any([signal, AbortSignal.timeout(1000)]) });
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => resolve(false));
  });
}

export class EtcdCluster {
  readonly members: EtcdMember[];
  readonly dir: string;
  readonly #binary: string;
  readonly #tls: EtcdClusterOptions["tls"];
  readonly #electionTimeoutMs: number | undefined;
  readonly #token: string;
  readonly #running = new Map<number, Running>();

  private constructor(dir: string, members: EtcdMember[], o: EtcdClusterOptions) {
    this.dir = dir;
    this.members = members;
    const binary = o.binary ?? "etcd";
    this.#binary = binary;
    this.#tls = o.tls;
    this.#electionTimeoutMs = o.electionTimeoutMs;
    this.#token = `ferry-test-${randomBytes(6).toString("hex")}`;
  }

  /** Start a new cluster and wait until every member is healthy. */
  static async start(o: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const n = o.members ?? 1;
    const dir = await mkdtemp(join(tmpdir(), "ferry-etcd-"));
    const ports = await freePorts(2 * n);
    const scheme = o.tls ? "https" : "http";
    const members = Array.from({ length: n }, (_, i): EtcdMember => {
      const clientPort = ports[2 * i]!;
      return { name: `m${i}`, clientPort, peerPort: ports[2 * i + 1]!, endpoint: `${scheme}://127.0.0.1:${clientPort}`, dataDir: join(dir, `m${i}`), pid: undefined };
    });
    const c = new EtcdCluster(dir, members, o);
    try {
      for (let i = 0; i < n; i++) c.#spawn(i);
      await c.waitHealthy(o.startTimeoutMs ?? 30_000);
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  /** The client endpoints of the members, as `etcd3` and `--store etcd://` take them. */
  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  /** `etcd://127.0.0.1:A,127.0.0.1:B,…` */
  get storeUrl(): string {
    return `etcd://${this.members.map((m) => `127.0.0.1:${m.clientPort}`).join(",")}`;
  }

  #spawn(i: number): void {
    const m = this.members[i]!;
    const peers = this.members.map((p) => `${p.name}=http://127.0.0.1:${p.peerPort}`).join(",");
    const args = [
      ...etcdMemberArgs({ name: m.name, dataDir: m.dataDir, clientUrl: m.endpoint, peerUrl: `http://127.0.0.1:${m.peerPort}`, cluster: peers, token: this.#token, ...(this.#electionTimeoutMs === undefined ? {} : { electionTimeoutMs: this.#electionTimeoutMs }) }),
      ...(this.#tls ? ["--cert-file", this.#tls.cert, "--key-file", this.#tls.key, "--trusted-ca-file", this.#tls.ca, "--client-cert-auth"] : []),
    ];
    const env = etcdEnv();
    const child = spawn(this.#binary, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    const log: string[] = [];
    const keep = (b: Buffer): void => {
      log.push(b.toString("utf8"));
      if (log.length > 200) log.splice(0, log.length - 200);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    const exited = new Promise<void>((resolve) => {
      child.once("error", (e) => {
        log.push(`spawn ${this.#binary}: ${e.message}${(e as NodeJS.ErrnoException).code === "ENOENT" ? " (install Debian's etcd-server: npm run setup)" : ""}\n`);
        resolve();
      });
      child.once("exit", () => resolve());
    });
    void exited.then(() => {
      if (child.pid !== undefined) live.delete(child.pid);
      if (m.pid === child.pid) m.pid = undefined;
    });
    if (child.pid !== undefined) live.add(child.pid);
    m.pid = child.pid;
    this.#running.set(i, { child, exited, log });
  }

  /** The last lines member `i` logged. */
  log(i: number): string {
    return (this.#running.get(i)?.log ?? []).join("").split("\n").slice(-15).join("\n");
  }

  async #healthy(m: EtcdMember, signal: AbortSignal): Promise<boolean> {
    // /health over mutual TLS needs a client certificate: the member's client port taking a connection (etcd holds a
    // request there until it serves) — a member only spawned refused the first call (ECONNREFUSED: backend.test in CI)
    if (this.#tls) return m.pid !== undefined && (await accepts(m.clientPort, signal));
    try {
      const res = await fetch(`${m.endpoint}/health`, { signal: AbortSignal.any([signal, AbortSignal.timeout(1000)]) });
      const body = (await res.json()) as { health?: unknown };
      return res.ok && body.health === "true";
    } catch {
      return false;
    }
  }

  /** Wait until every running member answers /health (with a quorum behind it), or throw at the deadline. */
  async waitHealthy(timeoutMs = 30_000, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      const up = this.members.filter((m) => m.pid !== undefined);
      const dead = this.members.filter((_, i) => this.#running.has(i) && this.members[i]!.pid === undefined && this.#running.get(i)!.child.exitCode !== null);
      const ok = await Promise.all(up.map((m) => this.#healthy(m, signal ?? new AbortController().signal)));
      if (up.length > 0 && ok.every(Boolean)) return;
      if (Date.now() >= deadline || (up.length === 0 && dead.length > 0)) {
        const logs = this.members.map((m, i) => `${m.name} (pid ${m.pid ?? "none"}):\n${this.log(i)}`).join("\n");
        throw new FerryError("FERRY_ERR_TIMEOUT", `etcd test cluster not healthy after ${timeoutMs} ms\n${logs}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Send `signal` to member `i` by its pid; SIGKILL/SIGTERM wait for it to exit. */
  async kill(i: number, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const m = this.members[i]!;
    const r = this.#running.get(i);
    if (m.pid === undefined || !r) return;
    process.kill(m.pid, signal);
    if (signal === "SIGKILL" || signal === "SIGTERM") await r.exited;
  }

  /** Start member `i` again on its ports and data dir (after kill). */
  async restart(i: number, timeoutMs = 30_000): Promise<void> {
    if (this.members[i]!.pid !== undefined) throw new Error(`etcd member ${i} is still running`);
    this.#spawn(i);
    await this.waitHealthy(timeoutMs);
  }

  /** Kill every member by pid (SIGKILL: its data goes too, nothing to flush) and remove the data. */
  async close(): Promise<void> {
    await Promise.all(
      this.members.map(async (m, i) => {
        const r = this.#running.get(i);
        if (m.pid === undefined || !r) return;
        try {
          process.kill(m.pid, "SIGKILL");
        } catch {
          return;
        }
        await r.exited;
      }),
    );
    await rm(this.dir, { recursive: true, force: true });
  }
}
