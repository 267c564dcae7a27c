// `ferry lab up|down|status|kill|start|fault`: several simulated hosts on this
// machine (src/lab/lab.ts). Lab only: fault switches are refused elsewhere.
import { readFile } from "node:fs/promises";
import { labDown, labFault, labKillDetail, labSpec, labStart, labStatus, labUp } from "../../lab/lab.ts";
import { FAULTS } from "../../agent/faults.ts";
import { UsageError } from "../args.ts";
import { command } from "../command.ts";
import { EXIT } from "../exit-codes.ts";
import { renderTable } from "../render/table.ts";

export const USAGE = `usage:
  ferry lab up [--hosts N] [--config lab.yaml] [--name NAME]   namespace, bridges, controller, agents
      [--forwarding unmanaged]                                   raw QEMU failover: no forwarding-path management (benchmarks)
      [--no-tls]                                                 plain HTTP (default: mutual TLS, a CA and certificates in the lab dir)
      [--shared]                                                 hosts share this machine's network and mount namespaces (default:
                                                                 each host apart, in namespaces of its own, cabled by management,
                                                                 migration and uplink networks)
      [--controllers N --store etcd]                             N controllers (1-5) on a three-member etcd cluster of the
                                                                 lab's own, one elected leader (default: one on SQLite)
  ferry lab down [--name NAME]                                   remove all of it (also after a crash)
  ferry lab status [--json] [--name NAME]                        each component's pid and address (controllers: leader or follower)
  ferry lab kill controller|controller-N|HOST                    SIGKILL it by its recorded pid (controller: the current leader)
  ferry lab start controller|controller-N|HOST                   start it again (controller: every controller that is down)
  ferry lab fault HOST NAME [--once]                             arm a fault switch: ${FAULTS.join(", ")}
lab.yaml: { networks: [physnet1, physnet2], model: vmxnet3, vfs: { physnet1: 8 }, hosts: { host3: { physnet2: 0 } }, forwarding: managed, tls: true, apart: true,
           controllers: 1, store: sqlite }
`;

const OPTIONS = {
  hosts: { type: "string" },
  controllers: { type: "string" },
  store: { type: "string" },
  config: { type: "string" },
  forwarding: { type: "string" },
  name: { type: "string" },
  json: { type: "boolean" },
  once: { type: "boolean" },
  tls: { type: "boolean" },
  "no-tls": { type: "boolean" },
  apart: { type: "boolean" },
  shared: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export const run = command("lab", USAGE, OPTIONS, async ({ values, positionals }) => {
  const [sub, ...args] = positionals;
  if (sub === undefined) throw new UsageError("lab", "missing subcommand (up, down, status, kill, start, fault)");
  const name = values.name ?? "lab";
  const say = (l: string): void => void process.stdout.write(`${l}\n`);
  switch (sub) {
    case "up": {
      const hosts = values.hosts === undefined ? undefined : Number(values.hosts);
      if (hosts !== undefined && !Number.isInteger(hosts)) throw new UsageError("lab", `--hosts: expected a whole number, got ${values.hosts}`);
      const controllers = values.controllers === undefined ? undefined : Number(values.controllers);
      if (controllers !== undefined && !Number.isInteger(controllers)) throw new UsageError("lab", `--controllers: expected a whole number, got ${values.controllers}`);
      const configText = values.config === undefined ? undefined : await readFile(values.config, "utf8");
      if (values.tls && values["no-tls"]) throw new UsageError("lab", "--tls and --no-tls: pick one");
      const tls = values["no-tls"] ? false : values.tls ? true : undefined;
      if (values.apart && values.shared) throw new UsageError("lab", "--apart and --shared: pick one");
      const state = await labUp(labSpec({ name, hosts, configText, ...(values.forwarding === undefined ? {} : { forwarding: values.forwarding }), ...(tls === undefined ? {} : { tls }), ...(controllers === undefined ? {} : { controllers }), ...(values.store === undefined ? {} : { store: values.store }), ...(values.apart ? { apart: true } : values.shared ? { apart: false } : {}) }), say);
      const ctls = state.controllers ? `, ${state.controllers.length} controllers on etcd (${state.etcd?.length ?? 0} members)` : "";
      say(`lab ${state.name} is up: ${state.hosts.length} hosts${ctls}, ${state.tls ? "mutual TLS" : "plain HTTP"}; try 'ferry hosts', ${ctls ? "'ferry controllers', " : ""}'ferry lab status', 'ferry lab down'`);
      return EXIT.ok;
    }
    case "down": {
      const r = await labDown(name, say);
      say(`lab ${name} is down (${r.stopped} processes stopped)`);
      return EXIT.ok;
    }
    case "status": {
      const s = await labStatus(name);
      if (values.json) say(JSON.stringify(s, null, 2));
      else if (!s.up) say(`lab ${name} is not up: bring it up with 'ferry lab up${name === "lab" ? "" : ` --name ${name}`}'`);
      else {
        const role = (c: (typeof s.components)[number]): string => (c.kind !== "controller" ? "" : c.role === "leader" ? `leader (term ${c.term})` : (c.role ?? (c.alive ? "?" : "-")));
        const rows = [...s.components.map((c) => [c.name, c.pid, c.url, c.alive ? "yes" : "NO", role(c)]), ...s.etcd.map((m) => [m.name, m.pid, m.clientUrl, m.alive ? "yes" : "NO", "etcd member"])];
        say(`lab ${name} (${s.dir}, netns ${s.netns}, ${s.tls ? "mutual TLS" : "plain HTTP"}, store ${s.store})\n${renderTable(["COMPONENT", "PID", "ADDRESS", "ALIVE", "ROLE"], rows)}`);
      }
      return EXIT.ok;
    }
    case "kill":
    case "start": {
      const which = args[0];
      if (which === undefined) throw new UsageError("lab", `${sub}: which component? (controller, controller-N or a host name)`);
      if (sub === "kill") {
        const k = await labKillDetail(name, which);
        say(`killed ${k.name} (pid ${k.pid})${k.term === undefined ? "" : `, the leader of term ${k.term}: another controller takes over within the 2 s lease ('ferry controllers')`}`);
      } else say(`started ${which} (pid ${await labStart(name, which)})`);
      return EXIT.ok;
    }
    case "fault": {
      const [host, fault] = args;
      if (host === undefined || fault === undefined) throw new UsageError("lab", "fault: HOST NAME");
      if (!(FAULTS as readonly string[]).includes(fault)) throw new UsageError("lab", `unknown fault ${JSON.stringify(fault)} (known: ${FAULTS.join(", ")})`);
      await labFault(name, host, fault, values.once ?? false);
      say(`armed ${fault} on ${host}${values.once ? " (once)" : ""}`);
      return EXIT.ok;
    }
    default:
      throw new UsageError("lab", `unknown subcommand ${JSON.stringify(sub)} (up, down, status, kill, start, fault)`);
  }
});
