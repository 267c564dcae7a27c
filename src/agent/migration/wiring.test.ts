import assert from "node:assert/strict";
import { test } from "node:test";
import type { NicSpec } from "../../model/vm.ts";
import type { StepContext } from "./context.ts";
import { attachTap, steer } from "./wiring.ts";

const nic: NicSpec = {
  name: "net0", mode: "failover", mac: "52:54:00:00:00:01", network: "physnet1", guestPorts: { standby: 1, primary: 2 },
  standby: { kind: "tap", ifname: "fs-net0" },
  primary: { kind: "stand-in", model: "vmxnet3", backend: { kind: "tap", ifname: "fp-net0" }, vf: "0000:3b:10.0" },
};

function ctx(forwarding: "managed" | "unmanaged" | undefined): { ctx: StepContext; calls: string[] } {
  const calls: string[] = [];
  const c = {
    run: (file: string, args: readonly string[]) => {
      calls.push([file, ...args].join(" "));
      return Promise.resolve({ code: 0, stdout: "", stderr: "" });
    },
    network: (name: string) => (name === "physnet1" ? { bridge: "br-physnet1", netns: "ferry-lab-x", ...(forwarding ? { forwarding } : {}) } : undefined),
    vfs: () => [],
  } as unknown as StepContext;
  return { ctx: c, calls };
}

test("managed forwarding (the default): taps learn nothing, the guest MAC is pinned to the live half", async () => {
  for (const mode of ["managed", undefined] as const) {
    const { ctx: c, calls } = ctx(mode);
    await attachTap(c, nic, nic.standby, AbortSignal.timeout(1000));
    assert.equal(await steer(c, nic, "standby", AbortSignal.timeout(1000)), true);
    assert.deepEqual(calls, [
      "ip -n ferry-lab-x link set dev fs-net0 master br-physnet1 up",
      "bridge -n ferry-lab-x link set dev fs-net0 learning off",
      "bridge -n ferry-lab-x fdb replace 52:54:00:00:00:01 dev fs-net0 master static",
    ]);
  }
});

test("unmanaged forwarding (raw QEMU failover): taps learn and flood, nothing is ever pinned", async () => {
  const { ctx: c, calls } = ctx("unmanaged");
  await attachTap(c, nic, nic.primary?.kind === "stand-in" ? nic.primary.backend : undefined, AbortSignal.timeout(1000));
  assert.equal(await steer(c, nic, "standby", AbortSignal.timeout(1000)), false);
  assert.equal(await steer(c, nic, "primary", AbortSignal.timeout(1000)), false);
  assert.deepEqual(calls, [
    "ip -n ferry-lab-x link set dev fp-net0 master br-physnet1 up",
    "bridge -n ferry-lab-x link set dev fp-net0 learning on flood on",
  ]);
});
