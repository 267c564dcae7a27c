// Security of a real cluster: `ferry controller` and `ferry agent` processes
// with mutual TLS from `ferry ca` (the agent heartbeats over it, the
// controller calls the agent over it, the CLI presents its own certificate),
// a real QEMU instance (a VM without OS), and then:
//   - the CLI without a certificate, or with another CA's, or with the wrong
//     token, is refused;
//   - token files, state files, runtime and instance dirs are owner-only;
//   - no token appears in any process's stdout, stderr or log, nor in any
//     `--json` output.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { lstat, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { loadOrCreateToken } from "../../src/core/http/token.ts";
import { writeSysfsFixture } from "../../src/host/fixture.ts";
import { freePort } from "../../src/core/ports.ts";
import { FERRY, kill, spawnFerry } from "../e2e/cluster.ts";
import type { Proc } from "../e2e/cluster.ts";

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

let base = "";
let env: NodeJS.ProcessEnv = {};
const outputs: { what: string; text: string }[] = [];

function ferry(args: string[], o: { timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(FERRY, args, { env, timeout: o.timeoutMs ?? 120_000, encoding: "utf8", maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
      outputs.push({ what: `ferry ${args.join(" ")}`, text: stdout + stderr });
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(args: string[]): Promise<string> {
  const r = await ferry(args);
  assert.equal(r.code, 0, `ferry ${args.join(" ")} → ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

async function walk(dir: string): Promise<{ path: string; mode: number; kind: "dir" | "file" | "socket" | "link" | "other" }[]> {
  const out: { path: string; mode: number; kind: "dir" | "file" | "socket" | "link" | "other" }[] = [];
  const st = await lstat(dir);
  out.push({ path: dir, mode: st.mode & 0o777, kind: "dir" });
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else out.push({ path: p, mode: (await lstat(p)).mode & 0o777, kind: e.isFile() ? "file" : e.isSocket() ? "socket" : e.isSymbolicLink() ? "link" : "other" });
  }
  return out;
}

let controller: Proc | undefined;
let agent: Proc | undefined;
let ctlUrl = "";
const paths = { tls: "", ctlState: "", agentState: "", runDir: "", agentToken: "", hostYaml: "", ctlLog: "", agentLog: "" };
let connect: string[] = [];
let vmCreated = false;

before(async () => {
  base = await mkdtemp(join(tmpdir(), "ferry-sec-"));
  env = { ...process.env, HOME: base, FERRY_CONTEXT: "" };
  delete env["FERRY_CONTROLLER"];
  delete env["FERRY_TOKEN_FILE"];
  paths.tls = join(base, "tls");
  paths.ctlState = join(base, "ctl");
  paths.agentState = join(base, "host-a", "state");
  paths.runDir = join(base, "host-a", "run");
  paths.agentToken = join(base, "agent-token");
  paths.ctlLog = join(base, "controller.log");
  paths.agentLog = join(base, "agent.log");
  await ok(["ca", "init", "--dir", paths.tls]);
  for (const n of ["controller", "host-a", "cli"]) await ok(["ca", "issue", "--dir", paths.tls, "--name", n, "--json"]);
  await ok(["ca", "init", "--dir", join(base, "other-ca")]);
  await ok(["ca", "issue", "--dir", join(base, "other-ca"), "--name", "cli"]);
  await loadOrCreateToken(paths.agentToken);
  const tls = (n: string): string => `{ cert: ${join(paths.tls, `${n}.crt`)}, key: ${join(paths.tls, `${n}.key`)}, ca: ${join(paths.tls, "ca.crt")} }`;
  const ctlYaml = join(base, "controller.yaml");
  await writeFile(ctlYaml, `listen: { address: 127.0.0.1, port: ${await freePort()} }\nstateDir: ${paths.ctlState}\nagentTokenFile: ${paths.agentToken}\nheartbeatTimeoutMs: 6000\ntls: ${tls("controller")}\n`);
  controller = await spawnFerry(["controller", "--config", ctlYaml], paths.ctlLog);
  ctlUrl = controller.url;
  const fx = await writeSysfsFixture(join(base, "host-a", "sys"), { pfs: [{ vendor: "intel-82599", numVfs: 2, numaNode: 0 }], seed: "host-a" });
  paths.hostYaml = join(base, "host-a", "host.yaml");
  await writeFile(paths.hostYaml, [
    "name: host-a", "sysfsRoot: sys", `stateDir: ${paths.agentState}`, `runDir: ${paths.runDir}`, `authTokenFile: ${paths.agentToken}`,
    `listen: { address: 127.0.0.1, port: ${await freePort()} }`,
    `controller: { url: ${ctlUrl}, tokenFile: ${join(paths.ctlState, "token")}, heartbeatMs: 500 }`,
    "networks:", "  physnet1: {}", "uplinks:", `  - pf: ${fx.pfs[0]!.bdf}`, "    network: physnet1", "    standIns: { vfs: all, model: rtl8139 }",
    `tls: ${tls("host-a")}`, "",
  ].join("\n"));
  agent = await spawnFerry(["agent", "--config", paths.hostYaml], paths.agentLog);
  connect = ["--controller", ctlUrl, "--token-file", join(paths.ctlState, "token"), "--tls-cert", join(paths.tls, "cli.crt"), "--tls-key", join(paths.tls, "cli.key"), "--tls-ca", join(paths.tls, "ca.crt")];
  // the agent registers by heartbeat, over mutual TLS
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await ferry(["hosts", "--json", ...connect]);
    if (r.code === 0 && (JSON.parse(r.stdout) as { name: string; state: string }[]).some((h) => h.name === "host-a" && h.state === "up")) break;
    if (Date.now() > deadline) throw new Error(`host-a never registered over mutual TLS:\n${r.stdout}${r.stderr}\n${await readFile(paths.agentLog, "utf8")}`);
    await new Promise((res) => setTimeout(res, 500));
  }
});

after(async () => {
  try {
    if (vmCreated) await ferry(["vm", "delete", "v1", ...connect]);
  } finally {
    // a QEMU the agent started and the delete did not stop: by its pidfile
    for (const e of await walk(paths.runDir).catch(() => [])) {
      if (e.path.endsWith("qemu.pid")) {
        const pid = Number((await readFile(e.path, "utf8").catch(() => "")).trim());
        if (Number.isInteger(pid) && pid > 1) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            // already gone
          }
        }
      }
    }
    if (agent) await kill(agent, "SIGTERM");
    if (controller) await kill(controller, "SIGTERM");
    await rm(base, { recursive: true, force: true });
  }
});

describe("a cluster with mutual TLS (real processes)", () => {
  test("the controller and the agent serve https; the controller reaches the agent over it (a VM is created on host-a)", async () => {
    assert.match(ctlUrl, /^https:\/\//);
    assert.match(agent!.url, /^https:\/\//);
    const vm = JSON.parse(await ok(["vm", "create", "v1", "--host", "host-a", "--memory", "128", "--nic", "physnet1:ephemeral:optional", "--guest", "no-os", "--json", ...connect])) as { name: string; host: string; state: string };
    vmCreated = true;
    assert.equal(vm.host, "host-a");
    assert.equal(vm.state, "running");
  });

  test("the CLI without a certificate, with another CA's, or with the wrong token is refused; nothing is created", async () => {
    const noCert = await ferry(["hosts", "--json", "--controller", ctlUrl, "--token-file", join(paths.ctlState, "token")]);
    assert.equal(noCert.code, 1);
    assert.match(noCert.stderr, /FERRY_ERR_CONTROLLER/);
    assert.match(noCert.stderr, /is https:\/\/ with mutual TLS: give --tls-cert FILE --tls-key FILE --tls-ca FILE/, "the CLI says which flags are missing");
    const other = ["--tls-cert", join(base, "other-ca", "cli.crt"), "--tls-key", join(base, "other-ca", "cli.key"), "--tls-ca", join(paths.tls, "ca.crt")];
    const otherCa = await ferry(["vm", "create", "v2", "--host", "host-a", "--memory", "128", "--nic", "physnet1:ephemeral:optional", "--guest", "no-os", "--controller", ctlUrl, "--token-file", join(paths.ctlState, "token"), ...other]);
    assert.equal(otherCa.code, 1);
    assert.match(otherCa.stderr, /FERRY_ERR_CONTROLLER/);
    const wrongToken = join(base, "wrong-token");
    await writeFile(wrongToken, `${"w".repeat(64)}\n`, { mode: 0o600 });
    const wrong = await ferry(["vm", "create", "v3", "--host", "host-a", "--memory", "128", "--nic", "physnet1:ephemeral:optional", "--guest", "no-os", ...connect.map((a) => (a === join(paths.ctlState, "token") ? wrongToken : a))]);
    assert.equal(wrong.code, 3, "refused: nothing changed");
    assert.match(wrong.stderr, /FERRY_ERR_UNAUTHORIZED/);
    assert.match(wrong.stderr, /give the controller's tokenFile with --token-file FILE or FERRY_TOKEN_FILE/);
    assert.ok(!wrong.stderr.includes("w".repeat(64)), "the wrong token is not echoed");
    const vms = JSON.parse(await ok(["vms", "--json", ...connect])) as { name: string }[];
    assert.deepEqual(vms.map((v) => v.name).sort(), vmCreated ? ["v1"] : []);
  });

  test("token files, state files, the runtime dir and instance dirs are owner-only (no group or other bits)", async () => {
    const entries = [...(await walk(paths.ctlState)), ...(await walk(paths.agentState)), ...(await walk(paths.runDir))];
    assert.ok(entries.some((e) => e.path.endsWith("controller.db")), "the controller's state file");
    assert.ok(entries.some((e) => e.path.endsWith("state.db")), "the agent's state file");
    assert.ok(entries.some((e) => e.path.endsWith("meta.json")), "an instance dir");
    const loose = entries.filter((e) => e.kind !== "socket" && e.kind !== "link" && (e.mode & 0o077) !== 0).map((e) => `${e.path} ${e.mode.toString(8)}`);
    assert.deepEqual(loose, []);
    for (const f of [paths.agentToken, join(paths.ctlState, "token"), join(paths.tls, "ca.key"), join(paths.tls, "cli.key"), join(paths.tls, "host-a.key")]) {
      assert.equal((await lstat(f)).mode & 0o777, 0o600, f);
    }
    assert.equal((await lstat(paths.tls)).mode & 0o777, 0o700);
  });

  test("no token in any output: CLI stdout/stderr and --json, the processes' logs", async () => {
    for (const args of [["hosts"], ["vms"], ["devices"], ["migrations"], ["vm", "show", "v1"], ["evacuate", "host-a", "--plan"]]) await ferry([...args, "--json", ...connect]);
    await ferry(["events", ...connect]);
    await ferry(["agent", "inventory", "--config", paths.hostYaml, "--json"]);
    await ferry(["hosts", "--controller", ctlUrl, "--token-file", join(base, "no-such-file"), "--json"]);
    const tokens = [(await readFile(paths.agentToken, "utf8")).trim(), (await readFile(join(paths.ctlState, "token"), "utf8")).trim()];
    const keys = await Promise.all(["ca.key", "cli.key", "controller.key", "host-a.key"].map(async (k) => (await readFile(join(paths.tls, k), "utf8")).split("\n").filter((l) => l !== "" && !l.startsWith("-----")).join("")));
    const logs = [{ what: "controller.log", text: await readFile(paths.ctlLog, "utf8") }, { what: "agent.log", text: await readFile(paths.agentLog, "utf8") }];
    for (const f of await walk(paths.runDir)) if (f.path.endsWith(".log")) logs.push({ what: f.path, text: await readFile(f.path, "utf8") });
    assert.ok(outputs.length >= 10, `${outputs.length} CLI runs checked`);
    for (const o of [...outputs, ...logs]) {
      for (const t of tokens) assert.ok(!o.text.includes(t), `a token in ${o.what}`);
      for (const k of keys) assert.ok(!o.text.includes(k.slice(0, 40)), `a private key in ${o.what}`);
    }
    assert.match(logs[0]!.text, /listening on https:/, "the controller log is there to check");
  });
});
