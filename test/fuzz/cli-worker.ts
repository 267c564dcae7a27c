// The CLI fuzz of surfaces.test.ts, in its own process (the commands write to
// stdout and stderr, which the test runner needs for itself): random `ferry`
// command lines against an in-process controller (plain HTTP, no hosts, so
// nothing can start). Commands that would start processes or touch the
// machine (agent, controller, lab up/down, demo, events --follow) are left out.
// usage: node cli-worker.ts CASES OUT.json DIR
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadOrCreateToken } from "../../src/core/http/token.ts";
import { main } from "../../src/cli/main.ts";
import { ATOMS, pick, prng, text } from "./gen.ts";
import { memoryController } from "./memory-controller.ts";

const [casesArg, out, dir] = process.argv.slice(2);
const CASES = Number(casesArg);
if (!Number.isInteger(CASES) || out === undefined || dir === undefined) throw new Error("usage: cli-worker.ts CASES OUT.json DIR");

const tokenFile = join(dir, "fuzz-token");
const { token } = await loadOrCreateToken(tokenFile);
const mc = memoryController(token);
process.env["FERRY_CONTROLLER"] = await mc.app.listen({ host: "127.0.0.1", port: 0 });
process.env["FERRY_TOKEN_FILE"] = tokenFile;

const COMMANDS = ["hosts", "host", "evacuate", "devices", "vms", "vm", "migrate", "migrations", "migration", "events", "lab", "agent", "ca", "nope", "", "-x", "--help"];
const SUBS: Record<string, string[]> = {
  host: ["drain", "undrain", "x"], vm: ["create", "show", "start", "stop", "delete", "save", "restore", "x"], migration: ["show", "cancel", "x"],
  lab: ["status"], agent: ["inventory"], ca: ["issue"],
};
const FLAGS = ["--json", "--to", "--host", "--memory", "--vcpus", "--nic", "--plan", "--local", "--qemu", "--name", "--network", "--parallel", "--max-bandwidth", "--after", "--guest", "--controller", "--token-file", "--tls-cert", "--tls-key", "--tls-ca", "--config", "--dir", "--ip", "--dns", "-h", "--", "--bogus", "-j"];
const VALUES = ["vm1", "host-a", "physnet1:failover:mandatory", "physnet1:ephemeral", "128", "0", "-1", "1e9", "abc", "/etc/passwd", "../x", "http://127.0.0.1:1", "https://x", "", " ", "no-os"];

const r = prng(13);
function token1(): string {
  const k = r();
  if (k < 0.3) return pick(r, FLAGS);
  if (k < 0.75) return pick(r, VALUES);
  if (k < 0.9) return text(r, 10).toWellFormed().replaceAll("\0", "");
  return pick(r, ATOMS).toWellFormed().replaceAll("\0", "");
}

const failures: string[] = [];
const exits: Record<string, number> = {};
const realOut = process.stdout.write.bind(process.stdout);
const realErr = process.stderr.write.bind(process.stderr);
for (let i = 0; i < CASES; i++) {
  const cmd = pick(r, COMMANDS);
  const argv = cmd === "" ? [] : [cmd];
  const subs = SUBS[cmd];
  if (subs) argv.push(pick(r, subs));
  for (let n = Math.floor(r() * 4); n > 0; n--) argv.push(token1());
  if (cmd === "events") for (let j = argv.length - 1; j >= 0; j--) if (argv[j]!.startsWith("--f") || argv[j]!.startsWith("-f")) argv.splice(j, 1);
  if (cmd === "ca") argv.push("--dir", join(dir, "no-ca")); // never a CA here: issue is refused
  if (cmd === "lab") argv.splice(1, argv.length - 1, "status", ...argv.slice(2).filter((a) => a === "--json" || a === "--name"), "--name", pick(r, ["lab-fuzz", "../x", "$(id)"]));
  let err = "";
  process.stdout.write = (() => true);
  process.stderr.write = ((s: string | Uint8Array) => {
    err += String(s);
    return true;
  });
  let code: number | "hang";
  try {
    code = await Promise.race([main(argv), new Promise<"hang">((res) => setTimeout(() => res("hang"), 60_000).unref())]);
  } catch (e) {
    code = -1;
    err += `threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
  } finally {
    process.stdout.write = realOut;
    process.stderr.write = realErr;
  }
  exits[String(code)] = (exits[String(code)] ?? 0) + 1;
  const what = `ferry ${JSON.stringify(argv)} → ${code}: ${err.slice(0, 300)}`;
  if (code === "hang" || code === -1 || ![0, 1, 2, 3, 4].includes(code)) failures.push(what);
  else if (code !== 0 && !/FERRY_ERR_[A-Z_]+|see 'ferry/.test(err)) failures.push(`no code or usage hint: ${what}`);
  else if (/FERRY_ERR_INTERNAL|\n\s+at /.test(err)) failures.push(`a crash: ${what}`);
}
await mc.close();
await writeFile(out, JSON.stringify({ cases: CASES, exits, failures }));
