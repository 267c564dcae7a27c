// `ferry migrations [--json]`: every record (migrations between hosts, local
// migrations, saves, restores), oldest first; --json: each in the one shape of docs/records.md.
import { listCommand } from "../command.ts";
import { migrationSummary, renderMigrations } from "../render/migration.ts";
import { CONNECT_HELP, CONNECT_OPTIONS } from "./connect.ts";

export const USAGE = `usage: ferry migrations [--json]\n${CONNECT_HELP}\n`;
const OPTIONS = { ...CONNECT_OPTIONS, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export const run = listCommand({ name: "migrations", usage: USAGE, options: OPTIONS, fetch: async (c) => (await c.migrations()).map(migrationSummary), render: renderMigrations });
