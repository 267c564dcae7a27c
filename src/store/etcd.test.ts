import { after, before } from "node:test";
import { storeContract } from "./contract.ts";
import { EtcdConnection } from "./etcd-client.ts";
import { EtcdStore } from "./etcd.ts";
import { EtcdCluster } from "./testing/etcd-cluster.ts";

let cluster: EtcdCluster | undefined;
before(async () => {
  cluster = await EtcdCluster.start();
});
after(() => cluster?.close());

let n = 0;
/** A connection of its own under a prefix of its own: each test starts from an empty store. */
const connect = (prefix = `t${n++}/`): EtcdConnection => EtcdConnection.connect({ endpoints: cluster!.endpoints, prefix });

storeContract("etcd (one member)", () => new EtcdStore(connect(), { owns: true }));

