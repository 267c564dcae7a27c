// `ferry vm show` and `ferry vm list` for a VM whose guest kernel panicked
// (the controller's VM check recorded it): the operator reads that it runs no
// more and what to do; a VM without one shows no such line.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { VmViewT } from "../../wire/controller-api.ts";
import { renderVm, renderVms } from "./cluster.ts";

const vm: VmViewT = {
  uuid: "6f1b0c9e-2d3a-4b5c-8d7e-0123456789ab", name: "web", memoryMiB: 256, vcpus: 1, host: "host-b", instanceId: "i-0000000b", state: "running", noOs: false,
  nics: [], seq: 1, createdAt: 1, updatedAt: 2,
};

test("a panicked guest: vm show says when, that it runs no more and how to boot it again; vm list marks its state", () => {
  const panicked = { ...vm, guestPanicked: { instanceId: "i-0000000b", at: Date.UTC(2026, 11, 6, 16, 30) } };
  assert.match(renderVm(panicked), /^the guest's kernel panicked at 2026-12-06T16:30:00\.000Z \(pvpanic\): it runs no more; 'ferry vm stop web' then 'ferry vm start web' boots it again$/m);
  assert.match(renderVms([panicked]), /\brunning, guest panicked\b/);
  assert.doesNotMatch(renderVm(vm), /panicked/);
  assert.doesNotMatch(renderVms([vm]), /panicked/);
});
