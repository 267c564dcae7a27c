// The `ferry` command as a script sees it (issue 20, "the smaller things"):
// exit codes from one table (a refusal where nothing changed is 3 —
// server-side validation, busy, not found, a conflict, a wrong token);
// every command's --help; `ferry events --json | head` ends quietly; and
// messages that state the rule and what to do next. bin/ferry is spawned
// against a real controller (in-memory SQLite) on loopback.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { makeTestHost } from "../agent/testing.ts";
import { memoryControllerApp, TEST_TOKEN } from "../api/testing.ts";
import { ERROR_CODES } from "../core/errors.ts";
import type { ErrorCode } from "../core/errors.ts";
import { run } from "../core/run.ts";
import { EXIT, EXIT_FOR_CODE, exitForError } from "./exit-codes.ts";
import { FerryError } from "../core/errors.ts";
import { COMMANDS } from "./main.ts";
import { freePort } from "../core/ports.ts";

const FERRY = fileURLToPath(new URL("../../bin/ferry", import.meta.url));


/** What each code means to a script (the README's table): 3 nothing changed, 4 undone, 1 failed. */
const EXPECTED: Record<ErrorCode, number> = {
  FERRY_ERR_INVALID: 3, FERRY_ERR_UNAUTHORIZED: 3, FERRY_ERR_NOT_FOUND: 3, FERRY_ERR_CONFLICT: 3, FERRY_ERR_STATE: 3, FERRY_ERR_VM_RUNNING: 3,
  FERRY_ERR_NO_VF: 3, FERRY_ERR_NO_HOST: 3, FERRY_ERR_LEASE_HELD: 3, FERRY_ERR_TOO_LARGE: 3, FERRY_ERR_MEDIA_TYPE: 3,
  FERRY_ERR_UNPLUG_TIMEOUT: 4, FERRY_ERR_PRECHECK: 4, FERRY_ERR_SOURCE_GAVE_UP: 4, FERRY_ERR_CANCELLED: 4, FERRY_ERR_MIGRATION_TLS: 3, FERRY_ERR_STALE_TERM: 3,
  FERRY_ERR_TIMEOUT: 1, FERRY_ERR_ABORTED: 1, FERRY_ERR_QMP: 1, FERRY_ERR_QMP_CLOSED: 1, FERRY_ERR_QMP_PROTOCOL: 1, FERRY_ERR_QEMU_START: 1,
  FERRY_ERR_MIGRATION: 1, FERRY_ERR_COMMAND: 1, FERRY_ERR_SYSFS: 1, FERRY_ERR_CONFIG: 1, FERRY_ERR_FEATURE: 1, FERRY_ERR_GUEST_IMAGE: 1,
  FERRY_ERR_AGENT: 1, FERRY_ERR_CONTROLLER: 1, FERRY_ERR_REPLUG: 1, FERRY_ERR_GUEST_LOST: 1, FERRY_ERR_NOT_LEADER: 1, FERRY_ERR_INTERNAL: 1,
};

test("one table maps every error code to an exit code: refused 3, rolled back 4, failed 1", () => {
  assert.deepEqual(Object.keys(EXIT_FOR_CODE).sort(), Object.keys(ERROR_CODES).sort(), "every code has an exit code");
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    assert.equal(EXIT_FOR_CODE[code], EXPECTED[code], code);
    assert.equal(exitForError(new FerryError(code, "x")), EXPECTED[code], code);
    // a client-side 4xx the server refused with changed nothing: refused (3)
    if (ERROR_CODES[code].status >= 400 && ERROR_CODES[code].status < 500 && !["FERRY_ERR_CONFIG", "FERRY_ERR_ABORTED", "FERRY_ERR_PRECHECK", "FERRY_ERR_SOURCE_GAVE_UP", "FERRY_ERR_CANCELLED"].includes(code)) assert.equal(EXIT_FOR_CODE[code], EXIT.refused, code);
  }
  assert.equal(exitForError(new Error("not ours")), EXIT.failed);
});

describe("ferry against a controller", () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let gate: (r: Response) => void = () => undefined;
  const held: Promise<Response>[] = [];
  // the agents' I/O seam: every call waits until the test lets it through (a VM stays busy meanwhile)
  const fetchGate = (): Promise<Response> => {
    const p = new Promise<Response>((resolve) => (gate = resolve));
    held.push(p);
    return p;
  };
  const m = memoryControllerApp({ fetch: fetchGate });
  const ferry = (args: string[], e: NodeJS.ProcessEnv = env) => run(FERRY, args, { allowFailure: true, timeoutMs: 30_000, env: e });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "fcli-"));
    const url = await m.app.listen({ host: "127.0.0.1", port: 0 });
    await writeFile(join(dir, "token"), `${TEST_TOKEN}\n`, { mode: 0o600 });
    env = { ...process.env, FERRY_CONTROLLER: url, FERRY_TOKEN_FILE: join(dir, "token"), FERRY_CONTEXT: join(dir, "no-context.json") };
    await m.controller.heartbeat({ name: "host-a", url: "http://127.0.0.1:9", version: "t", accel: "tcg" });
    const now = m.clock.now();
    await m.cluster.createVm({ uuid: "6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab", name: "web", memoryMiB: 64, vcpus: 1, host: "host-a", instanceId: "i-0000aaaa", state: "running", noOs: true, nics: [], createdAt: now, updatedAt: now });
  });
  after(async () => {
    gate(Response.json({ code: "FERRY_ERR_NOT_FOUND", message: "gone", retryable: false, details: {} }, { status: 404 }));
    await Promise.all(held);
    await rm(dir, { recursive: true, force: true });
  });

  test("refusals where nothing changed exit 3: server-side validation, not found, a conflict, a busy VM, a wrong token", async () => {
    const invalid = await ferry(["vm", "create", "bad name", "--host", "host-a", "--memory", "64"]);
    assert.equal(invalid.code, EXIT.refused, invalid.stderr);
    assert.match(invalid.stderr, /FERRY_ERR_INVALID: name: must be a VM name: 1 to 31 letters, digits/);
    assert.doesNotMatch(invalid.stderr, /\^\[|\{0,|must match pattern/, "the rule in words, not the regex");

    const missing = await ferry(["vm", "show", "ghost"]);
    assert.equal(missing.code, EXIT.refused, missing.stderr);
    assert.match(missing.stderr, /FERRY_ERR_NOT_FOUND/);

    const dup = await ferry(["vm", "create", "web", "--host", "host-a", "--memory", "64"]);
    assert.equal(dup.code, EXIT.refused, dup.stderr);
    assert.match(dup.stderr, /FERRY_ERR_CONFLICT/);

    // an operation holds the VM (its agent call waits at the gate): everything else on it is refused
    const stopping = m.controller.stopVm("web");
    for (const args of [["vm", "stop", "web"], ["migrate", "web", "--to", "host-b"], ["vm", "save", "web", "web.state"]]) {
      const busy = await ferry(args);
      assert.equal(busy.code, EXIT.refused, `ferry ${args.join(" ")}: ${busy.stderr}`);
      assert.match(busy.stderr, /FERRY_ERR_STATE: .*busy.*nothing was changed: wait for it to end/);
    }
    gate(Response.json({ code: "FERRY_ERR_NOT_FOUND", message: "no such instance", retryable: false, details: {} }, { status: 404 }));
    assert.equal((await stopping).state, "stopped");

    const wrongToken = join(dir, "wrong-token");
    await writeFile(wrongToken, `${"w".repeat(40)}\n`, { mode: 0o600 });
    const wrong = await ferry(["hosts"], { ...env, FERRY_TOKEN_FILE: wrongToken });
    assert.equal(wrong.code, EXIT.refused, wrong.stderr);
    assert.match(wrong.stderr, /FERRY_ERR_UNAUTHORIZED/);
    assert.match(wrong.stderr, new RegExp(`the CLI sent the token in ${wrongToken} \\(FERRY_TOKEN_FILE\\), which .* does not accept: give the controller's tokenFile with --token-file FILE or FERRY_TOKEN_FILE`));
    assert.ok(!wrong.stderr.includes("w".repeat(40)), "the token itself is never printed");
  });

  test("failures exit 1 and say what to do: an unreadable token file, no controller there", async () => {
    const noFile = await ferry(["hosts"], { ...env, FERRY_TOKEN_FILE: join(dir, "nope") });
    assert.equal(noFile.code, EXIT.failed, noFile.stderr);
    assert.match(noFile.stderr, /FERRY_ERR_CONFIG: cannot read the controller token from .*nope \(FERRY_TOKEN_FILE\): no such file; give the controller's tokenFile with --token-file FILE or FERRY_TOKEN_FILE/);
    const closed = `http://127.0.0.1:${await freePort()}`;
    const down = await ferry(["hosts"], { ...env, FERRY_CONTROLLER: closed });
    assert.equal(down.code, EXIT.failed, down.stderr);
    assert.ok(down.stderr.includes(`is a controller running at ${closed} (FERRY_CONTROLLER)? start it`), down.stderr);
    const ctx = join(dir, "context.json");
    await writeFile(ctx, JSON.stringify({ controller: closed, tokenFile: join(dir, "token"), lab: "gone" }));
    const lab = await ferry(["vms"], { ...process.env, FERRY_CONTEXT: ctx, FERRY_CONTROLLER: "", FERRY_TOKEN_FILE: "" });
    assert.equal(lab.code, EXIT.failed, lab.stderr);
    assert.match(lab.stderr, /the context is lab gone's: is it up\? \('ferry lab status --name gone', 'ferry lab up --name gone'\)/);
    const none = await ferry(["vms"], { ...process.env, HOME: dir, FERRY_CONTEXT: "", FERRY_CONTROLLER: "", FERRY_TOKEN_FILE: "" });
    assert.equal(none.code, EXIT.usage, none.stderr);
    assert.match(none.stderr, /no controller address: .*'ferry lab up' writes one for its lab/);
    const badCtx = await ferry(["vms"], { ...process.env, FERRY_CONTEXT: join(dir, "none.json"), FERRY_CONTROLLER: "", FERRY_TOKEN_FILE: "" });
    assert.equal(badCtx.code, EXIT.failed, badCtx.stderr);
    assert.match(badCtx.stderr, /point FERRY_CONTEXT at a context file \('ferry lab up' writes one\) or unset it/);
  });

  test("a context with several controllers: a controller that cannot be reached is passed over; none reachable, or a bad list, says so", async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const live = env["FERRY_CONTROLLER"]!;
    const ctx = join(dir, "context-ha.json");
    const ctxEnv = { ...process.env, FERRY_CONTEXT: ctx, FERRY_CONTROLLER: "", FERRY_TOKEN_FILE: "" };
    await writeFile(ctx, JSON.stringify({ controller: closed, controllers: [closed, live], tokenFile: join(dir, "token"), lab: "ha" }));
    const ok = await ferry(["vm", "show", "web", "--json"], ctxEnv);
    assert.equal(ok.code, EXIT.ok, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { name: string }).name, "web");
    const other = `http://127.0.0.1:${await freePort()}`;
    await writeFile(ctx, JSON.stringify({ controller: closed, controllers: [closed, other], tokenFile: join(dir, "token"), lab: "ha" }));
    const none = await ferry(["vms"], ctxEnv);
    assert.equal(none.code, EXIT.failed, none.stderr);
    assert.ok(none.stderr.includes(`no controller of ${closed}, ${other} (the context file ${ctx}) could be reached`), none.stderr);
    await writeFile(ctx, JSON.stringify({ controller: closed, controllers: ["ftp://x"], tokenFile: join(dir, "token") }));
    const bad = await ferry(["vms"], ctxEnv);
    assert.equal(bad.code, EXIT.failed, bad.stderr);
    assert.match(bad.stderr, /controllers must be a non-empty list of http\(s\) URLs/);
    // the one controller of a context file is checked as strictly, and the error names the file, not a flag
    await writeFile(ctx, JSON.stringify({ controller: "ftp://y", tokenFile: join(dir, "token") }));
    const badOne = await ferry(["vms"], ctxEnv);
    assert.equal(badOne.code, EXIT.usage, badOne.stderr);
    assert.ok(badOne.stderr.includes(`the context file ${ctx}: not an http(s) URL: "ftp://y"`), badOne.stderr);
  });

  test("FERRY_CONTROLLER and --controller take several controllers (URL,URL): one that cannot be reached is passed over; a bad one is named", async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const live = env["FERRY_CONTROLLER"]!;
    const viaEnv = await ferry(["vm", "show", "web", "--json"], { ...env, FERRY_CONTROLLER: `${closed},${live}` });
    assert.equal(viaEnv.code, EXIT.ok, viaEnv.stderr);
    assert.equal((JSON.parse(viaEnv.stdout) as { name: string }).name, "web");
    const viaFlag = await ferry(["vm", "show", "web", "--json", "--controller", `${closed}, ${live}`], env);
    assert.equal(viaFlag.code, EXIT.ok, viaFlag.stderr);
    const bad = await ferry(["vms"], { ...env, FERRY_CONTROLLER: `${live},ftp://x` });
    assert.equal(bad.code, EXIT.usage, bad.stderr);
    assert.match(bad.stderr, /FERRY_CONTROLLER: not an http\(s\) URL: "ftp:\/\/x" \(in .*several controllers: URL,URL,…\)/);
  });

  test("an https controller without the TLS flags: the CLI says which flags to give", async () => {
    const r = await ferry(["hosts"], { ...env, FERRY_CONTROLLER: env["FERRY_CONTROLLER"]!.replace("http:", "https:") });
    assert.equal(r.code, EXIT.failed, r.stderr);
    assert.match(r.stderr, /is https:\/\/ with mutual TLS: give --tls-cert FILE --tls-key FILE --tls-ca FILE/);
    const partial = await ferry(["hosts", "--tls-cert", "/c.crt"], env);
    assert.equal(partial.code, EXIT.usage);
    assert.match(partial.stderr, /mutual TLS needs --tls-cert, --tls-key and --tls-ca together \(missing: --tls-key, --tls-ca\)/);
  });

  test("vm save with a path: a usage error that says what a save name is and where save files go; nothing sent", async () => {
    const r = await ferry(["vm", "save", "web", "/tmp/web.state"]);
    assert.equal(r.code, EXIT.usage, r.stderr);
    assert.match(r.stderr, /"\/tmp\/web\.state" is a path; Ferry chooses where save files go: the saveDir of the VM's host \(host\.yaml saveDir, default <stateDir>\/saves\)/);
    assert.match(r.stderr, /give its name only, e\.g\. 'ferry vm save NAME web\.state'/);
    const bad = await ferry(["vm", "save", "web", "we b.state"]);
    assert.match(bad.stderr, /"we b\.state" is not a save name: FILE is a file name, not a path — 1 to 128 letters, digits/);
    assert.equal((await m.controller.getVm("web")).savedAs, undefined);
  });

  test("`ferry events --json | head -1` ends quietly: EPIPE on stdout exits 0, no stack trace", async () => {
    const child = spawn(FERRY, ["events", "--follow", "--json"], { env, stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const first = await new Promise<string>((resolve) => child.stdout.once("data", (d: Buffer) => resolve(d.toString())));
    assert.match(first, /"type":"host-registered"/);
    child.stdout.destroy(); // what head does after its lines: the pipe's reader is gone
    // new events to write: the next write hits the closed pipe
    for (let i = 0; i < 5; i++) await m.controller.heartbeat({ name: `host-p${i}`, url: "http://127.0.0.1:9", version: "t", accel: "tcg" });
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    const code = await exited;
    clearTimeout(timer);
    assert.equal(code, 0, `exit ${code}: ${err}`);
    assert.equal(err, "", "nothing on stderr");
  });
});

test("every command's --help prints its usage to stdout and exits 0 (ferry demo --help included)", async () => {
  for (const cmd of Object.keys(COMMANDS)) {
    const r = await run(FERRY, [cmd, "--help"], { allowFailure: true, timeoutMs: 30_000 });
    assert.equal(r.code, EXIT.ok, `ferry ${cmd} --help: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^usage:\\s+ferry ${cmd}\\b`), `ferry ${cmd} --help`);
    assert.equal(r.stderr, "", `ferry ${cmd} --help`);
  }
  const lab = await run(FERRY, ["lab", "status", "--name", `never-${process.pid}`], { allowFailure: true, timeoutMs: 30_000 });
  assert.equal(lab.code, EXIT.ok);
  assert.match(lab.stdout, new RegExp(`lab never-${process.pid} is not up: bring it up with 'ferry lab up --name never-${process.pid}'`));
});

test("ferry agent on a port in use: exit 1, saying which setting to change (no stack trace)", async () => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
  const port = (busy.address() as AddressInfo).port;
  const host = await makeTestHost({ name: "busy-port", port });
  try {
    const r = await run(FERRY, ["agent", "--config", host.configPath], { allowFailure: true, timeoutMs: 30_000 });
    assert.equal(r.code, EXIT.failed, r.stderr);
    assert.ok(r.stderr.includes(`FERRY_ERR_CONFIG: 127.0.0.1:${port} is in use (another agent or controller?): stop what listens there, or set another listen.port in ${host.configPath}`), r.stderr);
    assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  } finally {
    busy.close();
    await host.cleanup();
  }
});
