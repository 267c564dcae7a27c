// `ferry controllers [--json]`: the controllers (one with SQLite; the members
// of the election with etcd), which one leads and its term.
import { systemClock } from "../../core/clock.ts";
import { listCommand } from "../command.ts";
import { renderControllers } from "../render/controllers.ts";
import { CONNECT_HELP, CONNECT_OPTIONS } from "./connect.ts";

export const USAGE = `usage: ferry controllers [--json]\n${CONNECT_HELP}\n`;
const OPTIONS = { ...CONNECT_OPTIONS, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export const run = listCommand({ name: "controllers", usage: USAGE, options: OPTIONS, fetch: (c) => c.controllers(), render: (v) => renderControllers(v, systemClock.now()) });
