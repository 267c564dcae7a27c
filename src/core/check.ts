// A schema's check, compiled once per schema. Value.Check interprets the
// schema on every call, which for the agents' inventories (arrays of VFs) was
// 1.3 s of one 3 s event-loop stall in bench/scale.ts (100 plans reading 50
// inventories each); a migration record's timeline is checked on every read
// of the record. A schema Compile cannot take is checked by Value.Check.
import type { Static, TSchema } from "typebox";
import { Compile } from "typebox/compile";
import { Check } from "typebox/value";

const compiled = new WeakMap<TSchema, (data: unknown) => boolean>();

/** The check of `schema` (compiled on first use, then kept). */
export function checker<T extends TSchema>(schema: T): (data: unknown) => data is Static<T> {
  let c = compiled.get(schema);
  if (!c) {
    try {
      const v = Compile(schema);
      c = (data) => v.Check(data);
    } catch {
      c = (data) => Check(schema, data);
    }
    compiled.set(schema, c);
  }
  return c as (data: unknown) => data is Static<T>;
}

/** `x` when it matches `schema` (e.g. a value read back from a journal is unknown), else undefined. */
export function checked<T extends TSchema>(schema: T, x: unknown): Static<T> | undefined {
  return x !== undefined && checker(schema)(x) ? x : undefined;
}
