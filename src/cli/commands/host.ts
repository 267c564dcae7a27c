// `ferry host drain|undrain HOST [--json]`: a drained host is never chosen as
// a migration destination (heartbeats keep it draining) until undrained.
// `ferry evacuate HOST` drains it and moves its VMs away.
// `ferry host check --config host.yaml [--json]`: this host's readiness (./host-check.ts).
import { parse, required, UsageError } from "../args.ts";
import { EXIT } from "../exit-codes.ts";
import { CONNECT_HELP, CONNECT_OPTIONS, connect, printJson } from "./connect.ts";

export const USAGE = `usage:
  ferry host drain HOST [--json]     never choose HOST as a destination (its VMs stay; see 'ferry evacuate')
  ferry host undrain HOST [--json]   HOST may be chosen again
  ferry host check --config host.yaml [--json]
                                     on this host: IOMMU, vfio-pci, VFs, QEMU, KVM, migration address;
                                     each item ok / warn / fail with what to do (exit 1 when any fails)
${CONNECT_HELP}
`;
const OPTIONS = { ...CONNECT_OPTIONS, config: { type: "string", short: "c" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export async function run(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parse("host", argv, OPTIONS);
  if (values.help) {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  const [sub, name, ...extra] = positionals;
  if (sub === "check") {
    if (name !== undefined) throw new UsageError("host", `unexpected argument ${JSON.stringify(name)}`);
    return (await import("./host-check.ts")).hostCheck(required("host", values.config, "--config <host.yaml>"), values.json ?? false);
  }
  if (sub !== "drain" && sub !== "undrain") throw new UsageError("host", sub === undefined ? "missing subcommand (drain, undrain or check)" : `unknown subcommand ${JSON.stringify(sub)}`);
  if (name === undefined) throw new UsageError("host", "missing HOST");
  if (extra.length > 0) throw new UsageError("host", `unexpected argument ${JSON.stringify(extra[0])}`);
  const client = await connect("host", values);
  const h = sub === "drain" ? await client.drainHost(name) : await client.undrainHost(name);
  if (values.json) printJson(h);
  else process.stdout.write(`${h.name}: ${h.state}${h.drain === true ? " (drained)" : ""}\n`);
  return EXIT.ok;
}
