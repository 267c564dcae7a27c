// `ferry agent --config host.yaml`: run the host agent (HTTP API on the
//   config's address). SIGTERM/SIGINT close it cleanly; QEMU instances are
//   detached and keep running, and the next agent adopts them.
// `ferry agent inventory --config host.yaml [--json]`: the host's PFs, VFs,
//   networks and leases, read directly from sysfs and the state file (no
//   agent needed).
import { access } from "node:fs/promises";
import { DatabaseSync } from "node:sqlite";
import { Agent } from "../../agent/agent.ts";
import { startHeartbeat } from "../../agent/heartbeat.ts";
import { viewOf } from "../../agent/migration/transport.ts";
import { buildAgentApp } from "../../agent/http/app.ts";
import { buildInventoryView } from "../../agent/inventory.ts";
import { listenAt, loadServerToken, untilStopSignal } from "../../core/http/token.ts";
import { systemClock } from "../../core/clock.ts";
import { createLogger } from "../../core/log.ts";
import { loadTls } from "../../core/tls.ts";
import { loadHostConfig, stateFile } from "../../host/config.ts";
import type { HostConfig } from "../../host/config.ts";
import { LeaseStore } from "../../host/leases.ts";
import type { Lease } from "../../host/leases.ts";
import { readInventory } from "../../host/sysfs.ts";
import { readMemory } from "../../host/qemu-caps.ts";
import { rejectExtra, required, UsageError } from "../args.ts";
import { command } from "../command.ts";
import { EXIT } from "../exit-codes.ts";
import { renderInventory } from "../render/inventory.ts";
import { startupCheck } from "./host-check.ts";

export const USAGE = `usage:
  ferry agent --config host.yaml [--force]         run the host agent (after 'ferry host check': a fail
                                                   refuses to start unless --force; warnings go to the controller)
  ferry agent inventory --config host.yaml [--json]  show PFs, VFs, networks, leases (no agent needed)
`;

const OPTIONS = {
  config: { type: "string", short: "c" },
  json: { type: "boolean" },
  force: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

export const run = command("agent", USAGE, OPTIONS, async ({ values, positionals }) => {
  const [sub, ...extra] = positionals;
  rejectExtra("agent", extra);
  const configPath = required("agent", values.config, "--config <host.yaml>");
  if (sub === undefined) {
    if (values.json) throw new UsageError("agent", "--json applies to 'ferry agent inventory' only");
    return serve(configPath, values.force ?? false);
  }
  if (values.force) throw new UsageError("agent", "--force applies to 'ferry agent' only");
  if (sub === "inventory") return inventory(configPath, values.json ?? false);
  throw new UsageError("agent", `unknown subcommand ${JSON.stringify(sub)} (expected: inventory)`);
});

async function serve(configPath: string, force: boolean): Promise<number> {
  const config = await loadHostConfig(configPath);
  const warnings = await startupCheck(config, force);
  if (warnings === null) return EXIT.failed;
  const log = createLogger({ name: "ferry-agent" });
  if (warnings.length > 0) log.warn({ warnings }, `host check: ${warnings.length} warning(s) (ferry host check --config ${configPath})`);
  const agent = await Agent.open({ config, log });
  let app: ReturnType<typeof buildAgentApp> | undefined;
  try {
    const token = await loadServerToken(config.authTokenFile, log);
    const tls = config.tls ? await loadTls(config.tls) : null;
    app = buildAgentApp({ agent, token, log }, { tls });
    const address = await listenAt(app, config.listen, configPath);
    log.info({ address, host: config.name, accel: agent.accel.accel }, `ferry agent ${config.name} listening on ${address}`);
    const stopHeartbeat = config.controller
      ? startHeartbeat({
          controller: config.controller, body: { name: config.name, url: config.controller.advertiseUrl ?? address, version: agent.version, accel: agent.accel.accel, ...(warnings.length ? { warnings: warnings.slice(0, 200) } : {}), ...(agent.transport ? { migration: viewOf(agent.transport) } : {}), ...(agent.qemuCaps ? { qemu: agent.qemuCaps } : {}) }, clock: systemClock, log, tls,
          memory: () => readMemory(),
          migrations: () => agent.knownMigrations(), onEnded: (ids) => agent.reconcileEnded(ids),
        })
      : () => undefined;
    const sig = await untilStopSignal();
    stopHeartbeat();
    log.info({ signal: sig }, "shutting down; QEMU instances keep running");
    return EXIT.ok;
  } finally {
    await app?.close();
    await agent.close();
    log.flush();
  }
}

/** Leases from the state file, read-only; none if the agent never ran. */
function readLeases(config: HostConfig): Promise<Lease[]> {
  const file = stateFile(config);
  return access(file).then(
    () => {
      const db = new DatabaseSync(file, { readOnly: true });
      try {
        return new LeaseStore(db, systemClock).list();
      } finally {
        db.close();
      }
    },
    () => [],
  );
}

async function inventory(configPath: string, json: boolean): Promise<number> {
  const config = await loadHostConfig(configPath);
  const inv = await readInventory({ root: config.sysfsRoot });
  const view = buildInventoryView(config, inv, await readLeases(config));
  process.stdout.write(json ? `${JSON.stringify(view, null, 2)}\n` : renderInventory(view, systemClock.now()));
  return EXIT.ok;
}
