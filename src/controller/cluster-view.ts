// The controller's view of the cluster as it stands: each live host's agent
// inventory (a host that does not answer is left out), the scheduler's
// snapshot built from them, and the device list (`ferry devices`).
import type { InventoryView } from "../wire/agent-api.ts";
import type { DeviceRowT as DeviceRow } from "../wire/controller-api.ts";
import { FerryError, toFerryError } from "../core/errors.ts";
import type { ClusterSnapshot } from "../model/cluster.ts";
import type { HostRecord, VmRecord } from "../store/cluster.ts";
import type { ControllerContext } from "./context.ts";
import { buildSnapshot } from "./snapshot.ts";

export type { DeviceRowT as DeviceRow } from "../wire/controller-api.ts";

export class ClusterView {
  readonly #c: ControllerContext;

  constructor(c: ControllerContext) {
    this.#c = c;
  }

  /** The inventories of the hosts not down that answered, by host name. */
  async inventories(hosts: readonly HostRecord[]): Promise<Map<string, InventoryView>> {
    const live = hosts.filter((h) => h.state !== "down");
    const got = await Promise.all(
      live.map((h) =>
        this.#c.client(h)
          .inventory({ timeoutMs: 3_000, signal: this.#c.signal })
          .then(
            (inv) => [h.name, inv] as const,
            (e: unknown) => {
              this.#c.d.log.warn({ host: h.name, err: toFerryError(e).message }, "inventory unavailable");
              return undefined;
            },
          ),
      ),
    );
    return new Map(got.filter((x) => x !== undefined));
  }

  async snapshot(): Promise<{ snapshot: ClusterSnapshot; inventories: Map<string, InventoryView>; vms: VmRecord[]; hosts: HostRecord[] }> {
    const hosts = await this.#c.d.cluster.listHosts();
    const vms = await this.#c.d.cluster.listVms();
    const inventories = await this.inventories(hosts);
    return { snapshot: buildSnapshot({ hosts, vms, inventories, capacity: this.#c.d.config.hostCapacity }), inventories, vms, hosts };
  }

  async devices(filter: { host?: string; network?: string } = {}): Promise<DeviceRow[]> {
    const hosts = (await this.#c.d.cluster.listHosts()).filter((h) => filter.host === undefined || h.name === filter.host);
    if (filter.host !== undefined && hosts.length === 0) throw new FerryError("FERRY_ERR_NOT_FOUND", `host ${filter.host} not found`, { details: { host: filter.host } });
    const invs = await this.inventories(hosts);
    const vms = await this.#c.d.cluster.listVms();
    const byInstance = new Map(vms.filter((v) => v.instanceId !== null).map((v) => [`${v.host}/${v.instanceId ?? ""}`, v.name]));
    const byUuid = new Map(vms.map((v) => [v.uuid, v.name]));
    const rows: DeviceRow[] = [];
    for (const [host, inv] of [...invs].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      for (const v of inv.vfs) {
        if (filter.network !== undefined && v.network !== filter.network) continue;
        const l = v.lease;
        rows.push({
          host, vf: v.bdf, pf: v.pf, network: v.network, vendor: v.vendor, device: v.device, numaNode: v.numaNode, mac: v.mac,
          model: v.standIn ? `stand-in ${v.standIn.model}` : "vfio",
          lease: l === null ? null : l.kind === "instance" ? `instance ${l.instanceId}` : `migration ${l.migrationId}`,
          vm: l === null ? null : l.kind === "instance" ? (byInstance.get(`${host}/${l.instanceId}`) ?? byUuid.get(l.vmUuid) ?? null) : (byUuid.get(l.vmUuid) ?? null),
        });
      }
    }
    return rows;
  }
}
