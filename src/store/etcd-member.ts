// How Ferry starts one member of a Debian etcd (package etcd-server) cluster
// on loopback: its flags and its environment. Used by the lab's etcd
// (src/lab/lab-etcd.ts) and the tests' (src/store/testing/etcd-cluster.ts).

export interface EtcdMemberFlags {
  name: string;
  dataDir: string;
  /** http(s)://127.0.0.1:PORT: where clients reach it. */
  clientUrl: string;
  /** http://127.0.0.1:PORT: where the other members reach it. */
  peerUrl: string;
  /** `name=peerUrl,…` of every member. */
  cluster: string;
  token: string;
  /** Raft's election timeout (default 500 ms; etcd's own default is 1000), the heartbeat a tenth of it. */
  electionTimeoutMs?: number;
}

/** A new member's argv (after the binary): the cluster's first start, logs at warn. */
export function etcdMemberArgs(m: EtcdMemberFlags): string[] {
  return [
    "--name", m.name,
    "--data-dir", m.dataDir,
    "--listen-client-urls", m.clientUrl,
    "--advertise-client-urls", m.clientUrl,
    "--listen-peer-urls", m.peerUrl,
    "--initial-advertise-peer-urls", m.peerUrl,
    "--initial-cluster", m.cluster,
    "--initial-cluster-state", "new",
    "--initial-cluster-token", m.token,
    // a raft leader's death is noticed in 0.5 s, not etcd's default 1 s: until a new one is elected no lease is renewed,
    // and with the default a controller's 2 s lease could run out on its side (it then stops leading) when the etcd
    // member that led died; loopback heartbeats every 50 ms cost nothing
    "--heartbeat-interval", String(Math.round((m.electionTimeoutMs ?? 500) / 10)),
    "--election-timeout", String(m.electionTimeoutMs ?? 500),
    "--logger", "zap",
    "--log-level", "warn",
  ];
}

/** The caller's environment without ETCD_* variables (etcd reads its flags from them). */
export function etcdEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ETCD")));
}
