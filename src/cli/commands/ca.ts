// `ferry ca init --dir D`: a certificate authority for the APIs' mutual TLS
//   (D is created owner-only; ca.key 0600).
// `ferry ca issue --dir D --name NAME [--ip IP]... [--dns NAME]...`: NAME.key
//   and NAME.crt signed by that CA, for a server and client at once (127.0.0.1
//   and localhost are always among its names). Use them in a config:
//   tls: { cert: D/NAME.crt, key: D/NAME.key, ca: D/ca.crt }.
import { resolve } from "node:path";
import { initCa, issueCert } from "../../core/ca.ts";
import { rejectExtra, required, UsageError } from "../args.ts";
import type { Parsed } from "../args.ts";
import { command } from "../command.ts";
import { EXIT } from "../exit-codes.ts";
import { printJson, takeRepeated } from "./connect.ts";

export const USAGE = `usage:
  ferry ca init --dir DIR [--json]                                  create a CA in DIR (ca.key, ca.crt; DIR owner-only)
  ferry ca issue --dir DIR --name NAME [--ip IP]... [--dns NAME]... [--json]
                                                                    issue NAME.key/NAME.crt signed by DIR's CA (server and client)
In host.yaml or controller.yaml: tls: { cert: DIR/NAME.crt, key: DIR/NAME.key, ca: DIR/ca.crt }
`;

const OPTIONS = { dir: { type: "string" }, name: { type: "string" }, json: { type: "boolean" }, help: { type: "boolean", short: "h" } } as const;

export async function run(argv: readonly string[]): Promise<number> {
  const ips = takeRepeated(argv, "--ip", "ca");
  const dns = takeRepeated(ips.rest, "--dns", "ca");
  return command("ca", USAGE, OPTIONS, (args) => ca(args, ips.values, dns.values))(dns.rest);
}

async function ca({ values, positionals }: Parsed<typeof OPTIONS>, ips: readonly string[], dns: readonly string[]): Promise<number> {
  const [sub, ...extra] = positionals;
  rejectExtra("ca", extra);
  const dir = resolve(required("ca", values.dir, "--dir DIR"));
  if (dir.includes("\0")) throw new UsageError("ca", "--dir: contains a NUL byte");
  if (sub === "init") {
    if (values.name !== undefined || ips.length > 0 || dns.length > 0) throw new UsageError("ca", "--name, --ip and --dns apply to 'ferry ca issue' only");
    const p = await initCa(dir);
    if (values.json) printJson({ dir, key: p.key, cert: p.cert });
    else process.stdout.write(`CA created in ${dir}: ${p.cert} (certificate), ${p.key} (key, owner-only)\n`);
    return EXIT.ok;
  }
  if (sub === "issue") {
    const name = required("ca", values.name, "--name NAME");
    const r = await issueCert(dir, { name, ips, dns });
    if (values.json) printJson({ dir, name, ...r });
    else process.stdout.write(`issued ${r.cert} (key ${r.key}); in a config: tls: { cert: ${r.cert}, key: ${r.key}, ca: ${r.ca} }\n`);
    return EXIT.ok;
  }
  throw new UsageError("ca", sub === undefined ? "missing subcommand (init or issue)" : `unknown subcommand ${JSON.stringify(sub)} (expected: init, issue)`);
}
