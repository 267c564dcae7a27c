// The dashboard page: token login (kept in this tab's sessionStorage), the
// panels kept current by server-sent events — the controller's stream (each
// event refreshes what it may have changed) and, for each migration in
// flight, its own stream (phases, QEMU's RAM progress for the chart, the
// settled record at the end) — with a slow poll (30 s; ?poll=SECONDS) for
// what no event tells; the migrate dialog (the plan first, then confirm) and
// cancel.
import { Api, ApiError } from "./api.js";
import { fill, h } from "./dom.js";
import { eventsView, historyView, hostsView, migrationCard, planView, vmsView } from "./views.js";

/** @typedef {import("./types.js").HostView} HostView */
/** @typedef {import("./types.js").DeviceRow} DeviceRow */
/** @typedef {import("./types.js").VmView} VmView */
/** @typedef {import("./types.js").Migration} Migration */
/** @typedef {import("./types.js").ControllerEvent} ControllerEvent */
/** @typedef {import("./types.js").MigrationStreamEvent} MigrationStreamEvent */
/** @typedef {import("./chart.js").Sample} Sample */

const TOKEN_KEY = "ferry.token";
/** An ended migration stays among the ones in flight this long (ms), with its final timeline. */
const RECENT_MS = 5 * 60_000;
/** The fallback poll of every panel (events keep them current in between); ?poll=SECONDS sets it. */
const REFRESH_DEFAULT_S = 30;
const REFRESH_MAX_S = 86_400;
/** An ended migration's connectivity is still measured (no event tells when it is written): its record is asked again this often. */
const MEASURING_POLL_MS = 3_000;
const MAX_EVENTS = 200;

/** The fallback poll's period in ms, from ?poll=SECONDS (whole seconds, 1…86400), and what was wrong with it. */
function refreshPeriod() {
  const raw = new URLSearchParams(location.search).get("poll");
  if (raw === null) return { ms: REFRESH_DEFAULT_S * 1000, problem: null };
  const n = /^[0-9]{1,6}$/.test(raw) ? Number(raw) : NaN;
  if (n >= 1 && n <= REFRESH_MAX_S) return { ms: n * 1000, problem: null };
  return { ms: REFRESH_DEFAULT_S * 1000, problem: `?poll=${raw} ignored: give whole seconds from 1 to ${REFRESH_MAX_S} (the panels are refreshed every ${REFRESH_DEFAULT_S} s besides the events)` };
}

/** @param {string} id @returns {HTMLElement} */
function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el;
}

/**
 * The newer of two views of a migration: a poll or a list may answer after an
 * event already moved the phase on (the record's version grows at every step).
 * @param {Migration | undefined} cur @param {Migration} next
 */
function newer(cur, next) {
  if (!cur) return next;
  // an event may have moved the phase past what a later record version still says (the record is written after the event)
  if (phaseFromEvent.has(cur) && PHASE_ORDER.indexOf(next.phase) < PHASE_ORDER.indexOf(cur.phase)) return cur;
  if (next.version > cur.version) return next;
  return next.version === cur.version && !phaseFromEvent.has(cur) ? next : cur;
}
/** Phases in the order a migration passes them (a path never goes back in this list). */
const PHASE_ORDER = ["planned", "begin", "prepare", "perform", "precheck", "switchover", "finish", "confirm", "migrate-back", "cancel", "rollback-destination", "rollback-source", "done"];
/** Records whose phase an event moved past what the record said. @type {WeakSet<Migration>} */
const phaseFromEvent = new WeakSet();

const state = {
  /** @type {Api | null} */ api: null,
  /** @type {HostView[]} */ hosts: [],
  /** @type {DeviceRow[]} */ devices: [],
  /** @type {VmView[]} */ vms: [],
  /** @type {Migration[]} */ migrations: [],
  /** @type {ControllerEvent[]} */ events: [],
  /** @type {Map<string, Sample[]>} */ samples: new Map(),
  /** Migrations this page saw running (they stay shown when they end). @type {Set<string>} */ watched: new Set(),
  /** @type {AbortController | null} */ stop: null,
  /** @type {ReturnType<typeof setTimeout> | null} */ refreshTimer: null,
  /** Migrations whose own stream this page reads. @type {Set<string>} */ following: new Set(),
  /** Ended migrations whose connectivity is still measured, asked again soon. @type {Set<string>} */ measuring: new Set(),
};

// ---- login

function showLogin(/** @type {string} */ message = "") {
  byId("dash").hidden = true;
  byId("login").hidden = false;
  byId("login-error").textContent = message;
  /** @type {HTMLInputElement} */ (byId("token")).focus();
}

/** @param {string} token */
async function signIn(token) {
  const api = new Api(token);
  try {
    await api.hosts();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("The controller refused this token. Use the one in the controller's tokenFile (a lab's: /var/tmp/ferry-lab/<lab>/controller-token).");
      return;
    }
    showLogin(`Cannot reach the controller: ${e instanceof Error ? e.message : String(e)}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  state.api = api;
  byId("login").hidden = true;
  byId("dash").hidden = false;
  byId("where").textContent = location.host;
  state.stop = new AbortController();
  const period = refreshPeriod();
  if (period.problem) toast(period.problem, "bad");
  await refresh();
  void followEvents(api, state.stop.signal);
  const every = setInterval(() => void refresh(), period.ms);
  // the running phase's clock ticks on the page (no request)
  const tick = setInterval(() => {
    if (state.migrations.some((m) => m.phase !== "done")) renderMigrations();
  }, 1000);
  state.stop.signal.addEventListener("abort", () => {
    clearInterval(every);
    clearInterval(tick);
  });
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.stop?.abort();
  state.api = null;
  state.events = [];
  state.following.clear();
  state.measuring.clear();
  showLogin("Signed out.");
}

// ---- data

async function refresh() {
  const api = state.api;
  if (!api) return;
  try {
    const [hosts, devices, vms, listed] = await Promise.all([api.hosts(), api.devices(), api.vms(), api.migrations()]);
    const migrations = listed.map((m) => newer(state.migrations.find((x) => x.id === m.id), m));
    Object.assign(state, { hosts, devices, vms, migrations });
    for (const m of migrations) if (m.phase !== "done") state.watched.add(m.id);
    render();
    for (const m of migrations) if (m.phase !== "done") followMigration(api, m.id);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signOut();
    toast(`refresh failed: ${e instanceof Error ? e.message : String(e)}`, "bad");
  }
}

/** Refresh soon (events come in bursts). */
function refreshSoon() {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => {
    state.refreshTimer = null;
    void refresh();
  }, 150);
}

/**
 * One point of the chart from a progress event (its time: the controller's
 * sample, from perform's start). @param {Migration} m @param {Extract<MigrationStreamEvent, { type: "progress" }>} p
 */
function sample(m, p) {
  const start = m.timings["perform"]?.startedAt;
  if (start === undefined || p.totalBytes <= 0) return;
  const list = state.samples.get(m.id) ?? [];
  list.push({ t: Math.max(0, p.at - start), pct: (100 * p.transferredBytes) / p.totalBytes, mbps: p.mbps, remaining: p.remainingBytes });
  state.samples.set(m.id, list);
}

/** The switchover sent the rest: all RAM is there when it completed (the chart's last point). @param {Migration} m */
function completeSamples(m) {
  const list = state.samples.get(m.id);
  const start = m.timings["perform"]?.startedAt;
  const sw = m.timings["switchover"]?.endedAt;
  const last = list?.[list.length - 1];
  if (!list || !last || start === undefined || sw === undefined || !m.switchover || last.pct === 100) return;
  list.push({ t: sw - start, pct: 100, mbps: last.mbps, remaining: 0 });
}

/**
 * A migration's phase moved on (its stream told it): the record, on a copy,
 * with that phase begun and the one before ended. A phase already there (a
 * replay after the page had it) changes nothing.
 * @param {Migration} m @param {Extract<MigrationStreamEvent, { type: "phase" }>} e @returns {Migration}
 */
function withPhase(m, e) {
  if (m.timings[e.to] !== undefined || PHASE_ORDER.indexOf(e.to) <= PHASE_ORDER.indexOf(m.phase)) return m;
  const timings = { ...m.timings, [e.to]: { startedAt: e.at } };
  const from = e.from === null ? undefined : m.timings[e.from];
  if (e.from !== null && from && from.endedAt === undefined) timings[e.from] = { ...from, endedAt: e.at, ms: e.at - from.startedAt };
  // the phase's progress figures belong to perform only
  const { progress, ...rest } = m;
  const moved = { ...rest, phase: e.to, timings, ...(e.to === "perform" && progress ? { progress } : {}) };
  phaseFromEvent.add(moved);
  return moved;
}

/** @param {string} id @param {(m: Migration) => Migration} change */
function update(id, change) {
  const i = state.migrations.findIndex((x) => x.id === id);
  const m = state.migrations[i];
  if (!m) return;
  state.migrations[i] = change(m);
  renderMigrations();
}

/**
 * Reads migration `id`'s own stream while it runs (once per migration): the
 * timeline moves with each phase, the chart with each progress sample, and
 * the settled record at `end` replaces the page's copy.
 * @param {Api} api @param {string} id
 */
function followMigration(api, id) {
  if (state.following.has(id) || !state.stop) return;
  state.following.add(id);
  const signal = state.stop.signal;
  api
    .followMigration(
      id,
      (e) => {
        if (e.type === "phase") update(id, (m) => withPhase(m, e));
        else if (e.type === "progress") {
          update(id, (m) => {
            sample(m, e);
            return m.phase === "perform" ? { ...m, progress: e } : m;
          });
        } else if (e.type === "outcome") update(id, (m) => (m.outcome === null ? { ...m, outcome: e.outcome, reason: e.reason, code: e.code } : m));
        else if (e.type === "cancel-requested") update(id, (m) => ({ ...m, cancelRequested: true }));
        else if (e.type === "end") {
          update(id, (m) => (e.migration.version >= m.version || phaseFromEvent.has(m) ? e.migration : m));
          if (e.migration.measuring) watchMeasuring(api, id);
          refreshSoon(); // the VM's host and VFs, the hosts' occupancy, the history
        }
      },
      signal,
    )
    .catch((/** @type {unknown} */ e) => {
      if (e instanceof ApiError && e.status === 401) signOut();
    })
    .finally(() => state.following.delete(id));
}

/**
 * An ended migration whose NICs are still watched: no event tells when its
 * connectivity figures are written, so its record is asked every
 * MEASURING_POLL_MS until they are (for the history's gaps).
 * @param {Api} api @param {string} id
 */
function watchMeasuring(api, id) {
  if (state.measuring.has(id) || !state.stop) return;
  state.measuring.add(id);
  const signal = state.stop.signal;
  const again = () => {
    if (signal.aborted || state.api !== api) return;
    api.migration(id).then(
      (m) => {
        update(id, (cur) => newer(cur, m));
        if (m.measuring) setTimeout(again, MEASURING_POLL_MS);
        else {
          state.measuring.delete(id);
          render();
        }
      },
      () => state.measuring.delete(id),
    );
  };
  setTimeout(again, MEASURING_POLL_MS);
}

/** @param {Api} api @param {AbortSignal} signal */
async function followEvents(api, signal) {
  const live = byId("live");
  try {
    await api.followEvents(
      (e) => {
        state.events.unshift(e);
        state.events.length = Math.min(state.events.length, MAX_EVENTS);
        // a known migration's steps come on its own stream (followMigration); a new one is listed by a refresh
        const known = e.migrationId !== undefined && state.following.has(e.migrationId);
        if (!known || e.type === "outcome") refreshSoon();
        fill(byId("events"), eventsView(state.events));
      },
      (on, why) => {
        live.className = on ? "live on" : "live off";
        live.textContent = on ? "events live" : "events reconnecting…";
        live.title = why ?? "";
      },
      signal,
    );
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) signOut();
  }
}

// ---- rendering

function render() {
  fill(byId("hosts"), hostsView(state.hosts, state.devices));
  const busy = new Set(state.migrations.filter((m) => m.phase !== "done").map((m) => m.plan.vm.name));
  fill(byId("vms"), vmsView(state.vms, busy, openMigrate));
  renderMigrations();
  const done = state.migrations.filter((m) => m.phase === "done").sort((a, b) => (b.timings["done"]?.startedAt ?? b.updatedAt) - (a.timings["done"]?.startedAt ?? a.updatedAt));
  fill(byId("history"), historyView(done));
  fill(byId("events"), eventsView(state.events));
}

function renderMigrations() {
  const now = Date.now();
  const shown = state.migrations
    .filter((m) => m.phase !== "done" || (state.watched.has(m.id) && now - (m.timings["done"]?.startedAt ?? m.updatedAt) < RECENT_MS))
    .sort((a, b) => b.createdAt - a.createdAt);
  for (const m of shown) completeSamples(m);
  byId("inflight-count").textContent = String(state.migrations.filter((m) => m.phase !== "done").length);
  fill(byId("migrations"), shown.length === 0 ? h("p", { class: "empty" }, "No migration in flight. Press “Migrate…” on a VM to plan one.") : shown.map((m) => migrationCard(m, state.samples.get(m.id) ?? [], (x) => void cancelMigration(x))));
}

/** @param {string} text @param {string} kind */
function toast(text, kind = "") {
  const el = h("div", { class: `toast ${kind}` }, text);
  byId("toasts").append(el);
  setTimeout(() => el.remove(), 5000);
}

// ---- actions

/** @param {Migration} m */
async function cancelMigration(m) {
  if (!state.api || !confirm(`Cancel migration ${m.id} of ${m.plan.vm.name}? Before switchover the VM stays on ${m.plan.source.host}.`)) return;
  toast(`cancelling ${m.id}…`);
  try {
    const r = await state.api.cancel(m.id);
    toast(`${r.result}: ${r.message}`, r.result === "cancelled" ? "ok" : "");
  } catch (e) {
    toast(`cancel failed: ${e instanceof Error ? e.message : String(e)}`, "bad");
  }
  await refresh();
}

/** The migrate dialog: choose a destination (or the scheduler's best), see the plan, confirm. @param {VmView} vm */
function openMigrate(vm) {
  const api = state.api;
  if (!api) return;
  const dialog = /** @type {HTMLDialogElement} */ (byId("migrate-dialog"));
  const select = /** @type {HTMLSelectElement} */ (h("select", { id: "migrate-to" }, h("option", { value: "" }, "best host (scheduler)"), state.hosts.filter((x) => x.name !== vm.host).map((x) => h("option", { value: x.name }, `${x.name} (${x.state})`))));
  const body = h("div", { class: "plan-box" });
  const confirmBtn = /** @type {HTMLButtonElement} */ (h("button", { class: "primary", id: "migrate-confirm", disabled: true }, "Migrate"));
  /** @type {string | null} */
  let dest = null;
  const plan = async () => {
    dest = null;
    confirmBtn.disabled = true;
    confirmBtn.textContent = "Migrate";
    fill(body, h("p", { class: "muted" }, "Planning…"));
    try {
      const p = await api.plan(vm.name, select.value || undefined);
      fill(body, planView(p));
      const best = p.destinations[0];
      if (best) {
        dest = best.host;
        confirmBtn.disabled = false;
        confirmBtn.textContent = `Migrate ${vm.name} to ${best.host}`;
      }
    } catch (e) {
      fill(body, h("p", { class: "warn" }, e instanceof ApiError ? `${e.code}: ${e.message}` : String(e)));
    }
  };
  select.addEventListener("change", () => void plan());
  confirmBtn.addEventListener("click", () => {
    if (!dest) return;
    const to = dest;
    confirmBtn.disabled = true;
    confirmBtn.textContent = "Starting…";
    api.migrate(vm.name, to).then(
      (m) => {
        state.watched.add(m.id);
        dialog.close();
        toast(`migration ${m.id} of ${vm.name} to ${to} started`, "ok");
        void refresh();
      },
      (/** @type {unknown} */ e) => {
        fill(body, h("p", { class: "warn" }, e instanceof ApiError ? `${e.code}: ${e.message}` : String(e)));
        confirmBtn.textContent = "Migrate";
      },
    );
  });
  fill(
    dialog,
    h(
      "form",
      { method: "dialog", class: "dialog" },
      h("h2", {}, `Migrate ${vm.name}`, h("span", { class: "muted" }, ` from ${vm.host}`)),
      h("label", {}, "Destination ", select),
      h("p", { class: "muted small" }, "The plan below is only a plan: nothing moves until you confirm."),
      body,
      h("div", { class: "actions" }, h("button", { value: "cancel", class: "ghost" }, "Close"), confirmBtn),
    ),
  );
  confirmBtn.type = "button";
  dialog.showModal();
  void plan();
}

// ---- start

byId("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = /** @type {HTMLInputElement} */ (byId("token")).value.trim();
  if (token === "") return showLogin("Paste the controller's token.");
  void signIn(token);
});
byId("signout").addEventListener("click", signOut);

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) void signIn(saved);
else showLogin();
