// The dashboard page: token login (kept in this tab's sessionStorage), the
// panels kept current by the event stream (each event refreshes what it may
// have changed) and by polling the migrations in flight for their RAM
// progress, the migrate dialog (the plan first, then confirm) and cancel.
import { Api, ApiError } from "./api.js";
import { fill, h } from "./dom.js";
import { eventsView, historyView, hostsView, migrationCard, planView, vmsView } from "./views.js";

/** @typedef {import("./types.js").HostView} HostView */
/** @typedef {import("./types.js").DeviceRow} DeviceRow */
/** @typedef {import("./types.js").VmView} VmView */
/** @typedef {import("./types.js").Migration} Migration */
/** @typedef {import("./types.js").ControllerEvent} ControllerEvent */
/** @typedef {import("./chart.js").Sample} Sample */

const TOKEN_KEY = "ferry.token";
/** An ended migration stays among the ones in flight this long (ms), with its final timeline. */
const RECENT_MS = 5 * 60_000;
/** How often the page asks a running migration's record: often while RAM streams (the chart), less otherwise. */
const POLL_PERFORM_MS = 120;
const POLL_RUNNING_MS = 400;
const REFRESH_MS = 5_000;
const MAX_EVENTS = 200;

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
  if (next.version > cur.version) return next;
  return next.version === cur.version && !phaseFromEvent.has(cur) ? next : cur;
}
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
  polling: false,
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
  await refresh();
  void followEvents(api, state.stop.signal);
  const every = setInterval(() => void refresh(), REFRESH_MS);
  state.stop.signal.addEventListener("abort", () => clearInterval(every));
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.stop?.abort();
  state.api = null;
  state.events = [];
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
    if (migrations.some((m) => m.phase !== "done")) void pollRunning();
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

/** @param {Migration} m */
function sample(m) {
  const start = m.timings["perform"]?.startedAt;
  if (start === undefined) return;
  const list = state.samples.get(m.id) ?? [];
  const p = m.progress;
  if (p && p.totalBytes > 0) list.push({ t: Date.now() - start, pct: (100 * p.transferredBytes) / p.totalBytes, mbps: p.mbps, remaining: p.remainingBytes });
  state.samples.set(m.id, list);
  completeSamples(m);
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

/** While migrations run: each one's record every POLL_RUNNING_MS (RAM progress, phase times). */
async function pollRunning() {
  if (state.polling || !state.api) return;
  state.polling = true;
  const api = state.api;
  try {
    for (;;) {
      const running = state.migrations.filter((m) => m.phase !== "done");
      if (running.length === 0 || state.api !== api) break;
      const fresh = await Promise.all(running.map((m) => api.migration(m.id).catch(() => m)));
      for (const m of fresh) {
        const i = state.migrations.findIndex((x) => x.id === m.id);
        const kept = newer(state.migrations[i], m);
        if (kept === m) sample(m);
        if (i >= 0) state.migrations[i] = kept;
      }
      renderMigrations();
      if (fresh.some((m) => m.phase === "done")) await refresh();
      const streaming = state.migrations.some((m) => m.phase === "perform");
      await new Promise((r) => setTimeout(r, streaming ? POLL_PERFORM_MS : POLL_RUNNING_MS));
    }
  } finally {
    state.polling = false;
  }
}

/** @param {Api} api @param {AbortSignal} signal */
async function followEvents(api, signal) {
  const live = byId("live");
  try {
    await api.followEvents(
      (e) => {
        state.events.unshift(e);
        state.events.length = Math.min(state.events.length, MAX_EVENTS);
        if (e.type === "phase" && e.migrationId) {
          const i = state.migrations.findIndex((x) => x.id === e.migrationId);
          const m = state.migrations[i];
          if (m && e.to && e.from === m.phase) {
            // the step the event tells, on a copy: the next poll's record (a higher version) replaces it
            const timings = { ...m.timings, [e.to]: { startedAt: e.at } };
            const from = m.timings[e.from];
            if (from) timings[e.from] = { ...from, endedAt: e.at, ms: e.at - from.startedAt };
            const moved = { ...m, phase: e.to, timings };
            phaseFromEvent.add(moved);
            state.migrations[i] = moved;
            renderMigrations();
          }
          if (!m || e.to === "done") refreshSoon();
        } else refreshSoon();
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
