// A controller with in-memory stores and its HTTP app (not listening), no
// hosts: what the bad-input and security tests send their requests to.
import { buildControllerApp } from "../../src/api/app.ts";
import { DEFAULT_DEADLINES } from "../../src/controller/config.ts";
import { Controller } from "../../src/controller/controller.ts";
import { FakeClock } from "../../src/core/clock.ts";
import { silentLogger } from "../../src/core/log.ts";
import type { TlsMaterial } from "../../src/core/tls.ts";
import { SqliteClusterStore } from "../../src/store/cluster.ts";
import { SqliteStore } from "../../src/store/sqlite.ts";

export interface MemoryController {
  controller: Controller;
  cluster: SqliteClusterStore;
  app: ReturnType<typeof buildControllerApp>;
  close: () => Promise<void>;
}

export function memoryController(token: string, o: { tls?: TlsMaterial; agentToken?: string } = {}): MemoryController {
  const clock = new FakeClock();
  const store = new SqliteStore(":memory:");
  const cluster = new SqliteClusterStore(":memory:");
  const controller = new Controller({
    config: { heartbeatTimeoutMs: 6000, hostCapacity: { memoryMiB: 16384, vcpus: 16 }, deadlines: DEFAULT_DEADLINES },
    store, cluster, clock, log: silentLogger, agentToken: o.agentToken ?? "a".repeat(40), guestImage: () => Promise.resolve({ kernel: "/k", initrd: "/i" }),
  });
  const app = buildControllerApp({ controller, token, version: "0.0.0", clock }, { tls: o.tls });
  return {
    controller, cluster, app,
    close: async () => {
      await app.close();
      store.close();
      cluster.close();
    },
  };
}
