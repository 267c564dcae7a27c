// The table of `ferry controllers` (input: GET /v1/controllers).
import type { ControllersViewT } from "../../wire/controllers.ts";
import { renderTable } from "./table.ts";

export function renderControllers(v: ControllersViewT, now: number): string {
  const up = (ms: number): string => {
    const s = Math.max(0, Math.round((now - ms) / 1000));
    return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
  };
  const table = renderTable(
    ["ID", "ROLE", "URL", "UP", "ANSWERED"],
    v.members.map((m) => [m.id, m.leader ? `leader (term ${v.leader?.term ?? "?"})` : "follower", m.url, up(m.startedAt), m.id === v.self ? "*" : ""]),
  );
  const head = `store: ${v.store}\n`;
  const lead = v.leader
    ? `leader: ${v.leader.id} at ${v.leader.url}, term ${v.leader.term}, leading for ${up(v.leader.since)}\n`
    : "leader: none right now (an election is in progress, or the etcd store has no quorum): writes are refused until one is elected\n";
  return `${head}${table}${lead}`;
}
