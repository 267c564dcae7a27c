// For the controller API's tests: a real Controller on in-memory SQLite and a
// fake clock, behind the real fastify app (requests by app.inject), with no
// agents (their fetch fails, as with agents that are down).
import { after } from "node:test";
import { Controller } from "../controller/controller.ts";
import { DEFAULT_DEADLINES } from "../controller/config.ts";
import { FakeClock } from "../core/clock.ts";
import { silentLogger } from "../core/log.ts";
import { SqliteClusterStore } from "../store/cluster.ts";
import { SqliteStore } from "../store/sqlite.ts";
import { buildControllerApp } from "./app.ts";

export const TEST_TOKEN = "t".repeat(32);

/** The controller, its stores, clock and app; closed after the test file. */
export function memoryControllerApp(): { clock: FakeClock; store: SqliteStore; cluster: SqliteClusterStore; controller: Controller; app: ReturnType<typeof buildControllerApp>; auth: { authorization: string } } {
  const clock = new FakeClock();
  const store = new SqliteStore(":memory:");
  const cluster = new SqliteClusterStore(":memory:");
  const controller = new Controller({
    config: { heartbeatTimeoutMs: 6000, hostCapacity: { memoryMiB: 16384, vcpus: 16 }, deadlines: DEFAULT_DEADLINES },
    store, cluster, clock, log: silentLogger, agentToken: "a".repeat(32), guestImage: () => Promise.resolve({ kernel: "/k", initrd: "/i" }),
    fetch: () => Promise.reject(new Error("no agents in this test")),
  });
  const app = buildControllerApp({ controller, token: TEST_TOKEN, version: "0.0.0", clock });
  after(async () => {
    await app.close();
    store.close();
    cluster.close();
  });
  return { clock, store, cluster, controller, app, auth: { authorization: `Bearer ${TEST_TOKEN}` } };
}
