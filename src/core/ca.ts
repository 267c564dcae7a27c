// A small certificate authority for Ferry's mutual TLS, made with the Debian
// `openssl` command (argv arrays, never a shell). The CA directory is owner-only
// (0700) and every key in it 0600:
//   ca.key ca.crt              `ferry ca init --dir D`
//   NAME.key NAME.crt          `ferry ca issue --dir D --name NAME [--ip IP]... [--dns NAME]...`
// An issued certificate serves both as a server certificate (its IPs and DNS
// names are its subjectAltNames; 127.0.0.1 and localhost are always included)
// and as a client certificate.
import { randomBytes } from "node:crypto";
import { access, chmod, mkdir, rm, stat, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import { FerryError, invalid } from "./errors.ts";
import { run as defaultRun } from "./run.ts";
import type { Runner } from "./run.ts";

const NAME_RE = /^[a-z0-9][a-z0-9_.-]{0,62}$/i;
const DNS_RE = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** A DNS name as `ferry ca issue --dns` accepts it. */
export function isDnsName(s: string): boolean {
  return DNS_RE.test(s);
}

export interface CaPaths {
  dir: string;
  key: string;
  cert: string;
}

export function caPaths(dir: string): CaPaths {
  return { dir, key: join(dir, "ca.key"), cert: join(dir, "ca.crt") };
}

const exists = (f: string): Promise<boolean> => access(f).then(() => true, () => false);

async function openssl(runner: Runner, args: string[], signal?: AbortSignal): Promise<void> {
  try {
    await runner("openssl", args, { timeoutMs: 60_000, ...(signal ? { signal } : {}) });
  } catch (e) {
    if (e instanceof FerryError && e.details["exitCode"] === -1 && /ENOENT/.test(e.message)) {
      throw new FerryError("FERRY_ERR_COMMAND", "the openssl command is missing: install the Debian package 'openssl' (scripts/setup.sh does)", { cause: e });
    }
    throw e;
  }
}

async function ownerOnlyDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  if (!st.isDirectory()) throw new FerryError("FERRY_ERR_INVALID", `${dir}: not a directory: give --dir a directory, or a path that does not exist yet`, { details: { dir } });
  await chmod(dir, 0o700);
}

/** Create a CA (EC P-256, 10 years) in dir; refuses if one is already there. */
export async function initCa(dir: string, o: { run?: Runner; signal?: AbortSignal; days?: number } = {}): Promise<CaPaths> {
  const p = caPaths(dir);
  if ((await exists(p.key)) || (await exists(p.cert))) {
    throw new FerryError("FERRY_ERR_CONFLICT", `${dir} already holds a CA (ca.key/ca.crt): use it, or remove it first to make a new one (certificates it issued would stop working)`, { details: { dir } });
  }
  await ownerOnlyDir(dir);
  await openssl(o.run ?? defaultRun, [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", p.key, "-out", p.cert, "-days", String(o.days ?? 3650), "-subj", "/CN=ferry-ca",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ], o.signal);
  await chmod(p.key, 0o600);
  await chmod(p.cert, 0o644);
  return p;
}

export interface IssueOptions {
  name: string;
  ips?: readonly string[];
  dns?: readonly string[];
  days?: number;
  run?: Runner;
  signal?: AbortSignal;
}

/** Validate what `issue` would put in a certificate (names are also file names: no '/', no '..'). */
export function checkIssue(o: { name: string; ips?: readonly string[]; dns?: readonly string[] }): { name: string; ips: string[]; dns: string[] } {
  if (!NAME_RE.test(o.name)) throw invalid("name", o.name, "must be 1-63 characters of letters, digits, '_', '.', '-', starting with a letter or digit");
  const ips = [...new Set(["127.0.0.1", ...(o.ips ?? [])])];
  for (const ip of ips) if (isIP(ip) === 0) throw invalid("ip", ip, "not an IP address");
  const dns = [...new Set(["localhost", ...(o.dns ?? [])])];
  for (const d of dns) if (!DNS_RE.test(d)) throw invalid("dns", d, "not a DNS name");
  return { name: o.name, ips, dns };
}

/** Issue NAME.key/NAME.crt signed by the CA in dir (server and client use, 825 days). */
export async function issueCert(dir: string, o: IssueOptions): Promise<{ key: string; cert: string; ca: string }> {
  const { name, ips, dns } = checkIssue(o);
  const p = caPaths(dir);
  if (!(await exists(p.key)) || !(await exists(p.cert))) throw new FerryError("FERRY_ERR_NOT_FOUND", `${dir}: no CA here: run 'ferry ca init --dir ${dir}' first`, { details: { dir } });
  await ownerOnlyDir(dir);
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  if ((await exists(key)) || (await exists(cert))) throw new FerryError("FERRY_ERR_CONFLICT", `${dir}: ${name}.key or ${name}.crt already exists: pick another --name, or remove them first`, { details: { dir, name } });
  const tag = randomBytes(6).toString("hex");
  const csr = join(dir, `.${name}.${tag}.csr`);
  const ext = join(dir, `.${name}.${tag}.ext`);
  const run = o.run ?? defaultRun;
  try {
    const san = [...ips.map((ip) => `IP:${ip}`), ...dns.map((d) => `DNS:${d}`)].join(",");
    await writeFile(ext, `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${san}\n`, { mode: 0o600, flag: "wx" });
    await openssl(run, ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${name}`], o.signal);
    await chmod(key, 0o600);
    await openssl(run, ["x509", "-req", "-in", csr, "-CA", p.cert, "-CAkey", p.key, "-set_serial", `0x${randomBytes(16).toString("hex")}`, "-days", String(o.days ?? 825), "-sha256", "-extfile", ext, "-out", cert], o.signal);
    await chmod(cert, 0o644);
  } catch (e) {
    await rm(key, { force: true });
    await rm(cert, { force: true });
    throw e;
  } finally {
    await rm(csr, { force: true });
    await rm(ext, { force: true });
  }
  return { key, cert, ca: p.cert };
}
