// The guest's kernel modules: which .ko files a kernel tree has, what each
// depends on (the `depends=` entry of its .modinfo section) and the order
// /init loads them in (dependencies first).
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { FerryError } from "../core/errors.ts";

/**
 * Load order for `wanted` (and everything they depend on): dependencies first,
 * otherwise the order asked for. `deps(name)` gives a module's direct
 * dependencies; built-in modules are dropped.
 */
export function moduleLoadOrder(wanted: readonly string[], deps: (name: string) => readonly string[], builtin: ReadonlySet<string> = new Set()): string[] {
  const order: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (name: string, path: readonly string[]): void => {
    if (builtin.has(name) || state.get(name) === "done") return;
    if (state.get(name) === "visiting") throw new FerryError("FERRY_ERR_GUEST_IMAGE", `module dependency cycle: ${[...path, name].join(" -> ")}`);
    state.set(name, "visiting");
    for (const d of deps(name)) visit(d, [...path, name]);
    state.set(name, "done");
    order.push(name);
  };
  for (const w of wanted) visit(w, []);
  return order;
}

/** The `depends=` entry of an ELF64 kernel module's .modinfo section. */
export function moduleDepends(ko: Buffer): string[] {
  const bad = (why: string): FerryError => new FerryError("FERRY_ERR_GUEST_IMAGE", `not a usable kernel module: ${why}`);
  if (ko.length < 64 || ko.readUInt32BE(0) !== 0x7f454c46) throw bad("no ELF magic");
  if (ko[4] !== 2 || ko[5] !== 1) throw bad("not a little-endian ELF64 file");
  const shoff = Number(ko.readBigUInt64LE(0x28));
  const shentsize = ko.readUInt16LE(0x3a);
  const shnum = ko.readUInt16LE(0x3c);
  const shstrndx = ko.readUInt16LE(0x3e);
  if (shentsize < 64 || shoff + shnum * shentsize > ko.length || shstrndx >= shnum) throw bad("section headers out of range");
  const section = (i: number): { name: number; offset: number; size: number } => {
    const at = shoff + i * shentsize;
    return { name: ko.readUInt32LE(at), offset: Number(ko.readBigUInt64LE(at + 0x18)), size: Number(ko.readBigUInt64LE(at + 0x20)) };
  };
  const strtab = section(shstrndx);
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameStart = strtab.offset + s.name;
    const nameEnd = ko.indexOf(0, nameStart);
    if (nameEnd < 0 || ko.toString("latin1", nameStart, nameEnd) !== ".modinfo") continue;
    if (s.offset + s.size > ko.length) throw bad(".modinfo out of range");
    for (const entry of ko.toString("latin1", s.offset, s.offset + s.size).split("\0")) {
      if (entry.startsWith("depends=")) {
        return entry
          .slice("depends=".length)
          .split(",")
          .filter((d) => d !== "")
          .map((d) => d.replace(/-/g, "_"));
      }
    }
    return [];
  }
  throw bad("no .modinfo section");
}

export const moduleName = (file: string): string => file.replace(/\.ko(\.xz)?$/, "").replace(/-/g, "_");

/** Module name -> file under lib/modules/<kver>/kernel, and the built-in set. */
export async function moduleIndex(modRoot: string): Promise<{ files: Map<string, string>; builtin: Set<string> }> {
  const files = new Map<string, string>();
  for (const rel of await readdir(join(modRoot, "kernel"), { recursive: true })) {
    if (/\.ko(\.xz)?$/.test(rel)) files.set(moduleName(rel.split("/").pop() ?? rel), join(modRoot, "kernel", rel));
  }
  const builtinText = await readFile(join(modRoot, "modules.builtin"), "utf8").catch(() => "");
  const builtin = new Set(
    builtinText
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => moduleName(l.split("/").pop() ?? l)),
  );
  return { files, builtin };
}
