// The coordinator's port over the agents' API keeps the switch-over moments
// an agent answers (and answers of agents without them as they are).
import assert from "node:assert/strict";
import { test } from "node:test";
import type { AgentClient } from "../wire/agent-client.ts";
import type { FinishReply, SwitchoverReply } from "../wire/steps.ts";
import { nic, plan } from "../migration/testdata/scripted-port.ts";
import { HttpAgentPort } from "./agent-port.ts";

function portAnswering(sw: SwitchoverReply, fin: FinishReply): HttpAgentPort {
  const client = { switchover: () => Promise.resolve(sw), finish: () => Promise.resolve(fin) } as unknown as AgentClient;
  return new HttpAgentPort(() => client);
}

test("switchover and finish pass the agents' moments on to the coordinator; older agents' answers come without", async () => {
  const p = plan([nic("net0")]);
  const signal = AbortSignal.timeout(5_000);
  const source = { migrateSentAtMs: 1, unplugs: [{ nic: "net0", unpluggedAtMs: 2, steeredAtMs: 3 }], stoppedAtMs: 4 };
  const destination = { resumedAtMs: 5, steeredAtMs: 6 };
  const nics = [{ name: "net0", attached: true, vf: "0000:5e:10.0" }];
  const now = portAnswering({ totalMs: 9, downtimeMs: 1, transferredBytes: 7, timeline: source }, { instanceId: "i-1", nics, timeline: destination });
  assert.deepEqual((await now.switchover(p, signal)).timeline, source);
  assert.deepEqual((await now.finish(p, signal)).timeline, destination);
  const old = portAnswering({ totalMs: 9, downtimeMs: 1, transferredBytes: 7 }, { instanceId: "i-1", nics });
  assert.deepEqual(await old.switchover(p, signal), { totalMs: 9, downtimeMs: 1, transferredBytes: 7 });
  assert.deepEqual(await old.finish(p, signal), { nics: [{ name: "net0", attached: true }] });
});
