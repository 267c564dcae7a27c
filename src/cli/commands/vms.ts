// `ferry vms [--json]`: every VM, where it runs, its NICs and their VFs.
import { listCommand } from "../command.ts";
import { renderVms } from "../render/cluster.ts";
import { CONNECT_HELP, CONNECT_OPTIONS } from "./connect.ts";

export const USAGE = `usage: ferry vms [--json]\n${CONNECT_HELP}\n`;
const OPTIONS = { ...CONNECT_OPTIONS, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export const run = listCommand({ name: "vms", usage: USAGE, options: OPTIONS, fetch: (c) => c.vms(), render: renderVms });
