// Boundary validators. Each returns the normalized value or throws
// FERRY_ERR_INVALID naming the field and the value.
import { isAbsolute, normalize } from "node:path";
import { invalid } from "../core/errors.ts";

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// domain:bus:device.function; device is 5 bits (00-1f), function 3 bits (0-7)
const PCI_RE = /^[0-9a-f]{4}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$/;
const NAME_RE = /^[a-z0-9]([a-z0-9_.-]{0,62})$/i;
const IFNAME_RE = /^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,14}$/;

export function str(field: string, v: unknown): string {
  if (typeof v !== "string") throw invalid(field, v, "must be a string");
  return v;
}

export function mac(field: string, v: unknown): string {
  const s = str(field, v).toLowerCase();
  if (!MAC_RE.test(s)) throw invalid(field, v, "not a MAC address (expected xx:xx:xx:xx:xx:xx)");
  if ((parseInt(s.slice(0, 2), 16) & 1) === 1) throw invalid(field, v, "is a multicast MAC address");
  if (s === "00:00:00:00:00:00") throw invalid(field, v, "is the all-zero MAC address");
  return s;
}

export function uuid(field: string, v: unknown): string {
  const s = str(field, v).toLowerCase();
  if (!UUID_RE.test(s)) throw invalid(field, v, "not a UUID");
  return s;
}

export function pciAddress(field: string, v: unknown): string {
  const s = str(field, v).toLowerCase();
  if (!PCI_RE.test(s)) throw invalid(field, v, "not a PCI address (expected dddd:bb:dd.f)");
  return s;
}

export function isPciAddress(v: unknown): v is string {
  return typeof v === "string" && PCI_RE.test(v);
}

export function name(field: string, v: unknown): string {
  const s = str(field, v);
  if (!NAME_RE.test(s)) throw invalid(field, v, "must be 1-63 characters of letters, digits, '_', '.', '-', starting with a letter or digit");
  return s;
}

export function ifname(field: string, v: unknown): string {
  const s = str(field, v);
  if (!IFNAME_RE.test(s)) throw invalid(field, v, "not a network interface name (1-15 of letters, digits, '_', '.', '-')");
  return s;
}

export function int(field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v)) throw invalid(field, v, "must be an integer");
  if (v < min || v > max) throw invalid(field, v, `must be between ${min} and ${max}`);
  return v;
}

/** An absolute path with no '..' segment and no NUL. */
export function absPath(field: string, v: unknown): string {
  const s = str(field, v);
  if (s.length === 0 || s.length > 4096) throw invalid(field, v, "must be a non-empty path");
  if (s.includes("\0")) throw invalid(field, v, "contains a NUL byte");
  if (!isAbsolute(s)) throw invalid(field, v, "must be an absolute path");
  if (s.split("/").includes("..")) throw invalid(field, v, "must not contain '..'");
  return normalize(s);
}

export function oneOf<const T extends readonly string[]>(field: string, v: unknown, values: T): T[number] {
  if (typeof v !== "string" || !values.includes(v)) throw invalid(field, v, `must be one of ${values.join(", ")}`);
  return v;
}

export function obj(field: string, v: unknown): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw invalid(field, v, "must be an object");
  return v as Record<string, unknown>;
}

export function arr(field: string, v: unknown): unknown[] {
  if (!Array.isArray(v)) throw invalid(field, v, "must be an array");
  return v;
}
