// Fencing on the agent: the highest leadership term seen is kept in the state
// file; a call with an older term is refused with FERRY_ERR_STALE_TERM and
// changes nothing, also after the agent restarts.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { loadOrCreateToken } from "../../core/http/token.ts";
import { Agent } from "../agent.ts";
import { makeTestHost } from "../testing.ts";
import type { TestHost } from "../testing.ts";
import { buildAgentApp } from "./app.ts";

const hosts: TestHost[] = [];
after(() => Promise.all(hosts.map((h) => h.cleanup())));
const VM = "6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab";

test("an older term is refused (409 FERRY_ERR_STALE_TERM, no lease taken), also after a restart; a newer one is remembered; no header is not fenced; a malformed one is invalid", async () => {
  const host = await makeTestHost();
  hosts.push(host);
  const { token } = await loadOrCreateToken(host.config.authTokenFile);
  const open = async () => {
    const agent = await Agent.open({ config: host.config, accel: { accel: "tcg", reason: "test" } });
    return { agent, app: buildAgentApp({ agent, token }) };
  };
  const call = (app: Awaited<ReturnType<typeof open>>["app"], term: string | undefined, vf: string) =>
    app.inject({ method: "POST", url: "/v1/leases", headers: { authorization: `Bearer ${token}`, ...(term === undefined ? {} : { "x-ferry-term": term }) }, payload: { vf, holder: { kind: "instance", vmUuid: VM, instanceId: `i-${vf.slice(-1)}` } } });
  let a = await open();
  try {
    assert.equal((await call(a.app, "5", host.vfs[0]!)).statusCode, 200);
    assert.equal((await call(a.app, "9", host.vfs[1]!)).statusCode, 200);
    const stale = await call(a.app, "5", host.vfs[2]!);
    assert.equal(stale.statusCode, 409);
    const body = JSON.parse(stale.body) as { code: string; message: string };
    assert.equal(body.code, "FERRY_ERR_STALE_TERM");
    assert.match(body.message, /term 5, and this agent has seen term 9: the calling controller no longer leads/);
    assert.equal((JSON.parse((await a.app.inject({ method: "GET", url: "/v1/leases", headers: { authorization: `Bearer ${token}` } })).body) as { leases: unknown[] }).leases.length, 2, "the stale call took no lease");
    const bad = await call(a.app, "0x10", host.vfs[2]!);
    assert.equal(bad.statusCode, 400);
    assert.match(bad.body, /x-ferry-term: must be a positive integer/);
  } finally {
    await a.app.close();
    await a.agent.close();
  }
  a = await open();
  try {
    assert.equal((await call(a.app, "8", host.vfs[2]!)).statusCode, 409, "the highest term seen survives a restart");
    assert.equal((await call(a.app, undefined, host.vfs[2]!)).statusCode, 200, "a call without a term (a host tool) is not fenced");
  } finally {
    await a.app.close();
    await a.agent.close();
  }
});
