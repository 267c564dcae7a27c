// The directory a QEMU `tls-creds-x509` object reads, under QEMU's fixed file
// names: ca-cert.pem, and server-cert.pem/server-key.pem (endpoint server,
// the destination) or client-cert.pem/client-key.pem (endpoint client, the
// source). Laid out from PEM files Ferry's CA issued (`ferry ca issue`: one
// certificate serves both uses), and for a server dh-params.pem: the RFC 7919
// ffdhe2048 group (see FFDHE2048_PEM). Owner-only: the directory 0700, every file
// 0600, each written to a temporary name and renamed into place, so QEMU
// never reads half a file.
import { randomBytes } from "node:crypto";
import { chmod, lstat, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { caPaths } from "../core/ca.ts";
import { FerryError, invalid } from "../core/errors.ts";

export type TlsEndpoint = "server" | "client";

/** PEM files of one host: the CA certificate(s) to trust, its certificate and its key. */
export interface PemFiles {
  ca: string;
  cert: string;
  key: string;
}

/** QEMU's file names (crypto/tlscredsx509.h, crypto/tlscreds.h). */
export const QEMU_TLS_FILES = {
  ca: "ca-cert.pem",
  dhParams: "dh-params.pem",
  server: { cert: "server-cert.pem", key: "server-key.pem" },
  client: { cert: "client-cert.pem", key: "client-key.pem" },
} as const;

/**
 * The Diffie-Hellman group a server endpoint offers for TLS 1.2 DHE: RFC
 * 7919's ffdhe2048, a published group (what
 * `openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048` prints).
 * Without dh-params.pem in its directory, QEMU (7.2 with GnuTLS 3.7)
 * generates fresh 2048-bit parameters on every server `tls-creds-x509`
 * object-add: 180–440 ms measured here, on the destination's prepare, every
 * migration; with the file, 2 ms. A named group is what TLS 1.3 uses anyway.
 */
export const FFDHE2048_PEM = `-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
`;

const MAX_PEM_BYTES = 1024 * 1024;

/** The files `ferry ca init --dir CA` and `ferry ca issue --dir CA --name NAME` made. */
export function issuedFiles(caDir: string, name: string): PemFiles {
  const p = caPaths(caDir);
  return { ca: p.cert, cert: join(caDir, `${name}.crt`), key: join(caDir, `${name}.key`) };
}

function absolute(field: string, path: string): string {
  if (!path.startsWith("/") || path.split("/").includes("..")) throw invalid(field, path, "must be an absolute path without '..'");
  return path;
}

async function readPem(field: string, file: string, marker: RegExp): Promise<Buffer> {
  let b: Buffer;
  try {
    b = await readFile(file);
  } catch (e) {
    throw new FerryError("FERRY_ERR_CONFIG", `${field} ${file}: cannot read: ${e instanceof Error ? e.message : String(e)}`, { cause: e, details: { field, file } });
  }
  if (b.length > MAX_PEM_BYTES || !marker.test(b.toString("latin1"))) {
    throw new FerryError("FERRY_ERR_CONFIG", `${field} ${file}: not a PEM ${field === "key" ? "private key" : "certificate"} (issue one with 'ferry ca issue')`, { details: { field, file } });
  }
  return b;
}

const uid = (): number => process.getuid?.() ?? 0;

async function ownerOnlyDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== uid()) {
    throw new FerryError("FERRY_ERR_CONFIG", `${dir} is ${st.isSymbolicLink() ? "a symbolic link" : !st.isDirectory() ? "not a directory" : `owned by uid ${st.uid}`}: the migration TLS directory must be a directory of this user`, { details: { dir } });
  }
  await chmod(dir, 0o700);
}

async function writeOwnerOnly(file: string, data: Buffer): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString("hex")}.tmp`;
  const h = await open(tmp, "wx", 0o600);
  try {
    await h.chmod(0o600); // whatever the umask
    await h.writeFile(data);
  } finally {
    await h.close();
  }
  try {
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * Write `dir` (created if missing) with QEMU's names for `files`, for the
 * given endpoints (default both: a Ferry certificate is server and client).
 * Returns the paths written.
 */
export async function layoutMigrationTlsDir(dir: string, files: PemFiles, endpoints: readonly TlsEndpoint[] = ["server", "client"]): Promise<string[]> {
  absolute("dir", dir);
  for (const k of ["ca", "cert", "key"] as const) absolute(k, files[k]);
  if (endpoints.length === 0 || endpoints.some((e) => e !== "server" && e !== "client")) throw invalid("endpoints", endpoints, "must be 'server', 'client' or both");
  const ca = await readPem("ca", files.ca, /-----BEGIN CERTIFICATE-----/);
  const cert = await readPem("cert", files.cert, /-----BEGIN CERTIFICATE-----/);
  const key = await readPem("key", files.key, /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/);
  await ownerOnlyDir(dir);
  const written = [join(dir, QEMU_TLS_FILES.ca)];
  await writeOwnerOnly(written[0]!, ca);
  for (const e of new Set(endpoints)) {
    const names = QEMU_TLS_FILES[e];
    await writeOwnerOnly(join(dir, names.key), key);
    await writeOwnerOnly(join(dir, names.cert), cert);
    written.push(join(dir, names.cert), join(dir, names.key));
  }
  if (endpoints.includes("server")) {
    const dh = join(dir, QEMU_TLS_FILES.dhParams);
    await writeOwnerOnly(dh, Buffer.from(FFDHE2048_PEM));
    written.push(dh);
  }
  return written;
}
