// Finds the programs the repository runs, for test/repo/spawned.test.ts: argv[0] of every
// spawn/execFile/run call with a literal program, iproute2-style command objects
// (`{ file: "ip", args }`), the targets of `ip netns exec NS …` and `nsenter … PROG`, default
// binaries (`qemuBinary ?? "qemu-system-x86_64"`), absolute /usr/bin paths, literal argv
// arrays (`["ping", "-D", …]`), and the commands of shell scripts and package.json scripts.
// It reads source text; it does not run anything. A heuristic: it errs towards finding too
// much (a false find is one row in scripts/programs.txt or one entry in NOT_PROGRAMS).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join, relative } from "node:path";

export interface Found {
  program: string;
  /** repo-relative file and 1-based line */
  where: string;
}

/** The table scripts/programs.txt: program → its packages and sets. */
export function readTable(text: string): Map<string, { pkg: string; set: string }[]> {
  const table = new Map<string, { pkg: string; set: string }[]>();
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (t === "" || t.startsWith("#")) continue;
    const [program, pkg, set, ...rest] = t.split(/\s+/);
    if (!program || !pkg || !set || rest.length > 0) throw new Error(`scripts/programs.txt: "${line}": want three columns: program package set`);
    table.set(program, [...(table.get(program) ?? []), { pkg, set }]);
  }
  return table;
}

const NAME = /^[A-Za-z0-9_][\w.+-]*$/;

// ---- TypeScript ----

const EXPR = String.raw`(?:[^,()\[\]"]|"[^"]*"|\([^()]*\))+`;
const TS_PATTERNS: RegExp[] = [
  // run("ip", …), spawn("unshare", …), ctx.run("ip", …), runner("openssl", …), sh("ip", …)
  /\b(?:run|spawn|spawnSync|execFile|execFileSync|runner|sh)\(\s*"([^"]+)"/g,
  // iproute2/fabric command objects: { file: "bridge", args: [...] }
  /\bfile:\s*"([^"]+)",\s*args\b/g,
  // a union of program names in a command type: file: "ip" | "bridge"
  /\bfile:\s*(?:"[^"]+"\s*\|\s*)+"([^"]+)"/g,
  // ["netns", "exec", NS, "ping", …]
  new RegExp(String.raw`"netns",\s*"exec",\s*${EXPR},\s*"([^"]+)"`, "g"),
  // spawn("nsenter", [...ns, "hostname", …]) and run("nsenter", [...ns, "mount", …])
  /"nsenter",\s*\[\s*\.\.\.\w+,\s*"([^"]+)"/g,
  // spawn("unshare", ["--mount", …, "--", "sleep", "86400"])
  /"unshare",\s*\[[^\]]*"--",\s*"([^"]+)"/g,
  // const bin = this.#qemuBinary ?? "qemu-system-x86_64"
  /\b(?:const|let)\s+\w*(?:[Bb]inary|bin)\w*\s*=[^;\n]*\?\?\s*"([^"]+)"/g,
  // "/usr/sbin/libvirtd", "/bin/busybox"
  /"(?:\/usr)?\/s?bin\/([\w.+-]+)"/g,
  // a literal argv, not an argument list after the program: ? ["ping", "-D", "-n", …]
  /(?:return|[?:=])\s*\[\s*"([a-z][\w.+-]*)",\s*"-/g,
];

/** Strings the patterns match that are not programs the code runs, each with the reason. */
export const NOT_PROGRAMS: Record<string, string> = {
  "/bin/tool": "a path inside a cpio archive built by src/lab/cpio.test.ts",
};

export function scanTs(file: string, text: string): Found[] {
  const found: Found[] = [];
  for (const re of TS_PATTERNS) {
    for (const m of text.matchAll(re)) {
      const whole = m[0];
      if (Object.keys(NOT_PROGRAMS).some((k) => whole.includes(`"${k}"`))) continue;
      const program = basename(m[1]!);
      const line = text.slice(0, m.index).split("\n").length;
      found.push({ program, where: `${file}:${line}` });
    }
  }
  // run(BUSYBOX, …) with const BUSYBOX = "busybox"
  for (const m of text.matchAll(/\bconst\s+(\w+)\s*=\s*"([^"]+)"/g)) {
    const [, name, value] = m as unknown as [string, string, string];
    const used = new RegExp(String.raw`\b(?:run|spawn|spawnSync|execFile|execFileSync|runner|sh)\(\s*${name}\b`).exec(text);
    if (used) found.push({ program: basename(value), where: `${file}:${text.slice(0, used.index).split("\n").length}` });
  }
  return found;
}

// ---- shell ----

const KEYWORDS = new Set(["if", "then", "elif", "else", "fi", "do", "done", "while", "until", "esac", "in", "function", "select", "!", "[[", "]]", "{", "}"]);
/** Segments that start with these name no command (loop lists, case subjects). */
const SKIP_SEGMENT = new Set(["for", "case", "local", "declare", "export", "readonly", "unset"]);
const BUILTINS = new Set([
  ".", ":", "[", "alias", "break", "cd", "continue", "echo", "eval", "exit", "false", "getopts", "hash", "kill", "mapfile", "printf", "pwd", "read",
  "readarray", "return", "set", "shift", "shopt", "source", "test", "trap", "true", "type", "ulimit", "umask", "wait",
]);
/** Builtins and keywords that run the command that follows them. */
const SHELL_WRAPPERS = new Set(["exec", "time", "command"]);
/** Programs that run the command that follows them; the number is how many non-option arguments they take first. */
const WRAPPERS: Record<string, number> = { env: 0, nice: 0, setsid: 0, unshare: 0, flock: 1, chroot: 1, timeout: 1 };

/** Shell text with quoted strings blanked (command substitutions inside double quotes kept) and comments removed. */
export function shellCode(text: string): string {
  let out = "";
  let i = 0;
  const n = text.length;
  const substitution = (): string => {
    // at "$(": copy up to the matching ")", recursing into nested quotes
    let depth = 0;
    let s = "";
    while (i < n) {
      const c = text[i]!;
      if (c === "(") depth++;
      if (c === ")") {
        depth--;
        if (depth === 0) {
          i++;
          return `${s} ; `;
        }
      }
      if (text.startsWith("$((", i)) {
        i++;
        s += arithmetic();
        continue;
      }
      if (c === "'" || c === '"') {
        s += quoted();
        continue;
      }
      s += depth === 1 && s === "" && c === "(" ? " ; " : c;
      i++;
    }
    return s;
  };
  const arithmetic = (): string => {
    // at "$((" or "((": skip to the matching "))"; arithmetic runs no command
    let depth = 0;
    while (i < n) {
      const c = text[i++]!;
      if (c === "(") depth++;
      if (c === ")" && --depth === 0) break;
    }
    return " 0 ";
  };
  const quoted = (): string => {
    const q = text[i]!;
    i++;
    let s = "";
    const start = i;
    while (i < n && text[i] !== q) {
      if (q === '"' && text[i] === "\\") i += 2;
      else if (q === '"' && text.startsWith("$((", i)) {
        i++;
        arithmetic();
      } else if (q === '"' && text.startsWith("$(", i)) {
        i++;
        s += substitution();
      } else i++;
    }
    const content = text.slice(start, i);
    i++;
    // a quoted word such as "$root/.runtime/bin/node" stays a word; a message is blanked
    if (q === '"' && /^[\w$@{}/.+-]+$/.test(content)) return content;
    return s === "" ? `${q}${q}` : ` ; ${s} ; `;
  };
  while (i < n) {
    const c = text[i]!;
    if (c === "\\" && text[i + 1] === "\n") {
      i += 2;
      out += " ";
    } else if (text.startsWith("$((", i)) {
      i++;
      out += arithmetic();
    } else if (text.startsWith("((", i)) out += ` ; ${arithmetic()} ; `;
    else if (c === "'" || c === '"') out += quoted();
    else if (c === "#" && (i === 0 || /\s|;/.test(text[i - 1]!))) {
      while (i < n && text[i] !== "\n") i++;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** The commands a shell script runs: the first word of every simple command, and what wrappers run. */
export function scanShell(file: string, text: string, repoWrappers: readonly string[] = ["scripts/rt"]): Found[] {
  const code = shellCode(text)
    .replace(/\d*>&(?:\d+|-)|&>>?|\d*>>?|<<<|\d*</g, " > ") // redirections: 2>&1, &>, >>, <<<
    .replace(/\b\w+\+?=\([^)]*\)/g, " "); // array assignments: sets=(base)
  const functions = new Set([...code.matchAll(/^\s*(?:function\s+)?([\w-]+)\s*\(\)/gm)].map((m) => m[1]!));
  const found: Found[] = [];
  code.split("\n").forEach((lineText, idx) => {
    for (const segment of lineText.split(/&&|\|\||[;|&()`]|\$\(|<\(/)) {
      const words = segment.trim().split(/\s+/).filter((w) => w !== "");
      let k = 0;
      const next = (): string | undefined => words[k++];
      let w = next();
      if (w === undefined || SKIP_SEGMENT.has(w) || w.startsWith("((")) continue;
      for (;;) {
        while (w !== undefined && (KEYWORDS.has(w) || /^\w+\+?=/.test(w))) w = next();
        if (w === undefined || w === "''" || w === '""') break;
        if (w === "command" && words[k] === "-v") break;
        if (SHELL_WRAPPERS.has(w)) {
          w = next();
          continue;
        }
        if (w.startsWith("$") && !w.includes("/")) break;
        const word = w;
        if (repoWrappers.some((r) => word === r || word.endsWith(`/${r}`))) {
          w = next();
          continue;
        }
        if (w.includes("/")) {
          // a repo file run by path ("$root/src/…") is not a Debian program; the project's Node is
          if (/^\$\{?\w+\}?\//.test(w) && !/\/\.runtime\/bin\//.test(w)) break;
          w = basename(w);
        }
        if (!NAME.test(w) || /^\d+$/.test(w) || BUILTINS.has(w) || functions.has(w)) break;
        found.push({ program: w, where: `${file}:${idx + 1}` });
        const skip = WRAPPERS[w];
        if (skip === undefined) break;
        w = next();
        while (w !== undefined && w.startsWith("-")) w = next();
        for (let s = 0; s < skip && w !== undefined; s++) w = next();
      }
    }
  });
  return found;
}

// ---- the repository ----

function walk(dir: string, keep: (path: string) => boolean, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === "node_modules" || e.name.startsWith(".") && e.name !== ".ci") continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, keep, out);
    else if (e.isFile() && keep(p)) out.push(p);
  }
  return out;
}

/** Not scanned: what runs in the test guest (busybox applets, not the host's programs), and this
 * scanner and its test (their text names programs as examples). */
const NOT_SCANNED = new Set(["src/lab/guest/init.sh", "test/repo/programs.ts", "test/repo/spawned.test.ts"]);

const isShell = (path: string): boolean => {
  if (path.endsWith(".sh")) return true;
  if (statSync(path).size > 1 << 20) return false;
  return /^#!\s*\/(?:usr\/)?bin\/(?:env\s+)?(?:ba)?sh\b/.test(readFileSync(path, "utf8").slice(0, 64));
};

/** Every program src/, bench/, test/, scripts/, bin/, .ci/ and package.json's scripts run. */
export function scanRepo(root: string): Found[] {
  const rel = (p: string): string => relative(root, p);
  const found: Found[] = [];
  for (const top of ["src", "bench", "test", "scripts", "bin", ".ci"]) {
    for (const p of walk(join(root, top), () => true)) {
      if (NOT_SCANNED.has(rel(p))) continue;
      if (p.endsWith(".ts")) found.push(...scanTs(rel(p), readFileSync(p, "utf8")));
      else if (isShell(p)) found.push(...scanShell(rel(p), readFileSync(p, "utf8")));
    }
  }
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts?: Record<string, string> };
  const npmBins = dependencyBins(root);
  for (const [name, command] of Object.entries(pkg.scripts ?? {})) {
    for (const f of scanShell(`package.json scripts.${name}`, command)) if (!npmBins.has(f.program)) found.push(f);
  }
  return found;
}

/** Commands that npm dependencies provide (node_modules/.bin), from package-lock.json. */
export function dependencyBins(root: string): Set<string> {
  const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8")) as { packages?: Record<string, { bin?: Record<string, string> | string }> };
  const bins = new Set<string>();
  for (const [path, p] of Object.entries(lock.packages ?? {})) {
    if (typeof p.bin === "string") bins.add(basename(path));
    else for (const b of Object.keys(p.bin ?? {})) bins.add(b);
  }
  return bins;
}
