// `ferry host check --config host.yaml [--json]`: can this host give VFs to
// guests and migrate them (src/host/check.ts)? Reads sysfs (the config's
// sysfsRoot), /proc/cmdline and /dev/vfio, and runs QEMU's probes and
// `ip -json -d link show` on each PF; writes nothing. Exit 0 when no item
// fails, 1 when any does. `ferry agent` runs the same check at start.
import { run } from "../../core/run.ts";
import { checkHost } from "../../host/check.ts";
import type { HostCheckReport } from "../../host/check.ts";
import { loadHostConfig } from "../../host/config.ts";
import type { HostConfig } from "../../host/config.ts";
import { detectAccel } from "../../qemu/accel.ts";
import { EXIT } from "../exit-codes.ts";
import { renderHostCheck } from "../render/host-check.ts";
import { printJson } from "./connect.ts";

const checkThisHost = (config: HostConfig): Promise<HostCheckReport> => checkHost({ config, run, accel: () => detectAccel() });

export async function hostCheck(configPath: string, json: boolean): Promise<number> {
  const report = await checkThisHost(await loadHostConfig(configPath));
  if (json) printJson(report);
  else process.stdout.write(renderHostCheck(report));
  return report.counts.fail > 0 ? EXIT.failed : EXIT.ok;
}

/**
 * The check at agent start: null (after printing the report to stderr) when
 * an item fails and `force` is not set; else the warnings and fails, one
 * line each, for the log and the heartbeat.
 */
export async function startupCheck(config: HostConfig, force: boolean): Promise<string[] | null> {
  const report = await checkThisHost(config);
  if (report.counts.fail > 0 && !force) {
    process.stderr.write(renderHostCheck(report));
    process.stderr.write(`ferry: agent ${config.name} not started: the host check failed (fix the FAIL items above, or start with --force)\n`);
    return null;
  }
  return report.items.filter((x) => x.status !== "ok").map((x) => `${x.status} ${x.check}${x.subject === null ? "" : ` ${x.subject}`}: ${x.message}`.slice(0, 1000));
}
