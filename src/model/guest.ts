// The test guest's command-line contract: what the controller (vm-spec) puts
// on the kernel command line and what the guest's /init (src/lab/guest/init.sh)
// reads back: the guest's name, one address per NIC (by MAC) and, for
// benchmarks, how much RAM to fill and how fast to dirty it. Pure.
import { invalid } from "../core/errors.ts";

/** Base kernel command line for Ferry's guests (see FINDINGS.md for ipv6.disable). */
export const GUEST_BASE_CMDLINE = "console=ttyS0 ipv6.disable=1 quiet";

export interface GuestNet {
  mac: string;
  /** Guest address with prefix, e.g. "10.90.1.10/24". */
  cidr: string;
}

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** The most a test guest is asked to dirty (ferry.dirty, MiB/s). */
export const MAX_DIRTY_MIBPS = 4096;
/**
 * MiB of the test guest's RAM disk (a tmpfs of half its RAM) kept for its
 * own files (the initramfs: ~4 MiB), its memory-check region (8 MiB by
 * default) and tools; a RAM fill and a dirty region share the rest.
 */
export const GUEST_RAM_DISK_RESERVE_MIB = 32;

/** MiB of a `memoryMiB` test guest's RAM disk that a fill and a dirty region may take together. */
export function guestRamDiskRoom(memoryMiB: number): number {
  return Math.floor(memoryMiB / 2) - GUEST_RAM_DISK_RESERVE_MIB;
}

/** The smallest test-guest RAM (a multiple of 64 MiB) whose RAM disk has room for `needMiB`. */
export function guestMemoryFor(needMiB: number): number {
  return 64 * Math.ceil((2 * (needMiB + GUEST_RAM_DISK_RESERVE_MIB)) / 64);
}

/** RAM-disk MiB the guest's dirty writer takes: its region (one second of writes, 64 to 1024 MiB) and 17 MiB buffer (src/lab/guest/init.sh). */
export function dirtyRamMiB(dirtyMiBps: number): number {
  return Math.min(Math.max(dirtyMiBps, 64), 1024) + 17;
}

/** The full guest kernel command line: base + `ferry.name` + one `ferry.net` per NIC (+ `ferry.fill`: MiB of random data in guest RAM; + `ferry.dirty`: MiB/s the guest keeps rewriting). */
export function guestCmdline(name: string, nets: readonly GuestNet[], o: { fillMiB?: number; dirtyMiBps?: number } = {}): string {
  if (!NAME_RE.test(name)) throw invalid("guest name", name, "must be 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit");
  const parts = [GUEST_BASE_CMDLINE, `ferry.name=${name}`];
  for (const [i, net] of nets.entries()) {
    if (!MAC_RE.test(net.mac)) throw invalid(`nets[${i}].mac`, net.mac, "must be a MAC address like 52:54:00:12:34:56");
    const m = CIDR_RE.exec(net.cidr);
    const octetsOk = m !== null && m.slice(1, 5).every((o) => Number(o) <= 255) && Number(m[5]) <= 32;
    if (!octetsOk) throw invalid(`nets[${i}].cidr`, net.cidr, "must be an IPv4 address with prefix like 10.90.1.10/24");
    parts.push(`ferry.net=${net.mac.toLowerCase()},${net.cidr}`);
  }
  if (o.fillMiB !== undefined) {
    if (!Number.isInteger(o.fillMiB) || o.fillMiB < 0 || o.fillMiB > 1024 * 1024) throw invalid("fillMiB", o.fillMiB, "must be a whole number of MiB");
    parts.push(`ferry.fill=${o.fillMiB}`);
  }
  if (o.dirtyMiBps !== undefined && o.dirtyMiBps !== 0) {
    if (!Number.isInteger(o.dirtyMiBps) || o.dirtyMiBps < 0 || o.dirtyMiBps > MAX_DIRTY_MIBPS) throw invalid("dirtyMiBps", o.dirtyMiBps, `must be a whole number of MiB/s from 0 to ${MAX_DIRTY_MIBPS}`);
    parts.push(`ferry.dirty=${o.dirtyMiBps}`);
  }
  return parts.join(" ");
}
