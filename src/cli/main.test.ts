import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, describe, test } from "node:test";
import { Agent } from "../agent/agent.ts";
import { makeTestHost } from "../agent/testing.ts";
import { run } from "../core/run.ts";
import { EXIT } from "./exit-codes.ts";

const FERRY = fileURLToPath(new URL("../../bin/ferry", import.meta.url));
const ferry = (...args: string[]) => run(FERRY, args, { allowFailure: true, timeoutMs: 30_000 });

const host = await makeTestHost();
after(() => host.cleanup());
const VM = "6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab";

describe("ferry CLI", () => {
  test("--help lists the commands; unknown commands and flags are usage errors (exit 2)", async () => {
    const help = await ferry("--help");
    assert.equal(help.code, EXIT.ok);
    assert.match(help.stdout, /^usage: ferry <command>/);
    assert.match(help.stdout, /^ {2}agent /m);
    assert.match(help.stdout, /^ {2}demo /m);

    for (const [args, msg] of [
      [[], /missing command/],
      [["bogus"], /unknown command "bogus"/],
      [["--bogus"], /unknown option "--bogus"/],
      [["agent", "inventory", "--config", host.configPath, "--bogus"], /--bogus/],
      [["agent", "inventory"], /missing --config/],
      [["agent", "frobnicate", "--config", host.configPath], /unknown subcommand "frobnicate"/],
      [["migrate", "vm1", "--convergence", "fast"], /--convergence "fast": expected auto, off, auto-converge/],
      [["migrate", "vm1", "--max-bandwidth", "0"], /--max-bandwidth "0": expected a whole number of MiB\/s from 1/],
      [["vm", "set", "vm1"], /set: nothing to change: give --convergence/],
      [["vm", "set", "vm1", "--convergence", "sometimes"], /--convergence "sometimes": expected auto, off, auto-converge/],
      [["vm", "show", "vm1", "--convergence", "off"], /--convergence applies to 'ferry vm create' and 'ferry vm set' only/],
      [["vm", "create", "vm1", "--host", "h", "--memory", "64k"], /--memory "64k": expected a whole number of MiB from 1 to 1048576/],
      [["vm", "create", "vm1", "--host", "h", "--memory", "64", "--vcpus", "0"], /--vcpus "0": expected a whole number of vCPUs from 1 to 256/],
      [["evacuate", "h", "--parallel", "99"], /--parallel "99": expected a whole number of migrations at a time from 1 to 16/],
    ] as const) {
      const r = await ferry(...args);
      assert.equal(r.code, EXIT.usage, `ferry ${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, msg);
      assert.match(r.stderr, /see 'ferry( agent| migrate| vm| evacuate)? --help'/);
    }
  });

  test("ferry agent inventory --json prints the VFs with network, model and lease, from sysfs and the state file (no agent running)", async () => {
    const agent = await Agent.open({ config: host.config, accel: { accel: "tcg", reason: "test" } });
    agent.acquireLease(host.vfs[1]!, { kind: "instance", vmUuid: VM, instanceId: "i-cli" });
    await agent.close();

    const r = await ferry("agent", "inventory", "--config", host.configPath, "--json");
    assert.equal(r.code, EXIT.ok, r.stderr);
    const inv = JSON.parse(r.stdout) as { host: string; vfs: { bdf: string; network: string; standIn: unknown; mac: string; lease: unknown }[] };
    assert.equal(inv.host, "host-a");
    assert.deepEqual(inv.vfs.map((v) => v.bdf), host.vfs);
    assert.ok(inv.vfs.every((v) => v.network === "physnet1"));
    assert.deepEqual(inv.vfs[0]!.standIn, { model: "rtl8139" });
    assert.equal(inv.vfs[0]!.mac, host.fixture.pfs[0]!.vfs[0]!.mac);
    assert.deepEqual(inv.vfs[1]!.lease, { kind: "instance", vmUuid: VM, instanceId: "i-cli" });
    assert.equal(inv.vfs[0]!.lease, null);

    const table = await ferry("agent", "inventory", "-c", host.configPath);
    assert.equal(table.code, EXIT.ok, table.stderr);
    for (const heading of ["PHYSICAL FUNCTIONS", "VIRTUAL FUNCTIONS", "NETWORKS", "LEASES"]) assert.match(table.stdout, new RegExp(`^${heading}$`, "m"));
    const row = table.stdout.split("\n").find((l) => l.startsWith(host.vfs[1]!));
    assert.ok(row, table.stdout);
    assert.match(row, /physnet1\s+rtl8139\s+[0-9a-f:]{17}\s+0\s+-\s+instance i-cli \(vm 6f1b0c9e\)/);
  });

  test("a broken config is a failure (exit 1) with the error code and the file", async () => {
    const r = await ferry("agent", "inventory", "--config", "/nonexistent/host.yaml");
    assert.equal(r.code, EXIT.failed);
    assert.match(r.stderr, /FERRY_ERR_CONFIG: \/nonexistent\/host.yaml: cannot read/);
  });
});
