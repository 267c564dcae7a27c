// Bad input, generated (continued from inputs.test.ts): random sysfs trees,
// every controller API route with random and perturbed bodies, path
// parameters and queries, and random `ferry` command lines. Each answers with
// a result or a FerryError carrying a stable code: no crash, no hang, no other
// exception, no state change. Counts: FERRY_FUZZ_CASES per surface (long
// run), else the defaults below (npm test).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { ERROR_CODES, FerryError } from "../../src/core/errors.ts";
import { readInventory } from "../../src/host/sysfs.ts";
import { isPciAddress } from "../../src/model/validate.ts";
import { ATOMS, bytes, cases, perturb, pick, prng, randomValue, text } from "./gen.ts";
import type { Rand } from "./gen.ts";
import { memoryController } from "./memory-controller.ts";

const SYSFS_CASES = cases(100);
const API_CASES = cases(400);
const CLI_CASES = cases(150);

let base = "";
before(async () => {
  base = await mkdtemp(join(tmpdir(), "ferry-fuzz-"));
});
after(() => rm(base, { recursive: true, force: true }));

// ---- sysfs trees

const hex = (r: Rand, n: number): string => Array.from({ length: n }, () => Math.floor(r() * 16).toString(16)).join("");
const bdf = (r: Rand): string => `0000:${hex(r, 2)}:${pick(r, ["00", "01", "10", "1f"])}.${Math.floor(r() * 8)}`;

/** A file or directory name from random text: no '/', no NUL, not '.' or '..', at most 100 bytes; sometimes not UTF-8. */
function fileName(r: Rand): string | Buffer {
  if (r() < 0.1) return Buffer.concat([Buffer.from("x"), bytes(r, 20)].map((b) => Buffer.from(b.filter((c) => c !== 0x2f && c !== 0)))) ;
  const s = text(r, 12).replaceAll("/", "_").replaceAll("\0", "_");
  const b = Buffer.from(s).subarray(0, 100).toString();
  return b === "" || b === "." || b === ".." ? "x" : b;
}

/** How hostile the current tree is: the share of attributes, links and names that are broken. */
let hostility = 0.2;

/** A good value, or with the tree's hostility a bad one. */
const choose = (r: Rand, good: readonly string[], bad: readonly string[]): string => (r() < hostility ? pick(r, bad) : pick(r, good));

/** Some content for an attribute file: valid, near-valid, empty, binary, large. */
function attr(r: Rand, valid: string): string | Buffer {
  if (r() > hostility) return `${valid}\n`;
  const k = 0.8 + r() * 0.2;
  if (k < 0.83) return "";
  if (k < 0.87) return bytes(r, 64);
  if (k < 0.91) return text(r, 20);
  if (k < 0.93) return Buffer.alloc(64 * 1024 + Math.floor(r() * 1024), 0x30);
  if (k < 0.97) return `${valid.slice(0, Math.floor(r() * valid.length))}\n`;
  return `${valid}${pick(r, ATOMS)}\n`;
}

async function put(r: Rand, path: string, valid: string): Promise<void> {
  const k = r() < hostility ? r() * 0.2 : 1;
  if (k < 0.04) return; // absent
  if (k < 0.07) {
    await mkdir(path, { recursive: true }); // a dir where a file belongs
    return;
  }
  if (k < 0.1) {
    await symlink(pick(r, ["/nonexistent", ".", path, "../../../../../../etc/hostname"]), path); // dangling, a loop, outside
    return;
  }
  await writeFile(path, attr(r, valid));
}

async function randomTree(r: Rand, root: string): Promise<void> {
  const devices = join(root, "bus", "pci", "devices");
  hostility = pick(r, [0, 0.02, 0.05, 0.1, 0.3, 0.6]);
  const k = r();
  if (k < 0.03) return; // no tree at all
  if (k < 0.06) {
    await mkdir(join(root, "bus", "pci"), { recursive: true });
    await writeFile(devices, "not a dir");
    return;
  }
  await mkdir(devices, { recursive: true });
  const names = Array.from({ length: Math.floor(r() * 8) }, () => (r() < 0.9 ? bdf(r) : fileName(r)));
  for (const name of names) {
    const dir = typeof name === "string" ? join(devices, name) : Buffer.concat([Buffer.from(`${devices}/`), name]);
    try {
      const kind = r();
      if (kind < 0.04) {
        await writeFile(dir, attr(r, "x"));
        continue;
      }
      if (kind < 0.07) {
        await symlink(pick(r, ["/nonexistent", ".", "..", typeof name === "string" ? name : "x"]), dir);
        continue;
      }
      await mkdir(dir, { recursive: true });
      if (typeof dir !== "string") continue;
      await put(r, join(dir, "class"), choose(r, ["0x020000", "0x020000", "0x010802"], ["0x0200", "0x02000000"]));
      await put(r, join(dir, "vendor"), choose(r, ["0x8086", "0x15b3"], ["0x808"]));
      await put(r, join(dir, "device"), choose(r, ["0x10fb", "0x1018", "0x10ed"], ["0x10f"]));
      await put(r, join(dir, "numa_node"), choose(r, ["0", "-1", "1"], ["1024", "99999999999"]));
      if (r() < 0.5) {
        await put(r, join(dir, "sriov_totalvfs"), choose(r, ["8", "0"], ["65536", "-3"]));
        await put(r, join(dir, "sriov_numvfs"), choose(r, ["4", "0"], ["9"]));
        for (let i = Math.floor(r() * 4); i > 0; i--) {
          await symlink(r() < 0.7 ? `../${bdf(r)}` : text(r, 10).replaceAll("\0", "") || "x", join(dir, `virtfn${pick(r, [String(i), "99999", "x"])}`)).catch(() => undefined);
        }
      }
      if (r() < 0.4) await symlink(r() < 0.7 ? `../${bdf(r)}` : text(r, 10).replaceAll("\0", "") || "x", join(dir, "physfn")).catch(() => undefined);
      if (r() < 0.5) await symlink(`../../../bus/pci/drivers/${r() < 0.7 ? pick(r, ["ixgbe", "ixgbevf", "mlx5_core"]) : String(fileName(r))}`, join(dir, "driver")).catch(() => undefined);
      if (r() < 0.6) {
        const net = join(dir, "net");
        if (r() < 0.1) await writeFile(net, "x");
        else {
          for (let i = Math.floor(r() * 3); i > 0; i--) {
            const nd = join(net, r() < 0.7 ? `eth${i}` : String(fileName(r)));
            await mkdir(nd, { recursive: true });
            await put(r, join(nd, "address"), choose(r, ["52:54:00:12:34:56"], ["52:54:00:12:34", "ZZ:54:00:12:34:56"]));
            await put(r, join(nd, "speed"), choose(r, ["10000", "-1", "0"], ["abc"]));
          }
        }
      }
    } catch (e) {
      // a name the file system refuses (too long once joined, …) is simply not part of this tree
      if (!(e instanceof Error && "code" in e)) throw e;
    }
  }
}

describe("bad input, generated (more surfaces)", () => {
  test(`sysfs reader: ${SYSFS_CASES} random trees (garbage, binary and oversized attributes, dangling and looping links, files for dirs, non-UTF-8 names)`, async (t) => {
    const r = prng(11);
    let problems = 0;
    let devices = 0;
    let refused = 0;
    for (let i = 0; i < SYSFS_CASES; i++) {
      const root = join(base, "sys", String(i));
      await randomTree(r, root);
      try {
        const inv = await readInventory({ root, signal: AbortSignal.timeout(30_000) });
        for (const d of inv.devices) {
          assert.ok(isPciAddress(d.bdf), d.bdf);
          assert.match(d.vendor, /^[0-9a-f]{4}$/);
          assert.match(d.class, /^02[0-9a-f]{4}$/);
          for (const n of d.netdevs) assert.ok(n.mac === null || /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(n.mac));
        }
        for (const p of inv.problems) assert.equal(typeof p.message, "string");
        devices += inv.devices.length;
        problems += inv.problems.length;
        // reading has no side effect: the same tree reads the same
        assert.deepEqual(await readInventory({ root }), inv);
      } catch (e) {
        assert.ok(e instanceof FerryError && e.code === "FERRY_ERR_SYSFS", `tree ${i}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        refused++;
      }
      await rm(root, { recursive: true, force: true });
    }
    t.diagnostic(`sysfs: ${SYSFS_CASES} trees; ${devices} devices read, ${problems} problems reported, ${refused} trees refused (FERRY_ERR_SYSFS)`);
  });

  test(`controller API: ${API_CASES} random and perturbed bodies, path parameters and queries on every route: never a 5xx, problems carry a code, nothing changes`, async (t) => {
    const token = "f".repeat(40);
    const { controller, cluster, app, close } = memoryController(token);
    const headers = { authorization: `Bearer ${token}` };
    // valid bodies to perturb, by route
    const VALID: Record<string, unknown> = {
      "POST /v1/vms": { name: "vm1", host: "host-a", memoryMiB: 128, nics: [{ network: "physnet1", mode: "failover", policy: "mandatory" }] },
      "POST /v1/migrations": { vm: "vm1", to: "host-b", plan: true, deadlines: { unplugMs: 1000 } },
      "POST /v1/agents/heartbeat": { name: "host-z", url: "http://127.0.0.1:1", version: "1", accel: "tcg" },
      "POST /v1/hosts/{name}/evacuate": { plan: true, parallel: 2 },
      "POST /v1/vms/{name}/save": { file: "f1" },
      "POST /v1/vms/{name}/restore": { host: "host-a" },
      "POST /v1/vms/{name}/local-migrate": { qemuBinary: "/usr/bin/qemu-system-x86_64" },
    };
    try {
      const doc = JSON.parse((await app.inject({ method: "GET", url: "/openapi.json", headers })).body) as { paths: Record<string, Record<string, unknown>> };
      const routes = Object.entries(doc.paths).flatMap(([path, ms]) => Object.keys(ms).map((m) => ({ method: m.toUpperCase(), path }))).filter((x) => x.path !== "/v1/events" && x.path !== "/openapi.json");
      assert.ok(routes.length >= 15, `${routes.length} routes`);
      const r = prng(12);
      const statuses = new Map<number, number>();
      for (let i = 0; i < API_CASES; i++) {
        const route = routes[i % routes.length]!;
        const param = (): string => encodeURIComponent((r() < 0.3 ? "vm1" : r() < 0.5 ? text(r, 8) : String(pick(r, ATOMS))).toWellFormed());
        let url = route.path.replace(/\{[^}]+\}/g, param);
        if (route.method === "GET" && r() < 0.5) url += `?${encodeURIComponent(text(r, 6).toWellFormed())}=${encodeURIComponent(text(r, 6).toWellFormed())}`;
        const valid = VALID[`${route.method} ${route.path}`];
        const payload = route.method === "GET" || route.method === "DELETE" ? undefined : r() < 0.1 ? text(r, 50) : JSON.stringify(valid !== undefined && r() < 0.6 ? perturb(r, valid) : randomValue(r));
        const res = await app.inject({ method: route.method as "POST", url, ...(payload === undefined ? { headers } : { payload, headers: { ...headers, "content-type": "application/json" } }) });
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        assert.ok(res.statusCode < 500, `${route.method} ${url} ${payload?.slice(0, 80) ?? ""} → ${res.statusCode} ${res.body.slice(0, 200)}`);
        if (res.statusCode >= 400) {
          const code = (JSON.parse(res.body) as { code?: string }).code;
          assert.ok(code !== undefined && code in ERROR_CODES, `${route.method} ${url} → ${res.body.slice(0, 200)}`);
        }
      }
      assert.deepEqual(await controller.listVms(), [], "no VM created by bad input");
      const hosts = await cluster.listHosts();
      // a perturbed heartbeat may stay valid (a new version string, say): that is a registration, not bad input
      for (const h of hosts) assert.match(h.url, /^https?:\/\/[A-Za-z0-9.[\]:-]+(\/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*\/?$/, `a host registered with URL ${h.url}`);
      t.diagnostic(`controller API: ${API_CASES} requests over ${routes.length} routes; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
    } finally {
      await close();
    }
  });

  test(`CLI arguments: ${CLI_CASES} random command lines: an exit code from the table and a message with a code or a usage hint, never a crash`, async (t) => {
    const out = join(base, "cli-results.json");
    const worker = fileURLToPath(new URL("./cli-worker.ts", import.meta.url));
    await new Promise<void>((resolve, reject) => {
      execFile(process.execPath, [worker, String(CLI_CASES), out, base], { timeout: 600_000, env: { ...process.env, HOME: base, FERRY_CONTEXT: "", FERRY_LAB_DIR: join(base, "labs") } }, (err, _stdout, stderr) => {
        if (err) reject(new Error(`the CLI fuzz worker failed: ${err.message}\n${stderr.slice(0, 4000)}`));
        else resolve();
      });
    });
    const res = JSON.parse(await readFile(out, "utf8")) as { cases: number; exits: Record<string, number>; failures: string[] };
    assert.equal(res.cases, CLI_CASES);
    assert.deepEqual(res.failures, []);
    t.diagnostic(`CLI: ${res.cases} command lines; exit codes ${JSON.stringify(res.exits)}`);
  });
});
