// The `store:` section of controller.yaml (and --store): where the controller
// keeps its state.
//
//   store: sqlite                                      # the default: controller.db in stateDir
//   store:
//     url: etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379
//     tls: { ca: etcd/ca.crt, cert: etcd/ctl.crt, key: etcd/ctl.key }   # https to etcd; cert and key when
//                                                      # etcd demands client certificates (--client-cert-auth);
//                                                      # serverName: a DNS name in the members' certificates,
//                                                      # required with IP endpoints (Node takes no IP as TLS name)
//     username: ferry                                  # etcd auth: the user and a file holding its password
//     passwordFile: /etc/ferry/etcd-password
//     prefix: ferry/                                   # every key under it (several clusters, one etcd)
import type { Ctx, Path } from "../model/yaml-config.ts";
import { parseStoreUrl } from "../store/backend.ts";
import type { StoreConfig } from "../store/backend.ts";

const FIELDS = ["url", "tls", "username", "passwordFile", "prefix"];

export function parseStoreConfig(c: Ctx, path: Path, x: unknown): StoreConfig {
  if (x === undefined) return { kind: "sqlite" };
  const url = (p: Path, u: unknown): ReturnType<typeof parseStoreUrl> =>
    c.check(p, (f) => {
      if (typeof u !== "string") throw c.error(p, "must be sqlite or etcd://host:port[,host:port...]");
      try {
        return parseStoreUrl(f, u);
      } catch (e) {
        throw c.error(p, e instanceof Error ? e.message.replace(`${f}: `, "") : String(e), e);
      }
    });
  if (typeof x === "string") return url(path, x);
  const o = c.obj(path, x, FIELDS);
  if (o["url"] === undefined) throw c.error([...path, "url"], "required (sqlite or etcd://host:port[,host:port...])");
  const kind = url([...path, "url"], o["url"]);
  if (kind.kind === "sqlite") {
    const extra = FIELDS.find((k) => k !== "url" && o[k] !== undefined);
    if (extra) throw c.error([...path, extra], "only for an etcd store (url: etcd://...)");
    return kind;
  }
  const out: StoreConfig = { ...kind };
  if (o["tls"] !== undefined) {
    const t = c.obj([...path, "tls"], o["tls"], ["ca", "cert", "key", "serverName"]);
    const serverName = t["serverName"];
    if (serverName !== undefined && (typeof serverName !== "string" || !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(serverName))) throw c.error([...path, "tls", "serverName"], "must be a DNS name");
    if (t["ca"] === undefined) throw c.error([...path, "tls", "ca"], "required (the CA that signed the etcd members' certificates)");
    if ((t["cert"] === undefined) !== (t["key"] === undefined)) throw c.error([...path, "tls", t["cert"] === undefined ? "cert" : "key"], "cert and key go together (the client certificate etcd asks for)");
    out.tls = { ca: c.path([...path, "tls", "ca"], t["ca"]), ...(typeof serverName === "string" ? { serverName } : {}), ...(t["cert"] === undefined ? {} : { cert: c.path([...path, "tls", "cert"], t["cert"]), key: c.path([...path, "tls", "key"], t["key"]) }) };
  }
  if ((o["username"] === undefined) !== (o["passwordFile"] === undefined)) {
    throw c.error([...path, o["username"] === undefined ? "username" : "passwordFile"], "username and passwordFile go together (etcd auth)");
  }
  if (o["username"] !== undefined) {
    const username = o["username"];
    if (typeof username !== "string" || !/^[A-Za-z0-9_.@-]{1,128}$/.test(username)) throw c.error([...path, "username"], "must be an etcd user name (letters, digits, _ . @ -)");
    out.auth = { username, passwordFile: c.path([...path, "passwordFile"], o["passwordFile"]) };
  }
  if (o["prefix"] !== undefined) {
    const prefix = o["prefix"];
    if (typeof prefix !== "string" || !/^[A-Za-z0-9_.-]+\/$/.test(prefix)) throw c.error([...path, "prefix"], "must be letters, digits, _ . - ending in / (e.g. ferry/)");
    out.prefix = prefix;
  }
  return out;
}
