// The lab's connectivity measurement: during a migration the fabric's peer
// probes each NIC's guest address every 10 ms; the result goes into the
// migration record (`connectivity: { probes, lost, longestGapMs }` per NIC).
import type { ConnectivityWatch } from "../controller/controller.ts";
import type { Connectivity } from "../migration/types.ts";
import { openFabric, pinPeerNeighbor } from "./fabric.ts";
import { startProbe } from "./probe.ts";
import type { Probe } from "./probe.ts";

export function labConnectivity(fabricName: string): ConnectivityWatch {
  return {
    async start(vm) {
      const fabric = await openFabric(fabricName);
      if (!fabric) throw new Error(`lab fabric ${fabricName} is gone`);
      const probes = new Map<string, Probe>();
      for (const nic of vm.nics) {
        if (!fabric.networks.some((n) => n.name === nic.network)) continue;
        const ip = nic.address.split("/")[0]!;
        // a VF keeps the guest MAC: pin it on the peer so an ARP retry timer does not decide the gap
        await pinPeerNeighbor(fabric, nic.network, ip, nic.mac);
        probes.set(nic.name, await startProbe({ netns: fabric.netns, target: ip }));
      }
      return {
        async stop() {
          const out: Record<string, Connectivity> = {};
          for (const [nic, p] of probes) {
            const r = await p.stop();
            out[nic] = { probes: r.probes, lost: r.lost, longestGapMs: Math.round(r.longestGapMs) };
          }
          return out;
        },
      };
    },
  };
}
