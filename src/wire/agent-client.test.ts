import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, test } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { Agent } from "../agent/agent.ts";
import { AgentClient } from "./agent-client.ts";
import { buildAgentApp } from "../agent/http/app.ts";
import { makeTestHost } from "../agent/testing.ts";
import { loadOrCreateToken } from "../core/http/token.ts";

const VM = "6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab";

test("the client talks to a real agent listening on 127.0.0.1; problems come back as FerryErrors with the agent's code", async () => {
  const host = await makeTestHost();
  after(() => host.cleanup());
  const agent = await Agent.open({ config: host.config, accel: { accel: "tcg", reason: "test" } });
  const { token } = await loadOrCreateToken(host.config.authTokenFile);
  const app = buildAgentApp({ agent, token });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = app.server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;
  try {
    const c = new AgentClient({ baseUrl, token });
    const h = await c.health();
    assert.equal(h.host, "host-a");
    const inv = await c.inventory();
    assert.deepEqual(inv.vfs.map((v) => v.bdf), host.vfs);

    const vf = host.vfs[0]!;
    const lease = await c.acquireLease(vf, { kind: "instance", vmUuid: VM, instanceId: "i-1" });
    assert.equal(lease.vf, vf);
    await assert.rejects(c.acquireLease(vf, { kind: "instance", vmUuid: VM, instanceId: "i-2" }), (e: unknown) => {
      assert.ok(isFerryError(e, "FERRY_ERR_LEASE_HELD"));
      assert.match(e.message, /leased to instance i-1/);
      assert.equal(e.details["status"], 409);
      return true;
    });
    await assert.rejects(c.acquireLease("0000:00:1f.7", { kind: "instance", vmUuid: VM, instanceId: "i-2" }), (e: unknown) => isFerryError(e, "FERRY_ERR_NOT_FOUND"));
    await assert.rejects(c.instance("i-00000000"), (e: unknown) => isFerryError(e, "FERRY_ERR_NOT_FOUND"));
    assert.deepEqual((await c.leases()).leases.map((l) => l.vf), [vf]);
    assert.deepEqual(await c.releaseLease(vf, { kind: "instance", vmUuid: VM, instanceId: "i-1" }), { vf, released: true });
    assert.deepEqual((await c.instances()).instances, []);

    const wrong = new AgentClient({ baseUrl, token: "0".repeat(64) });
    await assert.rejects(wrong.health(), (e: unknown) => isFerryError(e, "FERRY_ERR_UNAUTHORIZED") && !e.retryable);

    // the caller's signal aborts the request
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(c.health({ signal: ac.signal }), (e: unknown) => isFerryError(e, "FERRY_ERR_ABORTED"));
  } finally {
    await app.close();
    await agent.close();
  }
  // nothing listens there any more: a retryable FERRY_ERR_AGENT
  const gone = new AgentClient({ baseUrl, token, timeoutMs: 2_000 });
  await assert.rejects(gone.health(), (e: unknown) => {
    assert.ok(isFerryError(e, "FERRY_ERR_AGENT"));
    assert.equal(e.retryable, true);
    assert.match(e.message, /GET http:\/\/127.0.0.1:\d+\/v1\/health: /);
    return true;
  });
});
