// `ferry controller --config controller.yaml`: run the controller (HTTP API on
// the config's address). Agents register by heartbeat; migrations not yet done
// are resumed on start. SIGTERM/SIGINT stop it cleanly (a migration in flight
// is resumed by the next start).
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { hostname } from "node:os";
import pkg from "../../../package.json" with { type: "json" };
import { listenAt, loadServerToken, untilStopSignal } from "../../core/http/token.ts";
import { buildControllerApp } from "../../api/app.ts";
import { dbFile, loadControllerConfig } from "../../controller/config.ts";
import type { ControllerConfig } from "../../controller/config.ts";
import { EtcdLeadership, SingleLeadership } from "../../controller/leadership.ts";
import { EtcdElection } from "../../store/etcd-election.ts";
import { Controller } from "../../controller/controller.ts";
import { Evacuations } from "../../controller/evacuation.ts";
import type { ControllerEvent } from "../../wire/events.ts";
import { systemClock } from "../../core/clock.ts";
import { FerryError } from "../../core/errors.ts";
import { createLogger } from "../../core/log.ts";
import { loadTls, tlsFetch } from "../../core/tls.ts";
import { labConnectivity } from "../../lab/connectivity.ts";
import { guestImagePaths } from "../../model/guest-image.ts";
import { openBackend, parseStoreUrl } from "../../store/backend.ts";
import type { StoreConfig } from "../../store/backend.ts";
import { rejectExtra, required } from "../args.ts";
import { command } from "../command.ts";
import { EXIT } from "../exit-codes.ts";

export const USAGE = `usage:
  ferry controller --config controller.yaml     run the controller (API, scheduler, coordinator)
    [--store sqlite|etcd://host:port,host:port]  where its state lives (default: the config's store:,
                                                 else sqlite in stateDir); etcd's tls and auth come from store:
`;

const OPTIONS = { config: { type: "string", short: "c" }, store: { type: "string" }, help: { type: "boolean", short: "h" } } as const;

/** --store over the config's store: an etcd URL keeps the config's etcd options (tls, auth, prefix). */
function storeOverride(config: StoreConfig, url: string | undefined): StoreConfig {
  if (url === undefined) return config;
  const given = parseStoreUrl("--store", url);
  if (given.kind === "sqlite") return given;
  return config.kind === "etcd" ? { ...config, endpoints: given.endpoints } : given;
}

async function readAgentToken(file: string): Promise<string> {
  let token: string;
  try {
    token = (await readFile(file, "utf8")).trim();
  } catch (e) {
    throw new FerryError("FERRY_ERR_CONFIG", `${file}: cannot read the agent token: ${e instanceof Error ? e.message : String(e)}`, { cause: e, details: { file } });
  }
  if (token.length < 16 || /\s/.test(token)) throw new FerryError("FERRY_ERR_CONFIG", `${file}: the agent token must be one line of at least 16 characters`, { details: { file } });
  return token;
}

function listenUrl(config: ControllerConfig): string {
  const { address, port } = config.listen;
  return config.election.advertiseUrl ?? `${config.tls ? "https" : "http"}://${isIP(address) === 6 ? `[${address}]` : address}:${port}`;
}

/** This controller's URL for the others: election.advertiseUrl, else from listen: (a wildcard address or port 0 cannot be). */
function advertised(config: ControllerConfig): string {
  if (config.election.advertiseUrl !== null) return config.election.advertiseUrl;
  const { address, port } = config.listen;
  if (address === "0.0.0.0" || address === "::" || port === 0) {
    throw new FerryError("FERRY_ERR_CONFIG", `listen ${address}:${port} is no address other controllers can reach: set election.advertiseUrl (http(s)://host:port of this controller) in controller.yaml`, { details: { field: "election.advertiseUrl" } });
  }
  return listenUrl(config);
}

export const run = command("controller", USAGE, OPTIONS, async ({ values, positionals }) => {
  rejectExtra("controller", positionals);
  const configPath = required("controller", values.config, "--config <controller.yaml>");
  const config = await loadControllerConfig(configPath);
  const log = createLogger({ name: "ferry-controller" });
  const agentToken = await readAgentToken(config.agentTokenFile);
  const token = await loadServerToken(config.tokenFile, log);
  const tls = config.tls ? await loadTls(config.tls) : null;
  const backend = await openBackend<ControllerEvent>(storeOverride(config.store, values.store), dbFile(config), {
    onEventLogError: (e) => log.warn({ err: e instanceof Error ? e.message : String(e) }, "event log: cannot write or read events"),
  });
  const { store, cluster, eventLog, etcd } = backend;
  const startedAt = systemClock.now();
  const id = `${hostname()}-${randomBytes(3).toString("hex")}`;
  // the term this process was elected for: kept after its leadership ends, so that a late call still carries it and is refused
  let electedTerm: number | null = etcd ? null : 1;
  const controller = new Controller({ config, store, cluster, eventLog, clock: systemClock, log, agentToken, term: () => electedTerm, ...(tls ? { fetch: tlsFetch(tls) } : {}), guestImage: () => guestImagePaths(), ...(config.lab ? { connectivity: labConnectivity(config.lab.fabric, { settleMs: config.lab.settleMs, deadlineMs: config.lab.settleDeadlineMs, outageMs: config.lab.outageMs }) } : {}) });
  const evacuations = new Evacuations({ controller, clock: systemClock, log });
  let app: ReturnType<typeof buildControllerApp> | undefined;
  let election: EtcdElection | undefined;
  try {
    if (!etcd) {
      await controller.start();
      app = buildControllerApp({ controller, token, version: pkg.version, log, evacuations, leadership: new SingleLeadership({ id, url: listenUrl(config), startedAt }) }, { tls });
      const address = await listenAt(app, config.listen, configPath);
      log.info({ address, db: backend.where }, `ferry controller listening on ${address}`);
    } else {
      // several controllers: listen as a follower (reads; writes forwarded), campaign, run the controller once elected
      let lost: (why: string) => void = () => undefined;
      const deposed = new Promise<string>((resolve) => (lost = resolve));
      election = new EtcdElection(etcd, { id, url: advertised(config), startedAt }, {
        leaseMs: config.election.leaseMs, renewMs: config.election.renewMs, clock: systemClock, log,
        onElected: (term) => {
          electedTerm = Number(term);
          // the migrations in flight resume from their journals, then the evacuations in progress go on
          controller
            .start()
            .then(() => evacuations.resume())
            .catch((e: unknown) => lost(`the controller did not start: ${e instanceof Error ? e.message : String(e)}`));
        },
        onLost: (why) => lost(why),
      });
      app = buildControllerApp({ controller, token, version: pkg.version, log, evacuations, leadership: new EtcdLeadership(election), ...(tls ? { leaderFetch: tlsFetch(tls) } : {}) }, { tls });
      const address = await listenAt(app, config.listen, configPath);
      await election.start();
      log.info({ address, db: backend.where, id }, `ferry controller listening on ${address} (a follower until elected; id ${id})`);
      const how = await Promise.race([untilStopSignal(), deposed.then((why) => ({ why }))]);
      if (typeof how === "object") {
        // nothing of the lost term goes on: exit at once (its writes are fenced anyway); a supervisor starts it again as a follower
        log.error({ term: electedTerm, id }, `exiting: this controller's leadership ended (${how.why}); restart it to rejoin as a follower`);
        log.flush();
        process.exit(EXIT.failed);
      }
      log.info({ signal: how }, "shutting down; the lease is given back: another controller takes over the migrations in flight");
      return EXIT.ok;
    }
    const sig = await untilStopSignal();
    log.info({ signal: sig }, "shutting down; migrations in flight resume on the next start");
    return EXIT.ok;
  } finally {
    // this term's work stops at once (every step in flight is aborted) and the lease goes back: a follower takes over now,
    // not after the lease, however long what was in flight takes to wind down (what of this term is still on its way is
    // refused by etcd and by the agents: fencing); then the work and the API's open requests are waited for
    const appClosed = app?.close().catch((e: unknown) => log.warn({ err: e }, "closing the API failed"));
    evacuations.stop();
    controller.stop();
    const since = ((t) => () => Math.round(systemClock.monotonic() - t))(systemClock.monotonic());
    await election?.close();
    const leaseMs = since();
    await evacuations.close();
    await controller.close();
    const workMs = since();
    await appClosed;
    log.info({ leaseGivenBackMs: election ? leaseMs : null, workEndedMs: workMs, apiClosedMs: since() }, "stopped");
    await backend.close();
    log.flush();
  }
});
