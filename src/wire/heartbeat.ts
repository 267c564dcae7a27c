// The heartbeat's contract between agent and controller: what an agent sends
// to POST /v1/agents/heartbeat and what the controller answers. The agent's
// heartbeat (./heartbeat.ts) sends it; the controller's API (src/api/) serves
// it with the same schemas.
import { Type } from "typebox";
import type { Static } from "typebox";
import { ruled } from "../core/http/schema.ts";
import { Name } from "./agent-api.ts";

const MachineName = Type.String({ ...ruled("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", "a QEMU machine or CPU model name"), maxLength: 64 });

export const HeartbeatBody = Type.Object(
  {
    name: Name,
    url: Type.String({ ...ruled("^https?://(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)(:[0-9]{1,5})?(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?$", "the agent's API base URL: http:// or https://, a host name or address, an optional port and an optional plain path prefix"), maxLength: 300 }),
    version: Type.String(ruled("^[ -~]{0,100}$", "at most 100 printable ASCII characters")),
    accel: Type.String(ruled("^[ -~]{0,100}$", "at most 100 printable ASCII characters")),
    migration: Type.Optional(Type.Object({
      address: Type.String(ruled("^[0-9]{1,3}(\\.[0-9]{1,3}){3}$", "an IPv4 address")),
      tls: Type.Boolean(),
      identity: Type.Optional(Type.String({ ...ruled("^[A-Za-z0-9.]+=[ -~]*$", "a certificate subject DN such as CN=host-a"), maxLength: 1024 })),
    }, { additionalProperties: false, description: "the host's migration network: where its incoming QEMU listens, whether streams are TLS, and the subject of its migration certificate (what a destination admits)" })),
    migrations: Type.Optional(Type.Array(Name, { maxItems: 1000, description: "migrations the agent holds anything of (records, VF leases): the reply says which have ended" })),

    warnings: Type.Optional(Type.Array(Type.String({ maxLength: 1000 }), { maxItems: 200, description: "the host check's warnings at agent start ('ferry host check'), one line each: check, subject, message" })),
    qemu: Type.Optional(Type.Object({
      version: Type.String(ruled("^[0-9]{1,4}(\\.[0-9]{1,6}){1,3}$", "a QEMU version such as 7.2.22")),
      machines: Type.Array(Type.Object({ name: MachineName, aliasOf: Type.Optional(MachineName) }, { additionalProperties: false }), { maxItems: 300 }),
      cpuModels: Type.Array(MachineName, { maxItems: 500 }),
    }, { additionalProperties: false, description: "the host's QEMU (probed at agent start): version, machine types (q35 an alias of a versioned one) and CPU models: what a migration's pre-flight check compares" })),
    memory: Type.Optional(Type.Object({
      totalMiB: Type.Integer({ minimum: 0, maximum: 1 << 30 }),
      availableMiB: Type.Integer({ minimum: 0, maximum: 1 << 30 }),
    }, { additionalProperties: false, description: "the host's memory at this beat (/proc/meminfo MemTotal and MemAvailable)" })),
  },
  { additionalProperties: false },
);
export type HeartbeatBodyT = Static<typeof HeartbeatBody>;
export const HeartbeatReply = Type.Object({
  intervalMs: Type.Integer({ description: "send the next heartbeat within this" }),
  ended: Type.Optional(Type.Array(Name, { description: "of the migrations the agent named, those that have ended (or that this controller does not know): the agent releases what it holds of them and refuses their steps" })),
});
export type HeartbeatReplyT = Static<typeof HeartbeatReply>;
