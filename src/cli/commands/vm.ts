// `ferry vm create NAME --host H --memory MiB [--vcpus N] --nic NETWORK:MODE:POLICY [--nic …] [--guest no-os] [--shared-memory] [--convergence P] [--json]`
// `ferry vm show|start|stop|delete NAME [--json]`, `ferry vm set NAME --convergence P|default [--json]`
import { CONVERGENCE_REQUESTS } from "../../migration/convergence.ts";
import { NIC_MODES, NIC_POLICIES } from "../../model/vm.ts";
import type { NicMode, NicPolicy } from "../../model/vm.ts";
import { VM_MAX_MEMORY_MIB, VM_MAX_VCPUS } from "../../wire/controller-api.ts";
import { oneOf, rejectExtra, required, UsageError, wholeNumber } from "../args.ts";
import type { Parsed } from "../args.ts";
import { command } from "../command.ts";
import { EXIT } from "../exit-codes.ts";
import { renderVm } from "../render/cluster.ts";
import { CONNECT_HELP, CONNECT_OPTIONS, connect, printJson, takeRepeated } from "./connect.ts";

export const USAGE = `usage:
  ferry vm create NAME --host H --memory MiB [--vcpus N] --nic NETWORK:MODE:POLICY [--nic …] [--guest no-os] [--shared-memory] [--convergence P] [--json]
      MODE: failover | ephemeral | emulated; POLICY: mandatory | requisite | optional (default mandatory)
      --shared-memory: guest RAM in a shared file on the host, so 'ferry migrate NAME --local' copies no RAM
      --convergence P: the VM's convergence policy, what its migrations run with unless one asks for
        another ('ferry migrate --convergence'): auto (default) | off | auto-converge
      the controller picks each NIC's MAC, guest ports, address and a free VF of NETWORK on H, and starts the VM there
  ferry vm show NAME [--json]
  ferry vm start NAME [--json]
  ferry vm stop NAME [--json]
  ferry vm delete NAME [--json]
  ferry vm set NAME --convergence P|default [--json]   change the VM's convergence policy (default: auto); not while it migrates
  ferry vm save NAME FILE [--json]            state to FILE (a name, not a path) in the host's saveDir; NICs that cannot be saved are unplugged, VFs released
  ferry vm restore NAME|FILE [--host H] [--json]   VFs chosen anew (on H if given, else where it was saved)
${CONNECT_HELP}
`;
const OPTIONS = {
  ...CONNECT_OPTIONS,
  host: { type: "string" },
  memory: { type: "string" },
  vcpus: { type: "string" },
  guest: { type: "string" },
  "shared-memory": { type: "boolean" },
  convergence: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const SAVE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** SAVE_NAME_RE in words (the API's save-name rule, with where the file goes). */
export const SAVE_NAME_RULE = "FILE is a file name, not a path — 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. web.state; the file goes in the saveDir of the VM's host (host config saveDir, default <stateDir>/saves), and 'ferry vm restore NAME|FILE' finds it there";

/** Why FILE cannot be a save name, and what to give instead: a path gets where save files go and the name to use. */
export function saveNameError(file: string): string {
  const base = file.split("/").filter((p) => p !== "").at(-1) ?? "";
  if (file.includes("/")) {
    const hint = SAVE_NAME_RE.test(base) ? `: give its name only, e.g. 'ferry vm save NAME ${base}'` : "";
    return `save: ${JSON.stringify(file)} is a path; Ferry chooses where save files go: the saveDir of the VM's host (host.yaml saveDir, default <stateDir>/saves), and 'ferry vm restore NAME|FILE' finds them there${hint}`;
  }
  return `save: ${JSON.stringify(file)} is not a save name: ${SAVE_NAME_RULE}`;
}

function isMode(x: string): x is NicMode {
  return (NIC_MODES as readonly string[]).includes(x);
}
function isPolicy(x: string): x is NicPolicy {
  return (NIC_POLICIES as readonly string[]).includes(x);
}

export function parseNicFlag(s: string): { network: string; mode: NicMode; policy: NicPolicy } {
  const [network, mode, policy = "mandatory", ...extra] = s.split(":");
  if (!network || mode === undefined || extra.length > 0) throw new UsageError("vm", `--nic ${JSON.stringify(s)}: expected NETWORK:MODE[:POLICY]`);
  if (!isMode(mode)) throw new UsageError("vm", `--nic ${JSON.stringify(s)}: mode must be one of ${NIC_MODES.join(", ")}`);
  if (!isPolicy(policy)) throw new UsageError("vm", `--nic ${JSON.stringify(s)}: policy must be one of ${NIC_POLICIES.join(", ")}`);
  return { network, mode, policy };
}

export async function run(argv: readonly string[]): Promise<number> {
  const { values: nicFlags, rest } = takeRepeated(argv, "--nic");
  return command("vm", USAGE, OPTIONS, (args) => vm(args, nicFlags))(rest);
}

async function vm({ values, positionals }: Parsed<typeof OPTIONS>, nicFlags: readonly string[]): Promise<number> {
  const [sub, name, ...extraAll] = positionals;
  const subs = ["create", "show", "start", "stop", "delete", "save", "restore", "set"];
  const file = sub === "save" ? extraAll[0] : undefined;
  const extra = sub === "save" ? extraAll.slice(1) : extraAll;
  if (sub === "save" && file === undefined) throw new UsageError("vm", `save: missing FILE: ${SAVE_NAME_RULE}`);
  if (file !== undefined && !SAVE_NAME_RE.test(file)) throw new UsageError("vm", saveNameError(file));
  if (sub === undefined || !subs.includes(sub)) throw new UsageError("vm", sub === undefined ? `missing subcommand (${subs.join(", ")})` : `unknown subcommand ${JSON.stringify(sub)} (expected: ${subs.join(", ")})`);
  if (name === undefined) throw new UsageError("vm", "missing VM NAME");
  rejectExtra("vm", extra);
  if (sub !== "create" && (nicFlags.length > 0 || (values.host !== undefined && sub !== "restore") || values.memory !== undefined || values.vcpus !== undefined || values.guest !== undefined || values["shared-memory"] !== undefined)) {
    throw new UsageError("vm", `--nic, --host, --memory, --vcpus, --guest and --shared-memory apply to 'ferry vm create' only`);
  }
  if (values.convergence !== undefined && sub !== "create" && sub !== "set") throw new UsageError("vm", "--convergence applies to 'ferry vm create' and 'ferry vm set' only");
  if (sub === "set" && values.convergence === undefined) throw new UsageError("vm", `set: nothing to change: give --convergence ${CONVERGENCE_REQUESTS.join("|")}|default`);
  const asked = oneOf("vm", "--convergence", values.convergence, [...CONVERGENCE_REQUESTS, "default"] as const);
  const convergence = asked === "default" ? undefined : asked;
  let body: Parameters<Awaited<ReturnType<typeof connect>>["createVm"]>[0] | undefined;
  if (sub === "create") {
    if (values.guest !== undefined && values.guest !== "no-os" && values.guest !== "linux") throw new UsageError("vm", `--guest must be no-os or linux (got ${JSON.stringify(values.guest)})`);
    body = {
      name,
      host: required("vm", values.host, "--host H"),
      memoryMiB: wholeNumber("vm", "--memory", required("vm", values.memory, "--memory MiB"), VM_MAX_MEMORY_MIB, "MiB")!,
      nics: nicFlags.map(parseNicFlag),
      ...(values.vcpus === undefined ? {} : { vcpus: wholeNumber("vm", "--vcpus", values.vcpus, VM_MAX_VCPUS, "vCPUs")! }),
      ...(values.guest === "no-os" ? { noOs: true } : {}),
      ...(values["shared-memory"] === true ? { sharedMemory: true } : {}),
      ...(convergence === undefined ? {} : { convergence }),
    };
  }
  const client = await connect("vm", values);
  if (sub === "set") {
    const r = await client.setVmPolicy(name, { convergence: convergence ?? null });
    if (values.json) printJson(r);
    else process.stdout.write(renderVm(r));
    return EXIT.ok;
  }
  if (sub === "delete") {
    const r = await client.deleteVm(name);
    if (values.json) printJson(r);
    else process.stdout.write(`deleted ${r.deleted}\n`);
    return EXIT.ok;
  }
  if (sub === "save" || sub === "restore") {
    let target = name;
    if (sub === "restore") {
      const known = await client.vm(name).catch(() => undefined);
      if (!known) target = (await client.vms()).find((x) => x.savedAs === name)?.name ?? name;
    }
    const vm = sub === "save" ? await client.saveVm(name, file!) : await client.restoreVm(target, values.host);
    if (values.json) printJson(vm);
    else process.stdout.write(sub === "save" ? `saved ${vm.name} to ${vm.savedAs ?? "?"} on ${vm.host}; its VFs are released\n` : renderVm(vm));
    return EXIT.ok;
  }
  if (body) {
    const vm = await client.createVm(body);
    if (values.json) printJson(vm);
    else process.stdout.write(`${renderVm(vm)}${vm.warnings.map((w) => `warning: ${w}\n`).join("")}`);
    return EXIT.ok;
  }
  const vm = sub === "show" ? await client.vm(name) : sub === "start" ? await client.startVm(name) : await client.stopVm(name);
  if (values.json) printJson(vm);
  else process.stdout.write(renderVm(vm));
  return EXIT.ok;
}
