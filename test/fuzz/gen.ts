// Seeded generators for the bad-input tests (no dependency): random bytes and
// text made of JSON/YAML/shell/path atoms, mutations of a valid document,
// random JSON values and perturbations of a valid object. FERRY_FUZZ_CASES
// sets the count per surface (the long run: FERRY_FUZZ_CASES=2000).
import assert from "node:assert/strict";
import { ERROR_CODES, FerryError } from "../../src/core/errors.ts";

export { prng } from "../../src/scheduler/fixtures.ts";

export type Rand = () => number;

/** Cases per surface: FERRY_FUZZ_CASES, else `dflt` (kept modest for npm test). */
export function cases(dflt: number): number {
  const env = process.env["FERRY_FUZZ_CASES"];
  return env !== undefined && env !== "" ? Number(env) : dflt;
}

export const CASES = cases(300);

export const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

export function bytes(r: Rand, max: number): Buffer {
  const n = Math.floor(r() * max);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

export const ATOMS = ["{", "}", "[", "]", ":", ",", '"', "\\", "null", "true", "1e309", "-0", "\u0000", "\uffff", "\ud800", "QMP", "return", "error", "event", "id", "../../etc", "0000:00:1f.9", "52:54:00:12:34:56", "\n", " ", "\t", "'", "$(", ";", "|", "`"];

export function text(r: Rand, max: number): string {
  let s = "";
  const n = Math.floor(r() * max);
  for (let i = 0; i < n; i++) s += r() < 0.7 ? pick(r, ATOMS) : String.fromCharCode(Math.floor(r() * 0x3000));
  return s;
}

/** Mutate a valid document: delete, duplicate or replace a slice with noise, or truncate. */
export function mutate(r: Rand, good: string): string {
  const a = Math.floor(r() * good.length);
  const b = Math.min(good.length, a + Math.floor(r() * 20));
  switch (Math.floor(r() * 4)) {
    case 0: return good.slice(0, a) + good.slice(b);
    case 1: return good.slice(0, b) + good.slice(a);
    case 2: return good.slice(0, a) + text(r, 6) + good.slice(b);
    default: return good.slice(0, a);
  }
}

export function randomValue(r: Rand, depth = 0): unknown {
  const k = Math.floor(r() * (depth > 3 ? 6 : 8));
  switch (k) {
    case 0: return null;
    case 1: return r() < 0.5;
    case 2: return Math.floor((r() - 0.5) * 2 ** (r() * 60));
    case 3: return text(r, 12);
    case 4: return r() * 1e6;
    case 5: return pick(r, ATOMS);
    case 6: return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    default: return Object.fromEntries(Array.from({ length: Math.floor(r() * 4) }, () => [text(r, 6), randomValue(r, depth + 1)]));
  }
}

/** Replace one field somewhere in a valid object with a random value (or delete it). */
export function perturb(r: Rand, x: unknown): unknown {
  if (typeof x !== "object" || x === null) return randomValue(r);
  const copy: Record<string, unknown> | unknown[] = Array.isArray(x) ? [...(x as unknown[])] : { ...(x as Record<string, unknown>) };
  const keys = Object.keys(copy);
  if (keys.length === 0 || r() < 0.15) return randomValue(r);
  const key = pick(r, keys);
  (copy as Record<string, unknown>)[key] = r() < 0.5 ? perturb(r, (copy as Record<string, unknown>)[key]) : randomValue(r);
  if (r() < 0.1) delete (copy as Record<string, unknown>)[key];
  return copy;
}

/** f may only throw FerryErrors with a known code. */
export function onlyFerryErrors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof FerryError, `not a FerryError: ${String(e)}`);
    assert.ok(e.code in ERROR_CODES);
  }
}
