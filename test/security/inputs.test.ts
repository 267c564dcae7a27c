// Shell metacharacters and path traversal in every string that reaches a
// command or a path — VM, NIC, network and host names, PCI addresses, MACs,
// instance and migration ids, save-file names, the QEMU binary of a local
// migration, config paths, lab and CA names — through each boundary: the
// controller API, the agent API, the YAML configs and the `ferry` command.
// Each is refused with a FerryError code (or a usage error), nothing is
// executed (a sentinel file that the payloads would `touch` never appears),
// and nothing is created or removed outside the intended dirs.
import assert from "node:assert/strict";
import { access, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Agent } from "../../src/agent/agent.ts";
import { buildAgentApp } from "../../src/agent/http/app.ts";
import { makeTestHost } from "../../src/agent/testing.ts";
import type { TestHost } from "../../src/agent/testing.ts";
import { loadOrCreateToken } from "../../src/core/http/token.ts";
import { main } from "../../src/cli/main.ts";
import { parseControllerConfig } from "../../src/controller/config.ts";
import { initCa } from "../../src/core/ca.ts";
import { FerryError } from "../../src/core/errors.ts";
import { parseHostConfig } from "../../src/host/config.ts";
import { memoryController } from "../fuzz/memory-controller.ts";
import type { MemoryController } from "../fuzz/memory-controller.ts";

let base = "";
let sentinel = "";
/** Strings no name, id, address or file name may be. `S` becomes the sentinel's path. */
const HOSTILE_RAW = [
  "; touch S", "$(touch S)", "`touch S`", "| touch S", "&& touch S", "x;touch S", "x$(touch S)",
  "../../etc/passwd", "../victim", "..", ".", "a/b", "/etc/passwd", "a\0b", "a\nb", "a\rb", "a\tb",
  "x".repeat(5000), "", " ", "-rf", "--help", "%2e%2e%2f", "a b", "a\u202eb", "~root", "*", "a'b", 'a"b', "a\\b",
];
let HOSTILE: string[] = [];
/** Paths that must be refused wherever a path is configured (traversal, NUL, control characters, absurd length). */
const BAD_PATHS = ["../../etc", "/tmp/../etc/passwd", "a/../../b", "/tmp/a\0b", "/tmp/a\nb", "/tmp/a\u001bb", `/${"x".repeat(5000)}`];

async function exists(p: string): Promise<boolean> {
  return access(p).then(() => true, () => false);
}

function assertProblem(r: { statusCode: number; body: string }, what: string, codes: readonly string[] = ["FERRY_ERR_INVALID"]): void {
  assert.ok(r.statusCode >= 400 && r.statusCode < 500, `${what} → ${r.statusCode} ${r.body.slice(0, 200)}`);
  const code = (JSON.parse(r.body) as { code?: string }).code;
  assert.ok(code !== undefined && codes.includes(code), `${what} → ${code ?? r.body.slice(0, 200)} (expected ${codes.join("|")})`);
}

before(async () => {
  base = await mkdtemp(join(tmpdir(), "ferry-meta-"));
  sentinel = join(base, "PWNED");
  HOSTILE = HOSTILE_RAW.map((h) => h.replaceAll("S", sentinel));
  await mkdir(join(base, "victim"));
  await writeFile(join(base, "victim", "keep"), "keep\n");
});

after(async () => {
  assert.equal(await exists(sentinel), false, "no payload was executed");
  assert.ok(await exists(join(base, "victim", "keep")), "nothing outside the intended dirs was removed");
  await rm(base, { recursive: true, force: true });
});

describe("controller API", () => {
  const TOKEN = "t".repeat(40);
  const { controller, cluster, app, close } = memoryController(TOKEN);
  const headers = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };
  after(() => close());

  test("bodies: every name, host, network, file name, URL and QEMU path is refused with FERRY_ERR_INVALID; nothing is created", async () => {
    const nic = { network: "physnet1", mode: "ephemeral", policy: "optional" };
    const vm = { name: "ok", host: "host-a", memoryMiB: 128, nics: [nic] };
    let n = 0;
    for (const h of HOSTILE) {
      const bodies: [string, string, unknown][] = [
        ["POST", "/v1/vms", { ...vm, name: h }],
        ["POST", "/v1/vms", { ...vm, host: h }],
        ["POST", "/v1/vms", { ...vm, nics: [{ ...nic, network: h }] }],
        ["POST", "/v1/vms/ok/save", { file: h }],
        ["POST", "/v1/vms/ok/restore", { host: h }],
        ["POST", "/v1/migrations", { vm: h }],
        ["POST", "/v1/migrations", { vm: "ok", to: h }],
        ["POST", "/v1/agents/heartbeat", { name: h, url: "http://127.0.0.1:1", version: "1", accel: "tcg" }],
      ];
      if (h !== "a/b") bodies.push(["POST", "/v1/agents/heartbeat", { name: "host-z", url: `http://${h}`, version: "1", accel: "tcg" }]); // http://a/b: host a, path /b
      // a plain path prefix (segments of letters, digits, '.', '_', '~', '-', none of them '.' or '..') is allowed in an agent's URL
      if (h !== "" && (!/^[A-Za-z0-9_~-][A-Za-z0-9._~-]*(\/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*$/.test(h) || h.length > 200)) bodies.push(["POST", "/v1/agents/heartbeat", { name: "host-z", url: `http://127.0.0.1:1/${h}`, version: "1", accel: "tcg" }]);
      if (!h.startsWith("/") || /[\0-\x1f]/.test(h) || h.includes("/..")) bodies.push(["POST", "/v1/vms/ok/local-migrate", { qemuBinary: h }]);
      for (const [method, url, body] of bodies) {
        const r = await app.inject({ method: method as "POST", url, headers, payload: JSON.stringify(body) });
        assertProblem(r, `${url} ${JSON.stringify(body).slice(0, 100)}`);
        n++;
      }
    }
    assert.ok(n > 300, `${n} cases`);
    assert.deepEqual(await controller.listVms(), []);
    assert.deepEqual((await cluster.listHosts()).map((x) => x.name), []);
  });

  test("path parameters and queries: refused (FERRY_ERR_INVALID, or NOT_FOUND for an empty segment), never a 5xx", async () => {
    for (const h of HOSTILE) {
      const e = encodeURIComponent(h);
      for (const [method, url] of [
        ["GET", `/v1/vms/${e}`], ["POST", `/v1/vms/${e}/start`], ["POST", `/v1/vms/${e}/stop`], ["DELETE", `/v1/vms/${e}`],
        ["POST", `/v1/hosts/${e}/drain`], ["POST", `/v1/hosts/${e}/undrain`], ["POST", `/v1/hosts/${e}/evacuate`],
        ["GET", `/v1/migrations/${e}`], ["POST", `/v1/migrations/${e}/cancel`], ["GET", `/v1/evacuations/${e}`],
        ["GET", `/v1/devices?host=${e}`], ["GET", `/v1/devices?network=${e}`], ["GET", `/v1/events?after=${e}`],
      ] as const) {
        const payload = method === "POST" && url.endsWith("/evacuate") ? "{}" : undefined;
        const r = await app.inject({ method, url, headers: payload ? headers : { authorization: headers.authorization }, ...(payload ? { payload } : {}) });
        assertProblem(r, `${method} ${url.slice(0, 80)}`, h === "" || h === "." || h === ".." ? ["FERRY_ERR_INVALID", "FERRY_ERR_NOT_FOUND"] : ["FERRY_ERR_INVALID"]);
      }
    }
  });
});

describe("agent API", () => {
  let host: TestHost;
  let agent: Agent;
  let app: ReturnType<typeof buildAgentApp>;
  let headers: Record<string, string> = {};
  before(async () => {
    host = await makeTestHost({ name: "meta", saveDir: join(base, "saves") });
    agent = await Agent.open({ config: host.config });
    const { token } = await loadOrCreateToken(host.config.authTokenFile);
    app = buildAgentApp({ agent, token });
    headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  });
  after(async () => {
    await app.close();
    await agent.close();
    await host.cleanup();
  });

  test("spec fields, lease VFs, ids, save names and QEMU paths: refused with FERRY_ERR_INVALID; no lease, no instance, no file", async () => {
    const vf = host.vfs[0]!;
    const uuid = "0b5c3f8e-1d2a-4c4b-9a77-3e2f1d0c9b8a";
    const holder = { kind: "instance", vmUuid: uuid, instanceId: "i-00000001" };
    const nic = { name: "net0", mode: "failover", mac: "52:54:00:12:34:56", standby: { kind: "tap", ifname: "tap0" }, primary: { kind: "vfio", host: vf }, guestPorts: { standby: 1, primary: 2 } };
    const spec = { uuid, name: "vm1", memoryMiB: 128, vcpus: 1, kernel: "/k", initrd: "/i", cmdline: "", nics: [nic] };
    let n = 0;
    for (const h of HOSTILE) {
      const e = encodeURIComponent(h);
      const cases: [string, string, unknown][] = [
        ["POST", "/v1/leases", { vf: h, holder }],
        ["POST", "/v1/leases", { vf, holder: { ...holder, instanceId: h } }],
        ["POST", "/v1/instances", { spec: { ...spec, name: h } }],
        ["POST", "/v1/instances", { spec: { ...spec, nics: [{ ...nic, name: h }] } }],
        ["POST", "/v1/instances", { spec: { ...spec, nics: [{ ...nic, mac: h }] } }],
        ["POST", "/v1/instances", { spec: { ...spec, nics: [{ ...nic, primary: { kind: "vfio", host: h } }] } }],
        ["POST", "/v1/instances", { spec: { ...spec, nics: [{ ...nic, standby: { kind: "tap", ifname: h } }] } }],
        ["POST", "/v1/instances", { spec: { ...spec, uuid: h } }],
        ["POST", "/v1/instances/i-00000001/save", { name: h }],
        ["POST", "/v1/instances/restore", { name: h, nics: [] }],
        ["POST", `/v1/instances/${e}/stop`, undefined],
        ["POST", `/v1/leases/${e}/transfer`, { from: holder, to: holder }],
        ["POST", `/v1/migrations/${e}/abort`, {}],
      ];
      if (h !== "/etc/passwd") cases.push(["POST", "/v1/instances/i-00000001/local-migrate", { qemuBinary: h }]);
      if (!h.startsWith("/") || /[\0-\x1f]/.test(h)) cases.push(["POST", "/v1/instances", { spec: { ...spec, kernel: h } }]);
      for (const [method, url, body] of cases) {
        const r = await app.inject({ method: method as "POST", url, headers: body === undefined ? { authorization: headers["authorization"]! } : headers, ...(body === undefined ? {} : { payload: JSON.stringify(body) }) });
        assertProblem(r, `${url.slice(0, 60)} ${JSON.stringify(body)?.slice(0, 100)}`, h === "" || h === "." || h === ".." ? ["FERRY_ERR_INVALID", "FERRY_ERR_NOT_FOUND"] : ["FERRY_ERR_INVALID"]);
        n++;
      }
    }
    // a QEMU path that exists but is no executable file is refused too (before any instance is looked up)
    for (const q of ["/etc/passwd", "/tmp", `${sentinel}; touch ${sentinel}`]) {
      const r = await app.inject({ method: "POST", url: "/v1/instances/i-00000001/local-migrate", headers, payload: JSON.stringify({ qemuBinary: q }) });
      assertProblem(r, q);
      assert.match(r.body, /qemuBinary/);
    }
    assert.ok(n > 350, `${n} cases`);
    assert.equal(agent.listLeases().length, 0, "no lease");
    assert.equal((await agent.listInstances()).instances.length, 0, "no instance");
    assert.equal(await exists(join(base, "saves")) ? (await readdir(join(base, "saves"))).length : 0, 0, "no save file");
  });
});

describe("YAML configs", () => {
  const errs = (f: () => unknown, what: string): void => {
    try {
      f();
    } catch (e) {
      assert.ok(e instanceof FerryError && e.code === "FERRY_ERR_CONFIG", `${what}: ${String(e)}`);
      return;
    }
    assert.fail(`${what}: accepted`);
  };
  const q = (s: string): string => JSON.stringify(s); // a JSON string is a YAML double-quoted scalar
  const host = (o: Record<string, string>): string => `name: ${o["name"] ?? "h1"}
${o["extra"] ?? ""}
networks:
  ${o["net"] ?? "physnet1"}: { bridge: ${o["bridge"] ?? "br0"}, netns: ${o["netns"] ?? "ns0"} }
uplinks:
  - pf: ${o["pf"] ?? "0000:3b:00.0"}
    network: physnet1
    standIns: { vfs: [${o["vf"] ?? "0000:3b:10.0"}] }
`;

  test("names, interfaces and PCI addresses with metacharacters; paths with traversal, NUL or control characters: FERRY_ERR_CONFIG", () => {
    parseHostConfig(host({}), { source: "host.yaml", baseDir: base });
    for (const h of HOSTILE) {
      for (const k of ["name", "net", "bridge", "netns", "pf", "vf"]) errs(() => parseHostConfig(host({ [k]: q(h) }), { source: "host.yaml", baseDir: base }), `host ${k}=${q(h).slice(0, 40)}`);
      errs(() => parseControllerConfig(`stateDir: /s\nagentTokenFile: /a\nlab: { fabric: ${q(h)} }\n`, { baseDir: base }), `controller lab.fabric=${q(h).slice(0, 40)}`);
      errs(() => parseControllerConfig(`stateDir: /s\nagentTokenFile: /a\nlisten: { address: ${q(h)} }\n`, { baseDir: base }), `controller listen.address=${q(h).slice(0, 40)}`);
    }
    const hostPaths = ["sysfsRoot", "stateDir", "runDir", "saveDir", "authTokenFile", "portProfileExec"];
    for (const p of BAD_PATHS) {
      for (const k of hostPaths) errs(() => parseHostConfig(host({ extra: `${k}: ${q(p)}` }), { source: "host.yaml", baseDir: base }), `host ${k}=${q(p).slice(0, 40)}`);
      errs(() => parseHostConfig(host({ extra: `controller: { url: http://127.0.0.1:7600, tokenFile: ${q(p)} }` }), { baseDir: base }), `controller.tokenFile=${q(p).slice(0, 40)}`);
      errs(() => parseHostConfig(host({ extra: `tls: { cert: ${q(p)}, key: /k, ca: /c }` }), { baseDir: base }), `tls.cert=${q(p).slice(0, 40)}`);
      for (const k of ["stateDir", "tokenFile", "agentTokenFile"]) {
        errs(() => parseControllerConfig(`stateDir: /s\nagentTokenFile: /a\n${k}: ${q(p)}\n`.replace(new RegExp(`^${k}: /[sa]\\n`, "m"), ""), { baseDir: base }), `controller ${k}=${q(p).slice(0, 40)}`);
      }
    }
  });

  test("a relative path with metacharacters is only a file name inside the config's directory", () => {
    for (const h of ["$(touch x)", "`id`", "; rm -rf y"]) {
      const c = parseHostConfig(host({ extra: `stateDir: ${q(h)}` }), { baseDir: base });
      assert.equal(c.stateDir, join(base, h));
    }
  });
});

describe("the ferry command", () => {
  let server: MemoryController;
  const saved: Record<string, string | undefined> = {};
  const ENV = ["FERRY_CONTROLLER", "FERRY_TOKEN_FILE", "FERRY_CONTEXT", "FERRY_LAB_DIR", "HOME"] as const;
  before(async () => {
    const tokenFile = join(base, "cli-token");
    const { token } = await loadOrCreateToken(tokenFile);
    server = memoryController(token);
    const url = await server.app.listen({ host: "127.0.0.1", port: 0 });
    for (const k of ENV) saved[k] = process.env[k];
    process.env["FERRY_CONTROLLER"] = url;
    process.env["FERRY_TOKEN_FILE"] = tokenFile;
    process.env["FERRY_CONTEXT"] = "";
    process.env["HOME"] = base;
    process.env["FERRY_LAB_DIR"] = join(base, "labs");
    await mkdir(join(base, "labs"));
    await initCa(join(base, "ca"));
  });
  after(async () => {
    for (const k of ENV) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
    await server.close();
  });

  /** `ferry ARGV` in this process; stderr (where the command's errors go) is captured. stdout is left alone: the test runner talks through it. */
  async function cli(argv: string[]): Promise<{ code: number; err: string }> {
    const errw = process.stderr.write.bind(process.stderr);
    let err = "";
    process.stderr.write = ((s: string | Uint8Array) => {
      err += String(s);
      return true;
    });
    try {
      return { code: await main(argv), err };
    } finally {
      process.stderr.write = errw;
    }
  }

  test("every argument that names something is refused with a code or a usage error — never a crash, never executed", async () => {
    let n = 0;
    for (const h of HOSTILE.filter((x) => !x.includes("\0") && x !== "--help")) { // --help anywhere prints the usage
      for (const argv of [
        ["vm", "save", "ok", h], ["vm", "save", h, "file1"], ["vm", "show", h], ["vm", "delete", h], ["vm", "start", h],
        ["vm", "create", h, "--host", "host-a", "--memory", "128", "--nic", "physnet1:ephemeral:optional"],
        ["vm", "create", "ok", "--host", h, "--memory", "128", "--nic", "physnet1:ephemeral:optional"],
        ["vm", "create", "ok", "--host", "host-a", "--memory", "128", "--nic", `${h}:ephemeral:optional`],
        ["vm", "restore", "ok", "--host", h], ["host", "drain", h], ["evacuate", h, "--plan"],
        ["migrate", h, "--to", "host-b"], ["migrate", "ok", "--to", h], ["migrate", "ok", "--local", "--qemu", h],
        ["migration", "show", h], ["migration", "cancel", h], ["devices", "--host", h],
        ["lab", "status", "--name", h], ["lab", "down", "--name", h], ["lab", "kill", h, "--name", "x"],
        ["ca", "issue", "--dir", join(base, "ca"), "--name", h], ["agent", "inventory", "--config", join(base, "nothing", h)],
      ]) {
        const r = await cli(argv);
        assert.notEqual(r.code, 0, `ferry ${argv.join(" ").slice(0, 120)} succeeded`);
        assert.match(r.err, /FERRY_ERR_[A-Z_]+|see 'ferry/, `ferry ${argv.join(" ").slice(0, 120)}: ${r.err.slice(0, 300)}`);
        assert.doesNotMatch(r.err, /FERRY_ERR_INTERNAL|\n\s+at /, `a crash: ferry ${argv.join(" ").slice(0, 120)}: ${r.err.slice(0, 500)}`);
        n++;
      }
    }
    assert.ok(n > 500, `${n} cases`);
    assert.deepEqual(await readdir(join(base, "labs")), [], "no lab dir made");
    assert.deepEqual((await readdir(join(base, "ca"))).sort(), ["ca.crt", "ca.key"], "no certificate issued");
  });

  test("a NUL in an argument is refused too", async () => {
    for (const argv of [["vm", "show", "a\0b"], ["ca", "init", "--dir", join(base, "x\0y")], ["lab", "down", "--name", "a\0b"]]) {
      const r = await cli(argv);
      assert.notEqual(r.code, 0);
      assert.match(r.err, /FERRY_ERR_[A-Z_]+|see 'ferry/);
    }
  });
});

