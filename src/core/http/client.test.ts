import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Type } from "typebox";
import { isFerryError } from "../errors.ts";
import { request } from "./client.ts";
import { ruled } from "./schema.ts";

const Reply = Type.Object({
  vfs: Type.Array(Type.Object({ bdf: Type.String(ruled("^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]$", "a PCI address")), leased: Type.Boolean() })),
  note: Type.Optional(Type.String()),
});

/** request() against a fetch that answers `body` with `status`. */
function ask(body: unknown, status = 200): ReturnType<typeof request<typeof Reply>> {
  const fetch = (() => Promise.resolve(new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } }))) as typeof globalThis.fetch;
  return request({ fetch, kind: "FERRY_ERR_AGENT", baseUrl: "http://agent.test", token: "t", method: "GET", path: "/v1/inventory", body: undefined, accept: "application/json", timeoutMs: 1_000 }, Reply);
}

describe("the HTTP client's reply check (compiled once per schema)", () => {
  it("passes a reply of the schema's shape, the same on every call", async () => {
    const ok = { vfs: [{ bdf: "0000:3b:10.1", leased: false }, { bdf: "0000:3b:10.3", leased: true }] };
    for (let i = 0; i < 3; i++) assert.deepEqual(await ask(ok), ok);
  });

  it("refuses a reply off the schema, naming where: a pattern, a type, a missing field", async () => {
    const cases: [unknown, RegExp][] = [
      [{ vfs: [{ bdf: "../../etc", leased: false }] }, /unexpected reply at \/vfs\/0\/bdf/],
      [{ vfs: [{ bdf: "0000:3b:10.1", leased: "no" }] }, /unexpected reply at \/vfs\/0\/leased/],
      [{ vfs: [{ leased: true }] }, /unexpected reply at \/vfs\/0/],
      [{}, /unexpected reply/],
    ];
    for (const [body, why] of cases) {
      await assert.rejects(ask(body), (e: unknown) => isFerryError(e, "FERRY_ERR_AGENT") && why.test(e.message), JSON.stringify(body));
    }
  });
});
