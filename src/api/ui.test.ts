// The dashboard's files at /ui: served without the token (they carry no data)
// with a strict content security policy; the API beside them still wants it;
// nothing but the page's own files comes out of the folder.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { memoryControllerApp } from "./testing.ts";

const { app, auth } = memoryControllerApp();

interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}
/** The page's own module, as the browser loads it (plain JS: its types are checked by src/api/ui/tsconfig.json). */
const SSE_MODULE = "./ui/sse.js";
const { SseParser } = (await import(SSE_MODULE)) as { SseParser: new (onMessage: (m: SseMessage) => void) => { feed(text: string): void } };

describe("the dashboard's static files", () => {
  it("serves the page and its modules without the token, the API only with it", async () => {
    const redirect = await app.inject({ method: "GET", url: "/ui" });
    assert.equal(redirect.statusCode, 302);
    assert.equal(redirect.headers.location, "/ui/");
    const withQuery = await app.inject({ method: "GET", url: "/ui?poll=60" });
    assert.equal(withQuery.headers.location, "/ui/?poll=60", "the page's options survive the redirect");
    const page = await app.inject({ method: "GET", url: "/ui/" });
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers["content-type"]), /^text\/html/);
    assert.match(page.body, /<script type="module" src="app.js">/);
    assert.match(String(page.headers["content-security-policy"]), /script-src 'self'.*connect-src 'self'/);
    for (const f of ["app.js", "api.js", "sse.js", "views.js", "chart.js", "dom.js", "style.css", "logo.svg"]) {
      assert.equal((await app.inject({ method: "GET", url: `/ui/${f}` })).statusCode, 200, f);
    }
    assert.equal((await app.inject({ method: "GET", url: "/v1/hosts" })).statusCode, 401);
    assert.equal((await app.inject({ method: "GET", url: "/v1/hosts", headers: auth })).statusCode, 200);
  });

  it("serves nothing else: no config, no climbing out of the folder", async () => {
    for (const url of ["/ui/tsconfig.json", "/ui/..%2fapp.ts", "/ui/%2e%2e%2fui.ts", "/ui/nope.js"]) {
      const r = await app.inject({ method: "GET", url });
      assert.equal(r.statusCode, 404, url);
      assert.equal(r.json<{ code: string }>().code, "FERRY_ERR_NOT_FOUND", url);
    }
    assert.equal((await app.inject({ method: "GET", url: "/ui/x/y" })).statusCode, 401, "other paths stay behind the token");
  });

  it("leaves the dashboard out of the OpenAPI document", async () => {
    const doc = (await app.inject({ method: "GET", url: "/openapi.json", headers: auth })).json<{ paths: Record<string, unknown> }>();
    assert.deepEqual(Object.keys(doc.paths).filter((p) => p.startsWith("/ui")), []);
    assert.ok("/v1/hosts" in doc.paths);
  });
});

describe("the dashboard's SSE parser", () => {
  it("reads events split anywhere across chunks, with CRLF, comments and multi-line data", () => {
    const got: SseMessage[] = [];
    const p = new SseParser((m) => got.push(m));
    const text = 'id: 1\nevent: phase\ndata: {"a":1}\n\n: ping\n\nid: 2\r\nevent: outcome\r\ndata: x\r\ndata: y\r\n\r\ndata:no-space\n\n';
    for (let i = 0; i < text.length; i += 3) p.feed(text.slice(i, i + 3));
    assert.deepEqual(got, [
      { id: "1", event: "phase", data: '{"a":1}' },
      { id: "2", event: "outcome", data: "x\ny" },
      { id: "2", event: "message", data: "no-space" },
    ]);
  });
});
