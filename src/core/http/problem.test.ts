// Validation errors state the rule a value breaks, never the regex: every
// pattern in both APIs' schemas has a rule in words (PATTERN_RULES), and a
// pattern failure's message is that rule.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { memoryControllerApp } from "../../api/testing.ts";
import { Agent } from "../../agent/agent.ts";
import { makeTestHost } from "../../agent/testing.ts";
import { PATTERN_RULES } from "./schema.ts";
import { buildAgentApp } from "../../agent/http/app.ts";

function patterns(x: unknown, out: Set<string> = new Set()): Set<string> {
  if (Array.isArray(x)) for (const y of x) patterns(y, out);
  else if (typeof x === "object" && x !== null) {
    for (const [k, v] of Object.entries(x)) {
      if (k === "pattern" && typeof v === "string") out.add(v);
      else patterns(v, out);
    }
  }
  return out;
}

const host = await makeTestHost({ name: "rules" });
after(() => host.cleanup());

test("every pattern of the agent's and the controller's API has a rule in words", async () => {
  const agent = await Agent.open({ config: host.config, accel: { accel: "tcg", reason: "test" } });
  const aapp = buildAgentApp({ agent, token: "t".repeat(32) });
  const { app, auth } = memoryControllerApp();
  try {
    const docs = [
      (await aapp.inject({ method: "GET", url: "/openapi.json", headers: { authorization: `Bearer ${"t".repeat(32)}` } })).json<unknown>(),
      (await app.inject({ method: "GET", url: "/openapi.json", headers: auth })).json<unknown>(),
    ];
    const all = new Set([...patterns(docs[0]), ...patterns(docs[1])]);
    assert.ok(all.size >= 10, `${all.size} patterns`);
    for (const p of all) assert.ok(PATTERN_RULES.has(p), `no rule for ${p}`);
    for (const rule of PATTERN_RULES.values()) assert.doesNotMatch(rule, /\^|\$|\[[^\]]*-[^\]]*\]|\{\d/, `a rule that reads like a regex: ${rule}`);

    // a pattern failure says the rule
    const r = await aapp.inject({ method: "POST", url: "/v1/instances/not-an-id/stop", headers: { authorization: `Bearer ${"t".repeat(32)}` } });
    assert.equal(r.statusCode, 400);
    assert.equal(r.json<{ message: string }>().message, "id: must be an instance id: 'i-' and 8 lower-case hex digits, e.g. i-0a1b2c3d ('ferry vm show NAME' shows a VM's)");
    const s = await app.inject({ method: "POST", url: "/v1/vms/web/save", headers: auth, payload: { file: "../etc/x" } });
    assert.match(s.json<{ message: string }>().message, /^file: must be a file name, not a path: 1 to 128 letters/);
    const u = await app.inject({ method: "POST", url: "/v1/vms", headers: auth, payload: { name: "web", host: "h", memoryMiB: 64, nics: [{ network: "physnet1", mode: "sriov", policy: "optional" }] } });
    assert.equal(u.json<{ message: string }>().message, `nics[0].mode: must be one of "failover", "ephemeral", "emulated"`);
  } finally {
    await aapp.close();
    await agent.close();
  }
});
