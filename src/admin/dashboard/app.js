// The sluice dashboard: pools, a chart per pool, sessions, events and the
// peaks question, from the admin API. The admin token is asked once, kept in
// sessionStorage (this tab only) and sent as `Authorization: Bearer`, never in
// a URL. Live data comes from GET /api/v1/stream (Server-Sent Events, read
// with fetch() because EventSource cannot send a header); the history from
// /api/v1/history/*. Everything shown is set through textContent: tenant
// names, request ids and user agents are data, never markup.
"use strict";

const TOKEN_KEY = "sluice.adminToken";
const LIVE_SECONDS = 3600;
const STALL_MS = 5000; // no frame for this long: reconnect (the gateway sends one a second)

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  view: "pools",
  pools: [],
  sessions: [],
  ready: true,
  events: new Map(), // id -> event
  charts: new Map(), // pool -> {plot, el, data, pending}
  range: "live",
  streamAbort: null,
  historyEnabled: true,
  peaks: null,
  stopped: false, // the gateway said it stopped (event: end)
};

// ---- small helpers ----------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c == null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const $ = (sel) => document.querySelector(sel);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fmtSeconds(s) {
  if (s == null || Number.isNaN(s)) return "–";
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} m`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

function setStatus(text, kind) {
  const s = $("#status");
  s.textContent = text;
  s.className = `status ${kind || ""}`;
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    cache: "no-store",
    headers: { ...(options.headers || {}), Authorization: `Bearer ${state.token}` },
  });
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { message: text };
  }
  if (res.status === 401) throw new Unauthorized((body && body.message) || "unauthorized");
  if (!res.ok) {
    const err = new Error((body && body.message) || `HTTP ${res.status}`);
    err.status = res.status;
    err.code = body && body.error;
    throw err;
  }
  return body;
}

function handleError(err) {
  if (err instanceof Unauthorized) logout("The gateway refused the token.");
  else console.error(err);
}

// ---- login ------------------------------------------------------------------

async function login(token) {
  state.token = token;
  try {
    await api("/api/v1/pools");
  } catch (err) {
    state.token = "";
    $("#login-error").textContent =
      err instanceof Unauthorized ? "The gateway refused this token." : `Cannot reach the gateway: ${err.message}`;
    return false;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#login-view").hidden = true;
  $("#tabs").hidden = false;
  $("#logout").hidden = false;
  showView(state.view);
  start();
  return true;
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = "";
  if (state.streamAbort) state.streamAbort.abort();
  state.streamAbort = null;
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("#tabs").hidden = true;
  $("#logout").hidden = true;
  $("#login-view").hidden = false;
  $("#login-error").textContent = message || "";
  $("#token").value = "";
  setStatus("", "");
}

function showView(view) {
  state.view = view;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === view);
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `${view}-view`;
  if (view === "pools") for (const c of state.charts.values()) resizeChart(c);
}

// ---- the live stream ----------------------------------------------------------

async function start() {
  loadEvents().catch(handleError);
  if (state.range === "live") loadLiveHistory().catch(handleError);
  runStream();
}

async function runStream() {
  while (state.token) {
    const ctrl = new AbortController();
    state.streamAbort = ctrl;
    let last = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - last > STALL_MS) ctrl.abort();
    }, 1000);
    try {
      const res = await fetch("/api/v1/stream", {
        headers: { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" },
        signal: ctrl.signal,
        cache: "no-store",
      });
      if (res.status === 401) {
        logout("The gateway refused the token.");
        return;
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      setStatus("live", "ok");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        last = Date.now();
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          handleFrame(frame);
        }
      }
    } catch (err) {
      if (!state.token) return;
      if (!ctrl.signal.aborted) console.warn("stream:", err);
    } finally {
      clearInterval(watchdog);
    }
    if (!state.token || state.streamAbort !== ctrl) return;
    setStatus(state.stopped ? "the gateway stopped · reconnecting…" : "reconnecting…", "warn");
    await sleep(2000);
  }
}

function handleFrame(frame) {
  let type = "message";
  let data = "";
  for (const line of frame.split("\n")) {
    if (line.startsWith("event:")) type = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trimStart();
  }
  if (!data) return;
  const body = JSON.parse(data);
  if (type === "snapshot") onSnapshot(body);
  else if (type === "event") onEvent(body, true);
  else if (type === "end") {
    state.stopped = true;
    setStatus("the gateway stopped", "warn");
  }
}

function onSnapshot(snap) {
  state.stopped = false;
  state.pools = snap.pools || [];
  state.sessions = snap.sessions || [];
  state.ready = snap.ready;
  setStatus(snap.ready ? "live" : "live · draining", snap.ready ? "ok" : "warn");
  renderPools();
  renderSessions();
  const t = Date.parse(snap.time) / 1000 || Date.now() / 1000;
  for (const p of state.pools) {
    const c = ensureChart(p.name);
    if (state.range === "live") appendPoint(c, t, p);
  }
}

// ---- pools --------------------------------------------------------------------

function renderPools() {
  const body = $("#pools-table tbody");
  body.replaceChildren(
    ...state.pools.map((p) => {
      const tenants = Object.entries(p.tenants || {})
        .sort((a, b) => b[1] - a[1])
        .map(([t, n]) => `${t}: ${n}`)
        .join(", ");
      let delay = "none yet";
      if (p.release_delay_source === "configured") delay = `${p.release_delay_seconds} s (configured)`;
      else if (p.release_delay_source === "learned")
        delay = `${p.release_delay_seconds} s (learned, ${p.release_delay_lower_seconds ?? "?"}–${p.release_delay_upper_seconds ?? "?"} s)`;
      const full = p.in_use >= p.effective_limit;
      return el(
        "tr",
        { "data-pool": p.name, class: full ? "full" : null },
        el("td", { text: p.name }),
        el("td", { class: "num in-use", text: p.in_use }),
        el("td", { class: `num${p.effective_limit < p.limit ? " lowered" : ""}`, text: p.effective_limit }),
        el("td", { class: "num", text: p.limit }),
        el("td", { class: "num", text: p.queued }),
        el("td", { text: tenants || "–" }),
        el("td", { text: delay }),
        el("td", { class: "num", text: p.upstream_429_total }),
        el("td", { class: "num", text: p.refused_total }),
      );
    }),
  );
  const names = state.pools.map((p) => p.name);
  fillSelect($("#f-pool"), names);
  fillSelect($("#peaks-pool"), names);
}

function fillSelect(select, values) {
  const have = [...select.options].map((o) => o.value).filter((v) => v);
  if (have.join("\n") === values.join("\n")) return;
  const keep = select.value;
  select.replaceChildren(el("option", { value: "", text: "all" }), ...values.map((v) => el("option", { value: v, text: v })));
  select.value = values.includes(keep) ? keep : "";
}

// ---- charts -------------------------------------------------------------------

function emptyData() {
  return [[], [], [], [], [], []]; // time, open, limit, effective limit, 429 markers, refusal markers
}

function ensureChart(pool) {
  let c = state.charts.get(pool);
  if (c) return c;
  const box = el("div", { class: "chart", id: `chart-${pool}`, "data-pool": pool, "data-open": 0, "data-max": 0 });
  box.append(el("h3", { text: `pool ${pool}: streams open` }));
  const plotEl = el("div");
  box.append(plotEl);
  $("#charts").append(box);
  c = { pool, box, plotEl, data: emptyData(), pending: { m429: null, refusal: null }, plot: null };
  const width = Math.max(400, $("#charts").clientWidth || 900);
  // Counts and limits hold until the next point: steps, not slopes.
  const stepped = uPlot.paths.stepped({ align: 1 });
  c.plot = new uPlot(
    {
      width,
      height: 220,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max) * 1.15] } },
      series: [
        {},
        { label: "open", stroke: "#2563eb", fill: "rgba(37,99,235,0.12)", width: 2, paths: stepped },
        { label: "limit", stroke: "#b91c1c", dash: [8, 4], width: 1.5, paths: stepped },
        { label: "effective limit", stroke: "#d97706", dash: [3, 3], width: 1.5, paths: stepped },
        { label: "upstream 429", stroke: "#dc2626", paths: () => null, points: { show: true, size: 11, fill: "#dc2626" } },
        { label: "refusal", stroke: "#7c3aed", paths: () => null, points: { show: true, size: 9, fill: "#7c3aed" } },
      ],
      axes: [{}, { label: "streams" }],
    },
    c.data,
    plotEl,
  );
  state.charts.set(pool, c);
  return c;
}

function resizeChart(c) {
  const w = Math.max(400, $("#charts").clientWidth || 900);
  if (c.plot && c.plot.width !== w) c.plot.setSize({ width: w, height: 220 });
}

function appendPoint(c, t, p) {
  const d = c.data;
  d[0].push(t);
  d[1].push(p.in_use);
  d[2].push(p.limit);
  d[3].push(p.effective_limit);
  d[4].push(c.pending.m429);
  d[5].push(c.pending.refusal);
  c.pending = { m429: null, refusal: null };
  const cutoff = t - LIVE_SECONDS;
  let drop = 0;
  while (drop < d[0].length && d[0][drop] < cutoff) drop++;
  if (drop) for (const s of d) s.splice(0, drop);
  updateChart(c);
}

function updateChart(c) {
  c.plot.setData(c.data);
  const open = c.data[1];
  c.box.dataset.open = open.length ? open[open.length - 1] : 0;
  c.box.dataset.max = open.reduce((m, v) => (v != null && v > m ? v : m), 0);
  c.box.dataset.points = open.length;
}

// A marker for an event on its pool's chart: on the next live point, or on
// the nearest point of a past range.
function markEvent(ev) {
  if (!ev.pool || !["upstream_429", "refusal", "queue_timeout"].includes(ev.type)) return;
  const c = state.charts.get(ev.pool) || ensureChart(ev.pool);
  const is429 = ev.type === "upstream_429";
  const y = is429 ? (ev.gateway_in_use ?? ev.effective_limit ?? 0) : (ev.in_use ?? ev.effective_limit ?? 0);
  if (state.range === "live") {
    if (is429) c.pending.m429 = y;
    else c.pending.refusal = y;
  }
}

function placeMarkers(c, events) {
  const xs = c.data[0];
  if (!xs.length) return;
  for (const ev of events) {
    if (ev.pool !== c.pool) continue;
    const t = Date.parse(ev.time) / 1000;
    let best = 0;
    for (let i = 0; i < xs.length; i++) if (Math.abs(xs[i] - t) < Math.abs(xs[best] - t)) best = i;
    if (ev.type === "upstream_429") c.data[4][best] = ev.gateway_in_use ?? ev.effective_limit ?? 0;
    else if (ev.type === "refusal" || ev.type === "queue_timeout") c.data[5][best] = ev.in_use ?? 0;
  }
}

// The hour before the page opened, from the history, so the live chart does
// not start empty. The limits drawn for that part are the current ones.
async function loadLiveHistory() {
  let answer;
  try {
    answer = await api("/api/v1/history/concurrency?from=-1h&step=10s");
  } catch (err) {
    if (err.code === "history_disabled") state.historyEnabled = false;
    else throw err;
    return;
  }
  const pools = await api("/api/v1/pools");
  const events = [...state.events.values()];
  for (const series of answer.pools || []) {
    const p = (pools.pools || []).find((x) => x.name === series.pool);
    const c = ensureChart(series.pool);
    const d = emptyData();
    const firstLive = c.data[0].length ? c.data[0][0] : Infinity;
    for (const pt of series.points) {
      const t = Date.parse(pt.start) / 1000;
      if (t >= firstLive) break;
      d[0].push(t);
      d[1].push(pt.max);
      d[2].push(p ? p.limit : null);
      d[3].push(p ? p.effective_limit : null);
      d[4].push(null);
      d[5].push(null);
    }
    for (let i = 0; i < 6; i++) c.data[i] = d[i].concat(c.data[i]);
    placeMarkers(c, events);
    updateChart(c);
  }
}

async function loadRange() {
  const note = $("#range-note");
  let from;
  let to;
  if (state.range === "custom") {
    const f = $("#range-from").value;
    const t = $("#range-to").value;
    if (!f || !t) {
      note.textContent = "Choose both ends of the range.";
      return;
    }
    from = new Date(f);
    to = new Date(t);
  } else {
    const hours = { "6h": 6, "24h": 24, "7d": 168 }[state.range];
    to = new Date();
    from = new Date(to.getTime() - hours * 3600e3);
  }
  if (!(to > from)) {
    note.textContent = "The end must come after the start.";
    return;
  }
  const seconds = (to - from) / 1000;
  const step = Math.max(10, Math.ceil(seconds / 720));
  note.textContent = "loading…";
  const q = `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
  let answer;
  try {
    answer = await api(`/api/v1/history/concurrency?${q}&step=${step}s`);
  } catch (err) {
    note.textContent = err instanceof Unauthorized ? "" : `The history could not answer: ${err.message}`;
    handleError(err);
    return;
  }
  let events = [];
  try {
    const since = Math.floor(from.getTime() / 1000);
    const until = Math.ceil(to.getTime() / 1000);
    events = (await api(`/api/v1/events?since=${since}&until=${until}&limit=10000`)).events || [];
  } catch (err) {
    handleError(err);
  }
  const current = new Map(state.pools.map((p) => [p.name, p]));
  for (const c of state.charts.values()) {
    c.data = emptyData();
    updateChart(c);
  }
  for (const series of answer.pools || []) {
    const c = ensureChart(series.pool);
    const p = current.get(series.pool);
    const d = emptyData();
    for (const pt of series.points) {
      d[0].push(Date.parse(pt.start) / 1000);
      d[1].push(pt.max);
      d[2].push(p ? p.limit : null);
      d[3].push(p ? p.effective_limit : null);
      d[4].push(null);
      d[5].push(null);
    }
    c.data = d;
    placeMarkers(c, events);
    updateChart(c);
  }
  note.textContent = `${from.toLocaleString()} to ${to.toLocaleString()}, the most open in each ${step} s; limits as now`;
}

function setRange(value) {
  state.range = value;
  $("#custom-range").hidden = value !== "custom";
  if (value === "live") {
    $("#range-note").textContent = "";
    for (const c of state.charts.values()) {
      c.data = emptyData();
      updateChart(c);
    }
    loadLiveHistory().catch(handleError);
  } else if (value !== "custom") {
    loadRange().catch(handleError);
  }
}

// ---- sessions -----------------------------------------------------------------

function renderSessions() {
  const tenants = [...new Set(state.sessions.map((s) => s.tenant))].sort();
  fillSelect($("#f-tenant"), tenants);
  const pool = $("#f-pool").value;
  const tenant = $("#f-tenant").value;
  const st = $("#f-state").value;
  const shown = state.sessions.filter(
    (s) => (!pool || s.pool === pool) && (!tenant || s.tenant === tenant) && (!st || s.state === st),
  );
  $("#sessions-count").textContent = `${shown.length} of ${state.sessions.length} open`;
  $("#sessions-table tbody").replaceChildren(
    ...shown.map((s) => {
      const cls = [s.keep_alive_only ? "keepalive" : null, s.state === "idle" ? "idle" : null].filter(Boolean).join(" ");
      const sinceAudio = s.last_audio_at ? fmtSeconds(s.idle_seconds) : `${fmtSeconds(s.idle_seconds)} (none yet)`;
      return el(
        "tr",
        { "data-id": s.id, class: cls || null },
        el("td", { class: "num", text: s.id }),
        el("td", { text: s.pool }),
        el("td", { text: s.tenant }),
        el("td", { class: "state", text: s.keep_alive_only ? `${s.state} · KeepAlive only` : s.state }),
        el("td", { text: s.path }),
        el("td", { text: s.model || "–" }),
        el("td", { class: "num", text: fmtSeconds(s.age_seconds) }),
        el("td", { class: "num", text: sinceAudio }),
        el("td", { class: "num", text: fmtSeconds(s.audio_seconds) }),
        el("td", { class: "num", text: s.counters ? s.counters.keep_alive : 0 }),
        el("td", { class: "rid", text: s.request_id || "–" }),
        el("td", {}, el("button", { type: "button", class: "end danger", "data-id": s.id, text: "End", onclick: () => askEnd(s) })),
      );
    }),
  );
}

function askEnd(s) {
  const dialog = $("#confirm-end");
  $("#confirm-end-text").textContent =
    `End stream ${s.id} (${s.tenant}, pool ${s.pool}, request id ${s.request_id || "none"})? ` +
    "It is closed gracefully: its final results are delivered to the client first.";
  dialog.dataset.id = s.id;
  dialog.returnValue = "";
  dialog.showModal();
}

async function onConfirmClose() {
  const dialog = $("#confirm-end");
  if (dialog.returnValue !== "end") return;
  const id = dialog.dataset.id;
  try {
    await api(`/api/v1/sessions/${encodeURIComponent(id)}`, { method: "DELETE" });
    setStatus(`stream ${id} is closing`, "ok");
  } catch (err) {
    if (err.status === 404) setStatus(`stream ${id} had already ended`, "warn");
    else handleError(err);
  }
}

// ---- events -------------------------------------------------------------------

async function loadEvents() {
  const body = await api("/api/v1/events?limit=200");
  for (const e of body.events || []) onEvent(e, false);
}

function onEvent(ev, live) {
  if (state.events.has(ev.id)) return;
  state.events.set(ev.id, ev);
  if (state.events.size > 500) state.events.delete(state.events.keys().next().value);
  if (live) markEvent(ev);
  renderEvents();
}

function eventSummary(ev) {
  switch (ev.type) {
    case "upstream_429":
      return `pool ${ev.pool}: the vendor answered 429 to stream ${ev.session_id} (attempt ${ev.attempt}) with ` +
        `${ev.gateway_in_use} open at the gateway, ${ev.upstream_open} held by the vendor, limit ${ev.limit}, ` +
        `effective ${ev.effective_limit}; ${ev.retry_in_ms == null ? "gave up" : `retry in ${ev.retry_in_ms} ms`}`;
    case "refusal":
    case "queue_timeout":
    case "queue_abandoned":
      return `pool ${ev.pool ?? "–"}: ${ev.reason ?? ev.type} for tenant ${ev.tenant ?? "–"} (in use ${ev.in_use ?? "?"}/${ev.effective_limit ?? "?"}, ${ev.queued ?? 0} queued)`;
    case "reap":
      return `stream ${ev.session_id ?? ev.id} reaped: ${ev.reason ?? ""}`;
    case "limit_change":
      return `pool ${ev.pool}: limit set to ${ev.limit} (${ev.source ?? ""})`;
    default: {
      const rest = Object.entries(ev)
        .filter(([k]) => !["id", "time", "type"].includes(k))
        .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
        .join(" ");
      return rest;
    }
  }
}

function snapshotTable(sessions) {
  return el(
    "table",
    { class: "grid snapshot" },
    el(
      "thead",
      {},
      el("tr", {}, ...["id", "tenant", "state", "held for", "since audio", "KeepAlive only", "audio msgs", "KeepAlives", "request id"].map(
        (h) => el("th", { text: h }),
      )),
    ),
    el(
      "tbody",
      {},
      ...sessions.map((s) =>
        el(
          "tr",
          { class: s.keep_alive_only ? "keepalive" : null },
          el("td", { class: "num", text: s.id }),
          el("td", { text: s.tenant }),
          el("td", { text: s.state }),
          el("td", { class: "num", text: fmtSeconds(s.age_seconds) }),
          el("td", { class: "num", text: s.seconds_since_audio == null ? "no audio" : fmtSeconds(s.seconds_since_audio) }),
          el("td", { text: s.keep_alive_only ? "yes" : "no" }),
          el("td", { class: "num", text: s.audio_messages }),
          el("td", { class: "num", text: s.keep_alive }),
          el("td", { class: "rid", text: s.request_id || "–" }),
        ),
      ),
    ),
  );
}

let eventsOpen = new Set();

function renderEvents() {
  const list = $("#events-list");
  for (const d of list.querySelectorAll("details[open]")) eventsOpen.add(Number(d.dataset.id));
  const items = [...state.events.values()].sort((a, b) => b.id - a.id);
  list.replaceChildren(
    ...items.map((ev) => {
      const head = [el("time", { text: fmtTime(ev.time) }), " ", el("span", { class: `type t-${ev.type}`, text: ev.type }), " ", eventSummary(ev)];
      if (ev.type === "upstream_429" && Array.isArray(ev.sessions)) {
        const d = el(
          "details",
          { class: "ev ev-429", "data-id": ev.id, open: eventsOpen.has(ev.id) },
          el("summary", {}, ...head),
          el("p", { class: "note", text: `Who held pool ${ev.pool} when the vendor refused (${ev.sessions.length} stream(s)); vendor request id of the refusal: ${ev.upstream_request_id || "none"}.` }),
          snapshotTable(ev.sessions),
        );
        d.addEventListener("toggle", () => (d.open ? eventsOpen.add(ev.id) : eventsOpen.delete(ev.id)));
        return el("li", {}, d);
      }
      return el("li", { class: "ev", "data-id": ev.id }, ...head);
    }),
  );
}

// ---- peaks --------------------------------------------------------------------

async function askPeaks(e) {
  e.preventDefault();
  const params = new URLSearchParams({
    from: $("#peaks-from").value.trim(),
    to: $("#peaks-to").value.trim(),
    window: $("#peaks-window").value.trim(),
  });
  if ($("#peaks-pool").value) params.set("pool", $("#peaks-pool").value);
  $("#peaks-error").textContent = "";
  $("#peaks-result").replaceChildren(el("p", { class: "note", text: "asking the history…" }));
  try {
    state.peaks = await api(`/api/v1/history/peaks?${params}`);
  } catch (err) {
    $("#peaks-result").replaceChildren();
    $("#peaks-error").textContent = err instanceof Unauthorized ? "" : err.message;
    handleError(err);
    return;
  }
  renderPeaks();
}

function renderPeaks() {
  const a = state.peaks;
  const out = [el("p", { class: "note", text: `${fmtTime(a.from)} to ${fmtTime(a.to)}, windows of ${fmtSeconds(a.window_seconds)}` })];
  if (!a.pools || !a.pools.length) out.push(el("p", { text: "No stream was open in this range." }));
  for (const p of a.pools || []) {
    const w = p.best_window;
    out.push(
      el(
        "div",
        { class: "peak", "data-pool": p.pool },
        el("h3", { text: `pool ${p.pool}: peak ${p.peak}` }),
        el(
          "p",
          {},
          p.peak > 0
            ? `Reached at ${fmtTime(p.peak_at)}, held until ${fmtTime(p.peak_until)}` +
                (w ? `; the busiest window ran ${fmtTime(w.start)} to ${fmtTime(w.end)} (${w.min} to ${w.max} open).` : ".")
            : "No stream was open.",
        ),
        (p.sessions || []).length
          ? el(
              "table",
              { class: "grid" },
              el("thead", {}, el("tr", {}, ...["stream", "request id", "tenant", "path", "model", "opened", "closed", "duration", "outcome"].map((h) => el("th", { text: h })))),
              el(
                "tbody",
                {},
                ...p.sessions.map((s) =>
                  el(
                    "tr",
                    {},
                    el("td", { class: "num", text: `${s.run_id}/${s.session_id}` }),
                    el("td", { class: "rid", text: s.request_id || "–" }),
                    el("td", { text: s.tenant }),
                    el("td", { text: s.path }),
                    el("td", { text: s.model || "–" }),
                    el("td", { text: fmtTime(s.opened_at) }),
                    el("td", { text: s.still_open ? "still open" : fmtTime(s.closed_at) }),
                    el("td", { class: "num", text: fmtSeconds(s.duration_seconds) }),
                    el("td", { text: s.outcome }),
                  ),
                ),
              ),
            )
          : null,
      ),
    );
  }
  out.push(el("button", { type: "button", id: "peaks-csv", text: "Export CSV", onclick: exportPeaksCsv }));
  $("#peaks-result").replaceChildren(...out);
}

function csvCell(v) {
  const s = v == null ? "" : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

function peaksCsv(a) {
  const cols = ["pool", "peak", "peak_at", "peak_until", "window_start", "window_end", "run_id", "session_id", "request_id",
    "tenant", "path", "model", "opened_at", "closed_at", "duration_seconds", "outcome"];
  const rows = [cols.join(",")];
  for (const p of a.pools || []) {
    const base = [p.pool, p.peak, p.peak_at, p.peak_until, p.best_window?.start, p.best_window?.end];
    const sessions = p.sessions && p.sessions.length ? p.sessions : [null];
    for (const s of sessions) {
      const rest = s ? [s.run_id, s.session_id, s.request_id, s.tenant, s.path, s.model, s.opened_at, s.closed_at, s.duration_seconds, s.outcome] : [];
      rows.push([...base, ...rest].map(csvCell).join(","));
    }
  }
  return rows.join("\r\n") + "\r\n";
}

function exportPeaksCsv() {
  const blob = new Blob([peaksCsv(state.peaks)], { type: "text/csv" });
  const a = el("a", { href: URL.createObjectURL(blob), download: `sluice-peaks-${state.peaks.window_seconds}s.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// ---- wiring -------------------------------------------------------------------

$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  login($("#token").value.trim());
});
$("#logout").addEventListener("click", () => logout(""));
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showView(b.dataset.view));
for (const id of ["#f-pool", "#f-tenant", "#f-state"]) $(id).addEventListener("change", renderSessions);
$("#confirm-end").addEventListener("close", onConfirmClose);
$("#range").addEventListener("change", (e) => setRange(e.target.value));
$("#range-apply").addEventListener("click", () => loadRange().catch(handleError));
$("#peaks-form").addEventListener("submit", askPeaks);
window.addEventListener("resize", () => {
  for (const c of state.charts.values()) resizeChart(c);
});
window.sluiceDashboard = { state, peaksCsv };

if (state.token) login(state.token);
