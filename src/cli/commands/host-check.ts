// `ferry host check --config host.yaml [--json]`: can this host give VFs to
// guests and migrate them (src/host/check.ts)? Reads sysfs (the config's
// sysfsRoot), /proc/cmdline and /dev/vfio, and runs QEMU's probes and
// `ip -json -d link show` on each PF; writes nothing. Exit 0 when no item
// fails, 1 when any does.
import { run } from "../../core/run.ts";
import { checkHost } from "../../host/check.ts";
import { loadHostConfig } from "../../host/config.ts";
import { detectAccel } from "../../qemu/accel.ts";
import { EXIT } from "../exit-codes.ts";
import { renderHostCheck } from "../render/host-check.ts";
import { printJson } from "./connect.ts";

export async function hostCheck(configPath: string, json: boolean): Promise<number> {
  const config = await loadHostConfig(configPath);
  const report = await checkHost({ config, run, accel: () => detectAccel() });
  if (json) printJson(report);
  else process.stdout.write(renderHostCheck(report));
  return report.counts.fail > 0 ? EXIT.failed : EXIT.ok;
}
