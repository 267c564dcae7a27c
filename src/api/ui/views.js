// What each panel shows, from the API's data: pure functions that return
// elements (the page, app.js, wires the buttons and replaces the panels).
import { progressChart } from "./chart.js";
import { ago, bytes, clock, dur, h } from "./dom.js";

/** @typedef {import("./types.js").HostView} HostView */
/** @typedef {import("./types.js").DeviceRow} DeviceRow */
/** @typedef {import("./types.js").VmView} VmView */
/** @typedef {import("./types.js").Migration} Migration */
/** @typedef {import("./types.js").Plan} Plan */
/** @typedef {import("./types.js").ControllerEvent} ControllerEvent */
/** @typedef {import("./chart.js").Sample} Sample */

/** The way a migration goes when all is well; others (cancel, rollback, migrate-back) show where they happened. */
export const MAIN_PHASES = ["planned", "begin", "prepare", "perform", "precheck", "switchover", "finish", "confirm", "done"];

/** @param {string} text @param {string} kind */
const badge = (text, kind) => h("span", { class: `badge ${kind}` }, text);

/** @param {string | null} outcome */
export function outcomeBadge(outcome) {
  return badge(outcome ?? "running", outcome ?? "running");
}

/** @param {HostView[]} hosts @param {DeviceRow[]} devices */
export function hostsView(hosts, devices) {
  if (hosts.length === 0) return h("p", { class: "empty" }, "No host has registered yet: start an agent ('ferry agent --config host.yaml').");
  return h(
    "div",
    { class: "hosts" },
    hosts.map((host) => {
      const mine = devices.filter((d) => d.host === host.name);
      /** @type {Map<string, DeviceRow[]>} */
      const byPf = new Map();
      for (const d of mine) byPf.set(d.pf, [...(byPf.get(d.pf) ?? []), d]);
      const used = mine.filter((d) => d.lease !== null).length;
      return h(
        "article",
        { class: `host ${host.state}`, "data-host": host.name },
        h("header", {}, h("h3", {}, host.name), badge(host.state, host.state), h("span", { class: "muted small" }, `${used}/${mine.length} VFs in use`)),
        host.vfs === null ? h("p", { class: "warn small" }, "its agent did not answer: VF use unknown") : null,
        [...byPf.entries()].map(([pf, vfs]) =>
          h(
            "div",
            { class: "pf", "data-pf": pf },
            h("div", { class: "pf-head" }, h("span", { class: "mono" }, `PF ${pf}`), h("span", { class: "net" }, vfs[0]?.network ?? ""), h("span", { class: "muted small" }, `${vfs.filter((v) => v.lease !== null).length}/${vfs.length}`)),
            h(
              "div",
              { class: "vfs" },
              vfs.map((v) =>
                h(
                  "span",
                  { class: `vf ${v.lease === null ? "free" : "used"}`, "data-vf": v.vf, "data-vm": v.vm ?? "", title: `${v.vf} (${v.model})${v.vm ? ` — ${v.vm}` : v.lease ? ` — leased: ${v.lease}` : " — free"}` },
                  v.vm ? v.vm.slice(0, 6) : "",
                ),
              ),
            ),
          ),
        ),
        (host.warnings ?? []).length > 0
          ? h("details", { class: "warnings" }, h("summary", {}, `${(host.warnings ?? []).length} warning(s) from the host check`), (host.warnings ?? []).map((w) => h("p", { class: "warn small" }, w)))
          : null,
      );
    }),
  );
}

/** @param {VmView[]} vms @param {Set<string>} busy VMs with a migration in flight @param {(vm: VmView) => void} onMigrate */
export function vmsView(vms, busy, onMigrate) {
  if (vms.length === 0) return h("p", { class: "empty" }, "No VM yet: 'ferry vm create' makes one.");
  return h(
    "table",
    { class: "vms" },
    h("thead", {}, h("tr", {}, ["VM", "state", "runs on", "size", "NICs", ""].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      vms.map((vm) =>
        h(
          "tr",
          { "data-vm": vm.name },
          h("td", {}, h("strong", {}, vm.name), vm.noOs ? h("span", { class: "muted small" }, " no OS") : null),
          h("td", {}, badge(vm.state, vm.state)),
          h("td", { class: "runs-on" }, vm.host),
          h("td", { class: "muted" }, `${vm.memoryMiB} MiB · ${vm.vcpus} vCPU`),
          h(
            "td",
            {},
            vm.nics.map((n) =>
              h(
                "div",
                { class: "nic", "data-nic": n.name },
                h("span", { class: "mono" }, n.name),
                " ",
                h("span", { class: "net" }, n.network),
                " ",
                h("span", { class: "muted small" }, `${n.mode}/${n.policy}`),
                " ",
                n.vf ? h("span", { class: "mono vfref" }, `VF ${n.vf}@${vm.host}`) : h("span", { class: "muted small" }, n.mode === "emulated" ? "emulated" : "no VF"),
              ),
            ),
          ),
          h("td", {}, h("button", { class: "migrate", disabled: busy.has(vm.name) || vm.state !== "running", onclick: () => onMigrate(vm) }, busy.has(vm.name) ? "migrating…" : "Migrate…")),
        ),
      ),
    ),
  );
}

/** The phases in the order they ran, then (while running) the main-path phases still ahead. @param {Migration} m */
export function timelineSteps(m) {
  const ran = Object.entries(m.timings)
    .filter(/** @returns {e is [string, import("./types.js").PhaseTiming]} */ (e) => e[1] !== undefined)
    .sort((a, b) => a[1].startedAt - b[1].startedAt)
    .map(([phase, t]) => ({ phase, t }));
  if (!ran.some((r) => r.phase === "planned")) ran.unshift({ phase: "planned", t: { startedAt: m.createdAt, endedAt: ran[0]?.t.startedAt ?? m.createdAt } });
  if (m.phase === "done") return ran.map((r) => ({ ...r, state: "reached" }));
  const lastMain = Math.max(...ran.map((r) => MAIN_PHASES.indexOf(r.phase)));
  const ahead = MAIN_PHASES.slice(lastMain + 1).map((phase) => ({ phase, t: undefined, state: "ahead" }));
  return [...ran.map((r) => ({ ...r, state: r.phase === m.phase ? "current" : "reached" })), ...ahead];
}

/** @param {Migration} m */
function timeline(m) {
  const steps = timelineSteps(m);
  const failed = m.outcome !== null && m.outcome !== "succeeded";
  return h(
    "ol",
    { class: "timeline" },
    steps.map((st) => {
      const ms = st.t ? (st.t.ms ?? (st.t.endedAt !== undefined ? st.t.endedAt - st.t.startedAt : st.state === "current" ? Date.now() - st.t.startedAt : undefined)) : undefined;
      const side = !MAIN_PHASES.includes(st.phase);
      const cls = ["tl-step", st.state, side ? "side" : "", st.phase === "done" ? `outcome-${m.outcome ?? "none"}` : "", failed && st.phase === "done" ? "bad" : ""].filter(Boolean).join(" ");
      return h("li", { class: cls, "data-phase": st.phase, title: st.t ? `started ${clock(st.t.startedAt)}` : "not yet" }, h("span", { class: "dot" }), h("span", { class: "name" }, st.phase), h("span", { class: "ms" }, st.phase === "done" ? (m.outcome ?? "") : ms === undefined ? "" : dur(ms)));
    }),
  );
}

/** @param {Migration} m */
function totalMs(m) {
  const start = m.timings["begin"]?.startedAt ?? m.createdAt;
  const end = m.timings["done"]?.startedAt;
  return end === undefined ? Date.now() - start : end - start;
}

/** @param {Migration} m */
function vfMoves(m) {
  return m.plan.nics
    .filter((n) => n.mode !== "emulated")
    .map((n) => {
      const now = m.nics.find((x) => x.name === n.name);
      const before = n.before ? `${n.before.vf}@${n.before.host}` : "none";
      const after = m.phase === "done" ? (now?.vf ? `${now.vf.vf}@${now.vf.host}` : `none (${now?.status ?? "?"})`) : n.after ? `${n.after.vf}@${n.after.host} (planned)` : "none";
      return h("div", { class: "vfmove", "data-nic": n.name }, h("span", { class: "mono" }, n.name), " ", h("span", { class: "mono" }, before), " → ", h("span", { class: "mono after" }, after));
    });
}

/**
 * A migration in flight (or just ended): timeline, chart, numbers, cancel.
 * @param {Migration} m @param {Sample[]} samples @param {(m: Migration) => void} onCancel
 */
export function migrationCard(m, samples, onCancel) {
  const p = m.progress;
  const last = samples[samples.length - 1];
  const running = m.phase !== "done";
  const stats = [
    ["phase", m.phase],
    ["elapsed", dur(totalMs(m))],
    ["RAM sent", p ? `${Math.round((p.transferredBytes / Math.max(1, p.totalBytes)) * 100)}%` : last ? `${Math.round(last.pct)}%` : "–"],
    ["rate", p ? `${Math.round(p.mbps)} Mbit/s` : last ? `${Math.round(last.mbps)} Mbit/s` : "–"],
    ["remaining", p ? bytes(p.remainingBytes) : "–"],
    ["dirty pages/s", p ? String(Math.round(p.dirtyPagesRate)) : "–"],
    ["downtime", m.switchover ? dur(m.switchover.downtimeMs) : m.pausedMs !== undefined ? `${dur(m.pausedMs)} paused` : "–"],
  ];
  return h(
    "article",
    { class: `migration ${running ? "running" : "ended"}`, "data-migration": m.id, "data-phase": m.phase },
    h(
      "header",
      {},
      h("h3", {}, m.plan.vm.name, h("span", { class: "arrow" }, ` ${m.plan.source.host} → ${m.plan.destination.host}`)),
      outcomeBadge(m.outcome),
      m.cancelRequested && running ? badge("cancel requested", "warn") : null,
      m.measuring ? h("span", { class: "muted small" }, "measuring connectivity…") : null,
      h("span", { class: "mono muted small id" }, m.id),
      running && !m.pastPointOfNoReturn && !m.cancelRequested ? h("button", { class: "cancel danger", onclick: () => onCancel(m) }, "Cancel") : null,
    ),
    timeline(m),
    h(
      "div",
      { class: "mig-body" },
      h(
        "div",
        { class: "chart-box" },
        progressChart(samples, running ? "waiting for the RAM copy…" : "no RAM progress sampled"),
        h("div", { class: "legend" }, h("span", { class: "pct" }, "guest RAM sent"), h("span", { class: "rate" }, `stream rate (top: ${Math.round(Math.max(0, ...samples.map((x) => x.mbps)))} Mbit/s)`), h("span", {}, `${samples.length} samples`)),
      ),
      h(
        "div",
        { class: "mig-side" },
        h("dl", { class: "stats" }, stats.flatMap(([k, v]) => [h("dt", {}, k ?? ""), h("dd", {}, v ?? "")])),
        h("div", { class: "vfmoves" }, h("div", { class: "muted small" }, "VF before → after"), vfMoves(m)),
      ),
    ),
    m.reason && !running ? h("p", { class: `reason ${m.outcome === "succeeded" ? "muted" : "warn"} small` }, `${m.outcome ?? ""}: ${m.reason}`) : null,
  );
}

/** @param {Migration} m */
function gaps(m) {
  if (m.connectivity) {
    return Object.entries(m.connectivity).map(([nic, c]) => h("div", { class: "small" }, h("span", { class: "mono" }, nic), ` ${dur(c.longestGapMs)}`, c.lost > 0 ? h("span", { class: "muted" }, ` (${c.lost}/${c.probes} lost)`) : null));
  }
  return m.measuring ? h("span", { class: "muted small" }, "measuring…") : h("span", { class: "muted" }, "–");
}

/** Finished migrations, newest first. @param {Migration[]} done */
export function historyView(done) {
  if (done.length === 0) return h("p", { class: "empty" }, "No migration has ended yet.");
  return h(
    "table",
    { class: "history" },
    h("thead", {}, h("tr", {}, ["ended", "VM", "from → to", "outcome", "took", "downtime", "longest gap", "VF before → after", "why"].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      done.map((m) =>
        h(
          "tr",
          { "data-migration": m.id },
          h("td", { class: "muted small", title: m.id }, ago(m.timings["done"]?.startedAt ?? m.updatedAt)),
          h("td", {}, h("strong", {}, m.plan.vm.name)),
          h("td", {}, `${m.plan.source.host} → ${m.plan.destination.host}`),
          h("td", {}, outcomeBadge(m.outcome)),
          h("td", {}, dur(totalMs(m))),
          h("td", {}, m.switchover ? dur(m.switchover.downtimeMs) : m.pausedMs !== undefined ? `${dur(m.pausedMs)} paused` : "–"),
          h("td", {}, gaps(m)),
          h("td", { class: "small" }, vfMoves(m)),
          h("td", { class: "small muted reason" }, m.refused ? `refused: ${m.reason ?? ""}` : (m.reason ?? "")),
        ),
      ),
    ),
  );
}

/** One line of text per event. @param {ControllerEvent} e */
export function eventText(e) {
  const mig = e.migrationId ? `${e.migrationId} ` : "";
  switch (e.type) {
    case "phase":
      return `${mig}${e.from ?? "?"} → ${e.to ?? "?"}`;
    case "outcome":
      return `${mig}${e.outcome ?? "?"}: ${e.reason ?? ""}`;
    case "step":
    case "step-failed":
      return `${mig}${e.step ?? ""}${e.message ? `: ${e.message}` : ""}`;
    case "nic-degraded":
    case "nic-missing":
      return `${mig}${e.nic ?? ""}${e.message ? `: ${e.message}` : ""}`;
    case "warning":
      return `${mig}${e.text ?? ""}`;
    default:
      return [e.vm, e.host, e.reason].filter(Boolean).join(" · ") || mig;
  }
}

/** @param {ControllerEvent[]} events newest first */
export function eventsView(events) {
  if (events.length === 0) return h("p", { class: "empty" }, "No event yet.");
  return h(
    "ol",
    { class: "events" },
    events.map((e) => h("li", { class: `ev ev-${e.type}`, "data-type": e.type, "data-seq": e.seq }, h("span", { class: "mono muted" }, clock(e.at)), h("span", { class: "ev-type" }, e.type), h("span", { class: "ev-text" }, eventText(e)))),
  );
}

/** The plan dialog's body. @param {Plan} plan */
export function planView(plan) {
  return h(
    "div",
    { class: "plan" },
    plan.message ? h("p", { class: "warn" }, plan.message) : null,
    plan.destinations.length === 0
      ? h("p", { class: "warn" }, "No host can take this VM now.")
      : h(
          "table",
          { class: "destinations" },
          h("thead", {}, h("tr", {}, ["#", "host", "score", "NICs", "why"].map((t) => h("th", {}, t)))),
          h(
            "tbody",
            {},
            plan.destinations.map((d) =>
              h(
                "tr",
                { "data-destination": d.host },
                h("td", {}, d.rank),
                h("td", {}, h("strong", {}, d.host), d.complete ? null : h("span", { class: "warn small" }, " incomplete")),
                h("td", {}, d.score.toFixed(0)),
                h("td", { class: "small" }, d.nics.map((n) => h("div", {}, h("span", { class: "mono" }, n.nic), " ", n.vf ? h("span", { class: "mono" }, n.vf.vf) : null, " ", h("span", { class: "muted" }, n.note)))),
                h("td", { class: "small muted" }, d.explanation),
              ),
            ),
          ),
        ),
    plan.rejections.length > 0 ? h("div", { class: "rejections" }, h("h4", {}, "Hosts that cannot take it"), h("ul", {}, plan.rejections.map((r) => h("li", { "data-rejected": r.host }, h("strong", {}, r.host), " ", h("span", { class: "mono small" }, r.code), " ", r.message)))) : null,
  );
}
