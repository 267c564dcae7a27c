// `ferry devices [--host H] [--network N] [--json]`: VFs of the live hosts, with their leases.
import { listCommand } from "../command.ts";
import { renderDevices } from "../render/cluster.ts";
import { CONNECT_HELP, CONNECT_OPTIONS } from "./connect.ts";

export const USAGE = `usage: ferry devices [--host H] [--network N] [--json]\n${CONNECT_HELP}\n`;
const OPTIONS = { ...CONNECT_OPTIONS, host: { type: "string" }, network: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export const run = listCommand({
  name: "devices", usage: USAGE, options: OPTIONS,
  fetch: (c, values) => c.devices({
    ...(values.host === undefined ? {} : { host: values.host }),
    ...(values.network === undefined ? {} : { network: values.network }),
  }),
  render: renderDevices,
});
