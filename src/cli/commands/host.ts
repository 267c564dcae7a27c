// `ferry host drain|undrain HOST [--json]`: a drained host is never chosen as
// a migration destination (heartbeats keep it draining) until undrained.
// `ferry evacuate HOST` drains it and moves its VMs away.
// `ferry host check --config host.yaml [--json]`: this host's readiness (./host-check.ts).
import { rejectExtra, required, UsageError } from "../args.ts";
import { command } from "../command.ts";
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

export const run = command("host", USAGE, OPTIONS, async ({ values, positionals }) => {
  const [sub, name, ...extra] = positionals;
  if (sub === "check") {
    rejectExtra("host", positionals.slice(1));
    return (await import("./host-check.ts")).hostCheck(required("host", values.config, "--config <host.yaml>"), values.json ?? false);
  }
  if (sub !== "drain" && sub !== "undrain") throw new UsageError("host", sub === undefined ? "missing subcommand (drain, undrain or check)" : `unknown subcommand ${JSON.stringify(sub)}`);
  if (name === undefined) throw new UsageError("host", "missing HOST");
  rejectExtra("host", extra);
  const client = await connect("host", values);
  const h = sub === "drain" ? await client.drainHost(name) : await client.undrainHost(name);
  if (values.json) printJson(h);
  else process.stdout.write(`${h.name}: ${h.state}${h.drain === true ? " (drained)" : ""}\n`);
  return EXIT.ok;
});
