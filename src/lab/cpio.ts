// A small writer for "newc" cpio archives (the format the Linux kernel
// unpacks as an initramfs). Pure: entries in, bytes out. Missing parent
// directories are added (mode 0755) before the first entry that needs them.
import { invalid } from "../core/errors.ts";

export type CpioEntry =
  | { type: "file"; path: string; data: Uint8Array | string; mode?: number }
  | { type: "dir"; path: string; mode?: number }
  | { type: "symlink"; path: string; target: string }
  | { type: "char"; path: string; major: number; minor: number; mode?: number };

export interface CpioOptions {
  /** mtime of every entry, seconds since the epoch. Default 0 (reproducible archives). */
  mtime?: number;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const TRAILER = "TRAILER!!!";

/** Normalise an archive path: no leading "/", no empty, "." or ".." components. */
export function cpioPath(path: string): string {
  const parts = path.split("/").filter((p) => p !== "");
  if (parts.length === 0 || parts.some((p) => p === "." || p === "..") || path.includes("\0")) {
    throw invalid("cpio path", path, "must be a relative path without '.', '..' or NUL");
  }
  return parts.join("/");
}

function hex8(n: number, field: string): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw invalid(`cpio ${field}`, n, "must fit in 32 bits");
  return n.toString(16).padStart(8, "0");
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

interface Header {
  ino: number;
  mode: number;
  nlink: number;
  mtime: number;
  size: number;
  rdevmajor: number;
  rdevminor: number;
  name: string;
}

function record(h: Header, data: Uint8Array): Buffer[] {
  const name = Buffer.from(`${h.name}\0`, "utf8");
  const header = Buffer.from(
    "070701" +
      hex8(h.ino, "ino") +
      hex8(h.mode, "mode") +
      hex8(0, "uid") +
      hex8(0, "gid") +
      hex8(h.nlink, "nlink") +
      hex8(h.mtime, "mtime") +
      hex8(h.size, "filesize") +
      hex8(0, "devmajor") +
      hex8(0, "devminor") +
      hex8(h.rdevmajor, "rdevmajor") +
      hex8(h.rdevminor, "rdevminor") +
      hex8(name.length, "namesize") +
      hex8(0, "check"),
    "ascii",
  );
  return [
    header,
    name,
    Buffer.alloc(pad4(header.length + name.length)),
    Buffer.from(data.buffer, data.byteOffset, data.byteLength),
    Buffer.alloc(pad4(data.byteLength)),
  ];
}

/** Build a newc archive (uncompressed) from entries, in order, with a trailer. */
export function cpioArchive(entries: readonly CpioEntry[], options: CpioOptions = {}): Buffer {
  const mtime = options.mtime ?? 0;
  const chunks: Buffer[] = [];
  const seen = new Map<string, CpioEntry["type"]>();
  let ino = 1;
  const empty = new Uint8Array(0);

  const addDir = (name: string, mode: number): void => {
    chunks.push(...record({ ino: ino++, mode: S_IFDIR | mode, nlink: 2, mtime, size: 0, rdevmajor: 0, rdevminor: 0, name }, empty));
    seen.set(name, "dir");
  };

  for (const entry of entries) {
    const name = cpioPath(entry.path);
    if (seen.has(name)) throw invalid("cpio path", entry.path, "appears twice in the archive");
    const parts = name.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      const kind = seen.get(parent);
      if (kind === undefined) addDir(parent, 0o755);
      else if (kind !== "dir") throw invalid("cpio path", entry.path, `parent ${parent} is not a directory`);
    }
    switch (entry.type) {
      case "dir":
        addDir(name, (entry.mode ?? 0o755) & 0o7777);
        break;
      case "file": {
        const data = typeof entry.data === "string" ? Buffer.from(entry.data, "utf8") : entry.data;
        const mode = S_IFREG | ((entry.mode ?? 0o644) & 0o7777);
        chunks.push(...record({ ino: ino++, mode, nlink: 1, mtime, size: data.byteLength, rdevmajor: 0, rdevminor: 0, name }, data));
        seen.set(name, "file");
        break;
      }
      case "symlink": {
        if (entry.target === "" || entry.target.includes("\0")) throw invalid("cpio symlink target", entry.target, "must be non-empty, no NUL");
        const data = Buffer.from(entry.target, "utf8");
        chunks.push(...record({ ino: ino++, mode: S_IFLNK | 0o777, nlink: 1, mtime, size: data.byteLength, rdevmajor: 0, rdevminor: 0, name }, data));
        seen.set(name, "symlink");
        break;
      }
      case "char": {
        const mode = S_IFCHR | ((entry.mode ?? 0o600) & 0o7777);
        chunks.push(...record({ ino: ino++, mode, nlink: 1, mtime, size: 0, rdevmajor: entry.major, rdevminor: entry.minor, name }, empty));
        seen.set(name, "char");
        break;
      }
    }
  }
  chunks.push(...record({ ino: 0, mode: 0, nlink: 1, mtime: 0, size: 0, rdevmajor: 0, rdevminor: 0, name: TRAILER }, empty));
  return Buffer.concat(chunks);
}
