// A request goes to the next URL only when the connection to one fails: a
// refused port moves on (also for a POST), an HTTP error from a live server
// does not, and the one that answered is tried first next time.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, test } from "node:test";
import { connectFailed, failoverFetch } from "./failover.ts";

const seen: string[] = [];
const server = createServer((req, res) => {
  seen.push(`${req.method} ${req.url}`);
  res.statusCode = req.url === "/fail" ? 503 : 200;
  res.end("ok");
});
await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
const live = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const probe = createServer();
await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
const dead = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`;
await new Promise((r) => probe.close(r));
after(() => server.close());

test("a refused connection moves on to the next URL, for a write too; the live one is tried first afterwards", async () => {
  const calls: string[] = [];
  const f = failoverFetch([dead, live], async (input, init) => {
    calls.push(input instanceof Request ? input.url : input.toString());
    return fetch(input, init);
  });
  seen.length = 0;
  const r = await f(`${dead}/v1/vms?x=1`, { method: "POST", body: "{}" });
  assert.equal(r.status, 200);
  assert.deepEqual(seen, ["POST /v1/vms?x=1"]);
  assert.deepEqual(calls, [`${dead}/v1/vms?x=1`, `${live}/v1/vms?x=1`]);
  calls.length = 0;
  await f(`${dead}/v1/hosts`);
  assert.deepEqual(calls, [`${live}/v1/hosts`]);
});

test("an HTTP error from a live server comes back as it is; every URL refused throws the connection error", async () => {
  const f = failoverFetch([live, dead], fetch);
  assert.equal((await f(`${live}/fail`)).status, 503);
  const none = failoverFetch([dead, `${dead}/`], fetch);
  await assert.rejects(none(`${dead}/v1/hosts`), (e: unknown) => connectFailed(e));
  // a URL of none of the bases goes to the inner fetch unchanged
  assert.equal((await failoverFetch([dead, "http://127.0.0.1:1"], fetch)(`${live}/x`)).status, 200);
});
