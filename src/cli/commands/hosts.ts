// `ferry hosts [--json]`: the registered hosts, their state and last heartbeat.
import { systemClock } from "../../core/clock.ts";
import { listCommand } from "../command.ts";
import { renderHosts } from "../render/cluster.ts";
import { CONNECT_HELP, CONNECT_OPTIONS } from "./connect.ts";

export const USAGE = `usage: ferry hosts [--json]\n${CONNECT_HELP}\n`;
const OPTIONS = { ...CONNECT_OPTIONS, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export const run = listCommand({ name: "hosts", usage: USAGE, options: OPTIONS, fetch: (c) => c.hosts(), render: (hosts) => renderHosts(hosts, systemClock.now()) });
