// `ferry migrations [--json]`: every migration, oldest first.
import { listCommand } from "../command.ts";
import { renderMigrations } from "../render/migration.ts";
import { CONNECT_HELP, CONNECT_OPTIONS } from "./connect.ts";

export const USAGE = `usage: ferry migrations [--json]\n${CONNECT_HELP}\n`;
const OPTIONS = { ...CONNECT_OPTIONS, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export const run = listCommand({ name: "migrations", usage: USAGE, options: OPTIONS, fetch: (c) => c.migrations(), render: renderMigrations });
