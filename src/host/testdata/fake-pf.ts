// The one fake allowed: an SR-IOV PF this machine lacks. A Runner that
// answers `ip -json -d link show dev PF` and `ip link set dev PF vf N …` as
// iproute2 does on a real PF (output shape recorded from iproute2 6.1), keeps
// the VFs' state, records every argv, and can be told to refuse a setting.
import { FerryError } from "../../core/errors.ts";
import type { RunOptions, RunResult, Runner } from "../../core/run.ts";

export interface FakeVf {
  mac: string;
  vlan: number;
  spoofchk: boolean;
  trust: boolean;
}

export interface FakePf {
  run: Runner;
  calls: string[][];
  vfs: FakeVf[];
  /** Refuse `ip link set … vf N <key> …` for these (index, key) pairs, like a driver without that feature. */
  refuse: { vf: number; key: "mac" | "vlan" | "spoofchk" | "trust" }[];
}

export function fakePf(ifname: string, vfs: FakeVf[]): FakePf {
  const pf: FakePf = { run: undefined as unknown as Runner, calls: [], vfs, refuse: [] };
  const answer = (code: number, stdout: string, stderr: string, file: string, args: readonly string[], o?: RunOptions): RunResult => {
    if (code !== 0 && !o?.allowFailure) {
      throw new FerryError("FERRY_ERR_COMMAND", `${file} ${args.join(" ")}: exit ${code}: ${stderr.trim()}`, { details: { file, args: [...args], exitCode: code, stderr } });
    }
    return { code, stdout, stderr };
  };
  pf.run = (file, args, o) => {
    pf.calls.push([file, ...args]);
    const a = [...args];
    if (file === "ip" && a.join(" ") === `-json -d link show dev ${ifname}`) {
      const vfinfo = pf.vfs.map((x, i) => ({
        vf: i,
        link_type: "ether",
        address: x.mac,
        broadcast: "ff:ff:ff:ff:ff:ff",
        ...(x.vlan ? { vlan_list: [{ vlan: x.vlan, qos: 0, protocol: "802.1Q" }] } : {}),
        rate: { max_tx: 0, min_tx: 0 },
        spoofchk: x.spoofchk,
        link_state: "auto",
        trust: x.trust,
        query_rss_en: false,
      }));
      const link = [{ ifindex: 4, ifname, flags: ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], mtu: 1500, qdisc: "mq", operstate: "UP", linkmode: "DEFAULT", group: "default", txqlen: 1000, link_type: "ether", address: "3c:fd:fe:a1:b2:c0", broadcast: "ff:ff:ff:ff:ff:ff", promiscuity: 0, min_mtu: 68, max_mtu: 9710, num_vf: pf.vfs.length, vfinfo_list: vfinfo, num_tx_queues: 64, num_rx_queues: 64, parentbus: "pci", parentdev: "0000:3b:00.0" }];
      return Promise.resolve(answer(0, JSON.stringify(link) + "\n", "", file, args, o));
    }
    if (file === "ip" && a[0] === "link" && a[1] === "set" && a[2] === "dev" && a[3] === ifname && a[4] === "vf") {
      const i = Number(a[5]);
      const vf = pf.vfs[i];
      if (!vf) return Promise.resolve(answer(2, "", "RTNETLINK answers: Invalid argument\n", file, args, o));
      // Like the kernel (do_setvfinfo), attributes are applied one by one: a refusal leaves the earlier ones applied.
      const next = vf;
      for (let k = 6; k < a.length; k += 2) {
        const key = a[k];
        const val = a[k + 1] ?? "";
        if (pf.refuse.some((r) => r.vf === i && r.key === key)) return Promise.resolve(answer(2, "", "RTNETLINK answers: Operation not supported\n", file, args, o));
        if (key === "mac") next.mac = val;
        else if (key === "vlan") next.vlan = Number(val);
        else if (key === "qos") continue;
        else if (key === "spoofchk") next.spoofchk = val === "on";
        else if (key === "trust") next.trust = val === "on";
        else return Promise.resolve(answer(255, "", `Error: argument "${key}" is wrong\n`, file, args, o));
      }
      return Promise.resolve(answer(0, "", "", file, args, o));
    }
    return Promise.resolve(answer(255, "", `fake PF: unexpected command ${file} ${a.join(" ")}\n`, file, args, o));
  };
  return pf;
}
