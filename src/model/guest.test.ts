import assert from "node:assert/strict";
import { test } from "node:test";
import { isFerryError } from "../core/errors.ts";
import { GUEST_BASE_CMDLINE, guestCmdline } from "./guest.ts";

test("guestCmdline: base line, name, one ferry.net per NIC; bad input refused", () => {
  assert.equal(
    guestCmdline("vm-1", [
      { mac: "52:54:00:AB:34:56", cidr: "10.90.1.10/24" },
      { mac: "52:54:00:12:34:57", cidr: "10.90.2.10/24" },
    ]),
    `${GUEST_BASE_CMDLINE} ferry.name=vm-1 ferry.net=52:54:00:ab:34:56,10.90.1.10/24 ferry.net=52:54:00:12:34:57,10.90.2.10/24`,
  );
  assert.match(GUEST_BASE_CMDLINE, /console=ttyS0/);
  assert.match(GUEST_BASE_CMDLINE, /ipv6\.disable=1/);
  const bad: [string, { mac: string; cidr: string }[]][] = [
    ["has space", []],
    ["ok", [{ mac: "52:54:00:12:34", cidr: "10.0.0.1/24" }]],
    ["ok", [{ mac: "52:54:00:12:34:56", cidr: "10.0.0.1" }]],
    ["ok", [{ mac: "52:54:00:12:34:56", cidr: "10.0.0.256/24" }]],
    ["ok", [{ mac: "52:54:00:12:34:56", cidr: "10.0.0.1/33" }]],
  ];
  for (const [name, nets] of bad) {
    assert.throws(() => guestCmdline(name, nets), (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"));
  }
});

test("guestCmdline: ferry.dirty for a dirty rate, none for 0; a bad rate refused", () => {
  assert.match(guestCmdline("d", [], { dirtyMiBps: 200 }), / ferry\.dirty=200$/);
  assert.doesNotMatch(guestCmdline("d", [], { dirtyMiBps: 0 }), /ferry\.dirty/);
  for (const bad of [-1, 1.5, 5000]) assert.throws(() => guestCmdline("d", [], { dirtyMiBps: bad }), (e: unknown) => isFerryError(e, "FERRY_ERR_INVALID"));
});
