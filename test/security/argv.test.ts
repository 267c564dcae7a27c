// Subprocesses only with argv arrays: no source file (src/, bench/, scripts/)
// imports a shell-running function of node:child_process (exec, execSync),
// passes `shell:` to spawn/execFile, or runs a shell with `-c`. The call sites
// that remain all pass a program and an argument array.
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory() && e.name !== "node_modules" && !e.name.startsWith(".")) out.push(...(await sources(p)));
    else if (e.isFile() && e.name.endsWith(".ts") && !e.name.endsWith(".test.ts")) out.push(p);
  }
  return out;
}

test("no shell: child_process only through spawn/execFile with an argv array, never exec or shell: true", async () => {
  const files = (await Promise.all(["src", "bench", "scripts"].map((d) => sources(join(ROOT, d))))).flat();
  assert.ok(files.length > 50, `${files.length} files`);
  const bad: string[] = [];
  let callSites = 0;
  for (const f of files) {
    const text = await readFile(f, "utf8");
    const where = relative(ROOT, f);
    for (const m of text.matchAll(/import\s+(type\s+)?\{([^}]*)\}\s+from\s+"node:child_process"/g)) {
      const names = m[2]!.split(",").map((s) => s.trim().split(/\s+as\s+/)[0]!.replace(/^type\s+/, "")).filter((s) => s !== "");
      for (const n of names) if (!["spawn", "execFile", "spawnSync", "execFileSync", "ChildProcess", "SpawnOptions"].includes(n)) bad.push(`${where}: imports ${n} from node:child_process`);
    }
    if (/from\s+"node:child_process"/.test(text) && /import\s+\*\s+as\s+\w+\s+from\s+"node:child_process"|import\s+\w+\s+from\s+"node:child_process"/.test(text)) bad.push(`${where}: imports all of node:child_process`);
    if (/\bshell\s*:\s*(true|["'`/])/.test(text)) bad.push(`${where}: passes shell: to a subprocess`);
    if (/["'](?:\/bin\/)?(?:ba|da)?sh["']\s*,\s*\[\s*["']-c["']/.test(text)) bad.push(`${where}: runs a shell with -c`);
    for (const m of text.matchAll(/\b(spawn|execFile|spawnSync|execFileSync)\(\s*([^,()]+(?:\([^)]*\))?)\s*,\s*([^\s,)]+)/g)) {
      callSites++;
      const args = m[3]!;
      if (!/^(\[|\.\.\.|[A-Za-z_$][\w$.]*(\[[^\]]*\])?$)/.test(args) || /^["'`]/.test(args)) bad.push(`${where}: ${m[0]} — the arguments are not an array`);
    }
  }
  assert.deepEqual(bad, []);
  assert.ok(callSites >= 4, `${callSites} call sites checked`);
});
