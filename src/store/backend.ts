// Which store the controller keeps its state in, and opening it: SQLite (the
// embedded default: one file in the state dir) or etcd (several controllers:
// `--store etcd://host:port,host:port` or `store:` in controller.yaml, with
// TLS and auth). The three parts (migrations and journal, hosts and VMs,
// events) share one SQLite file or one etcd connection.
import { FerryError } from "../core/errors.ts";
import type { Store } from "../migration/store-port.ts";
import type { EventLog, LoggedEvent } from "../model/events.ts";
import { SqliteClusterStore } from "./cluster.ts";
import type { ClusterStore } from "./cluster.ts";
import { EtcdClusterStore } from "./etcd-cluster-store.ts";
import { EtcdConnection, message } from "./etcd-client.ts";
import type { EtcdOptions } from "./etcd-client.ts";
import { EtcdEventLog } from "./etcd-events.ts";
import { EtcdStore } from "./etcd.ts";
import { SqliteEventLog } from "./events.ts";
import { SqliteStore } from "./sqlite.ts";

export type StoreConfig = { kind: "sqlite" } | ({ kind: "etcd" } & EtcdOptions);

/** `sqlite` or `etcd://host:port[,host:port…]`; FERRY_ERR_CONFIG (naming `field`) otherwise. */
export function parseStoreUrl(field: string, url: string): { kind: "sqlite" } | { kind: "etcd"; endpoints: string[] } {
  if (url === "sqlite") return { kind: "sqlite" };
  const m = /^etcd:\/\/(.+)$/.exec(url);
  if (!m) throw new FerryError("FERRY_ERR_CONFIG", `${field}: ${JSON.stringify(url)} is not a store: use sqlite (the default) or etcd://host:port[,host:port...]`, { details: { field } });
  const endpoints = m[1]!.split(",").map((e) => e.trim());
  for (const e of endpoints) {
    const hp = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(e);
    if (!hp || Number(hp[2]) < 1 || Number(hp[2]) > 65535) {
      throw new FerryError("FERRY_ERR_CONFIG", `${field}: etcd endpoint ${JSON.stringify(e)} is not host:port (port 1-65535), in ${url}`, { details: { field } });
    }
  }
  if (new Set(endpoints).size !== endpoints.length) throw new FerryError("FERRY_ERR_CONFIG", `${field}: an etcd endpoint is listed twice in ${url}`, { details: { field } });
  return { kind: "etcd", endpoints };
}

export interface Backend<E extends LoggedEvent> {
  store: Store;
  cluster: ClusterStore;
  eventLog: EventLog<E>;
  /** For the log: the SQLite file or the etcd endpoints. */
  where: string;
  /** The etcd connection (an etcd store): the leader election runs on it, and fences its writes. */
  etcd?: EtcdConnection;
  close(): Promise<void>;
}

/** Open the configured store (SQLite at `sqliteFile`); an etcd store must answer a quorum read first. */
export async function openBackend<E extends LoggedEvent>(config: StoreConfig, sqliteFile: string, o: { onEventLogError?: (e: unknown) => void } = {}): Promise<Backend<E>> {
  if (config.kind === "sqlite") {
    const store = new SqliteStore(sqliteFile);
    const cluster = new SqliteClusterStore(sqliteFile);
    const eventLog = new SqliteEventLog<E>(sqliteFile);
    return {
      store, cluster, eventLog, where: sqliteFile,
      close: () => {
        store.close();
        cluster.close();
        eventLog.close();
        return Promise.resolve();
      },
    };
  }
  const conn = await EtcdConnection.open(config);
  const where = `etcd://${conn.endpoints.join(",")}`;
  try {
    await conn.ping();
    const eventLog = await EtcdEventLog.open<E>(conn, o.onEventLogError ? { onError: o.onEventLogError } : {});
    return {
      store: new EtcdStore(conn), cluster: new EtcdClusterStore(conn), eventLog, where, etcd: conn,
      close: async () => {
        await eventLog.close();
        conn.close();
      },
    };
  } catch (e) {
    conn.close();
    throw new FerryError("FERRY_ERR_CONFIG", `cannot open the etcd store at ${where}: ${message(e)} (check that a quorum of its members runs, and the store's tls and auth options)`, { cause: e, details: { store: where } });
  }
}
