// mcp-config console: plain JS, no build step, no third-party code.
// Everything the page shows comes from /api/* on the member that served it.
// Values from the store are only ever put into the page as text (textContent),
// never as HTML.
"use strict";

const TOKEN_KEY = "mcp-console-token";
const WINDOW_MS = 5 * 60 * 1000;      // the chart's time window
const MIN_SPAN_MS = 60 * 1000;        // the chart never spans less
const STALE_MS = 3000;                // no status for this long: say so
const RECONNECT_MS_MAX = 5000;
const HIGHLIGHT_CHARS_MAX = 200000;   // bigger values are shown plain
const COLORS = ["#2f6fdf", "#e3342f", "#1f9d55", "#d69e2e", "#9561e2", "#00a3a3", "#f66d9b", "#6b7385", "#b45309"];

const $ = (id) => document.getElementById(id);
const state = {
  me: null, samples: [], last: null, lastAt: 0, updates: 0,
  key: null, history: [], colors: {},
  dryRun: null, rollbackPlan: null,
};

// -- API -------------------------------------------------------------------------------
function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function headers(json) {
  const h = {};
  if (token()) h["Authorization"] = "Bearer " + token();
  if (json) h["Content-Type"] = "application/json";
  return h;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || ("HTTP " + status));
    this.status = status;
    this.kind = body && body.error;
    this.problems = (body && body.problems) || [];
  }
}

async function api(path, body) {
  const init = { headers: headers(body !== undefined), cache: "no-store" };
  if (body !== undefined) { init.method = "POST"; init.body = JSON.stringify(body); }
  const res = await fetch(path, init);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (res.status === 401) showLogin(data && data.message);
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

// -- small DOM helpers -----------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("--")) node.style.setProperty(k, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}
function show(id, on) { $(id).hidden = !on; }
function fmt(v) { return v === null || v === undefined ? "–" : String(v); }
function when(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "–"; }
function showError(id, err) {
  const box = $(id);
  box.replaceChildren();
  if (!err) { box.hidden = true; return; }
  box.hidden = false;
  box.dataset.status = err.status || "";
  box.dataset.kind = err.kind || "";
  const lines = err.problems && err.problems.length ? err.problems : [];
  // "invalid MCP document: models[0].endpoint: ..." lists its one problem below: keep the title.
  const one = lines.length === 1 && err.message.endsWith(": " + lines[0]);
  const head = one ? err.message.slice(0, -(lines[0].length + 2)) : lines.length ? err.message.split(": ")[0] : err.message;
  box.append(el("div", {}, head));
  if (lines.length) box.append(el("ul", { class: "problems" }, ...lines.map((p) => el("li", {}, p))));
}

// -- login -----------------------------------------------------------------------------
let loginWaiters = [];
function showLogin(message) {
  show("login", true);
  $("login-error").textContent = message && token() ? message : "";
}
function waitForLogin() { return new Promise((resolve) => loginWaiters.push(resolve)); }
$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  try {
    await whoami();
    show("login", false);
    state.configLoaded = false;
    const waiters = loginWaiters; loginWaiters = [];
    waiters.forEach((w) => w());
    route();
  } catch (e) { $("login-error").textContent = e.message; }
});
$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});

async function whoami() {
  const me = await api("/api/whoami");
  state.me = me;
  $("whoami").textContent = `${me.identity} (${me.role}) via ${me.member}` + (me.auth ? "" : " · auth off");
  show("logout", me.auth && !!token());
  document.body.dataset.canWrite = me.can_write_mcp ? "1" : "0";
  show("apply-real", me.can_write_mcp);
  show("apply-ro", !me.can_write_mcp);
  return me;
}

// -- pages -----------------------------------------------------------------------------
function route() {
  const page = { "#config": "config", "#fleet": "fleet" }[location.hash] || "cluster";
  for (const p of ["cluster", "config", "fleet"]) {
    show("page-" + p, p === page);
    $("nav-" + p).classList.toggle("active", p === page);
  }
  if (window.fleetPage) window.fleetPage.visible(page === "fleet");  // static/fleet.js
  if (page === "config" && !state.configLoaded) {
    state.configLoaded = true;
    listKeys();
    loadMcp();
  }
}
window.addEventListener("hashchange", route);

// -- cluster: the status stream ---------------------------------------------------------------
function setStreamState(s, text) {
  const node = $("stream-state");
  node.dataset.state = s;
  node.textContent = text;
}

async function streamStatus() {
  let wait = 500;
  for (;;) {
    try {
      const res = await fetch("/api/events", { headers: headers(false), cache: "no-store" });
      if (res.status === 401) {
        showLogin();
        setStreamState("auth", "needs a token");
        await waitForLogin();
        continue;
      }
      if (!res.ok) {
        let body = null;
        try { body = await res.json(); } catch (e) { body = null; }
        throw new ApiError(res.status, body);
      }
      setStreamState("live", "live");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          onEvent(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
          wait = 500;
        }
      }
      setStreamState("reconnecting", "stream ended; reconnecting…");
    } catch (e) {
      setStreamState("reconnecting", "disconnected (" + e.message + "); reconnecting…");
    }
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, RECONNECT_MS_MAX);
  }
}

function onEvent(block) {
  let event = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (!data) return;  // a keepalive comment
  const payload = JSON.parse(data);
  if (event === "init") {
    state.samples = payload.samples || [];
    drawChart();
  } else if (event === "status") {
    state.last = payload;
    state.lastAt = Date.now();
    state.updates += 1;
    state.samples.push({
      ts_ms: payload.ts_ms,
      lag_ms: Object.fromEntries(payload.members.map((m) => [m.id, m.lag_ms])),
      reachable: Object.fromEntries(payload.members.map((m) => [m.id, m.reachable])),
    });
    const cutoff = payload.ts_ms - WINDOW_MS;
    while (state.samples.length && state.samples[0].ts_ms < cutoff) state.samples.shift();
    renderCards(payload);
    drawChart();
  }
}

setInterval(() => {
  if (state.lastAt && Date.now() - state.lastAt > STALE_MS && $("stream-state").dataset.state === "live") {
    setStreamState("stale", "no update for " + Math.round((Date.now() - state.lastAt) / 1000) + " s");
  } else if (state.lastAt && Date.now() - state.lastAt <= STALE_MS && $("stream-state").dataset.state === "stale") {
    setStreamState("live", "live");
  }
}, 1000);

function colorOf(name) {
  if (!state.colors[name]) state.colors[name] = COLORS[Object.keys(state.colors).length % COLORS.length];
  return state.colors[name];
}

function renderCards(snap) {
  const cards = $("cards");
  const seen = new Set();
  for (const m of snap.members) {
    seen.add(m.id);
    let card = cards.querySelector(`.card[data-node="${CSS.escape(m.id)}"]`);
    if (!card) {
      card = el("div", { class: "card", "data-node": m.id });
      cards.append(card);
    }
    const attrs = {
      role: m.role || "", health: m.health, reachable: String(m.reachable),
      lagMs: fmt(m.lag_ms), entriesBehind: fmt(m.entries_behind), term: fmt(m.term),
    };
    Object.assign(card.dataset, attrs);
    const role = m.reachable ? (m.role || "?") : "down";
    const rows = [
      ["endpoint", m.endpoint], ["term", fmt(m.term)],
      ["commit / applied", `${fmt(m.commit_index)} / ${fmt(m.applied_index)}`],
      ["entries behind", fmt(m.entries_behind)], ["lag ms", fmt(m.lag_ms)],
      ["last contact ms", fmt(m.last_contact_ms)], ["health", m.health],
    ];
    card.replaceChildren(
      el("h4", {}, el("span", {}, m.id), el("span", { class: "badge " + (m.role === "leader" ? "leader" : "") }, role)),
      el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)])),
    );
    if (!m.reachable && m.error) card.append(el("p", { class: "error" }, m.error.slice(0, 120)));
  }
  for (const card of [...cards.children]) if (!seen.has(card.dataset.node)) card.remove();
  const sorted = [...cards.children].sort((a, b) => a.dataset.node.localeCompare(b.dataset.node));
  if (sorted.some((c, i) => c !== cards.children[i])) cards.replaceChildren(...sorted);
}

function drawChart() {
  const chart = $("chart");
  const W = Math.max(300, chart.clientWidth || 800), H = 240, PAD = 40;
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const now = state.samples.length ? state.samples[state.samples.length - 1].ts_ms : Date.now();
  // The last 5 minutes, or less while there is less to show (at least a minute).
  const oldest = state.samples.length ? state.samples[0].ts_ms : now;
  const span = Math.min(WINDOW_MS, Math.max(MIN_SPAN_MS, now - oldest));
  const start = now - span;
  const names = new Set();
  let max = 0;
  for (const s of state.samples) for (const [n, v] of Object.entries(s.lag_ms)) {
    names.add(n);
    if (v !== null && v > max) max = v;
  }
  const top = Math.max(1000, Math.ceil(max / 1000) * 1000);
  const x = (t) => PAD + ((t - start) / span) * (W - PAD - 5);
  const y = (v) => H - 18 - (v / top) * (H - 28);
  const parts = [];
  for (let i = 0; i <= 4; i++) {
    const v = (top / 4) * i;
    parts.push(svg("line", { class: "grid", x1: PAD, x2: W - 5, y1: y(v), y2: y(v) }));
    const label = svg("text", { class: "axis", x: 2, y: y(v) + 4 });
    label.textContent = v >= 1000 ? (v / 1000) + " s" : v + " ms";
    parts.push(label);
  }
  const axis = svg("text", { class: "axis", x: PAD, y: H - 2 });
  axis.textContent = span >= 120000 ? `-${Math.round(span / 60000)} min` : `-${Math.round(span / 1000)} s`;
  const nowLabel = svg("text", { class: "axis", x: W - 30, y: H - 2 });
  nowLabel.textContent = "now";
  parts.push(axis, nowLabel);
  const legend = [];
  for (const name of [...names].sort()) {
    let d = "", pen = "M", points = 0, last = null, peak = 0;
    for (const s of state.samples) {
      const v = s.lag_ms[name];
      if (v === null || v === undefined) { pen = "M"; continue; }
      d += `${pen}${x(s.ts_ms).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L"; points += 1; last = v; peak = Math.max(peak, v);
    }
    parts.push(svg("path", {
      d: d.trim() || "M0,0", stroke: colorOf(name), "fill": "none", "stroke-width": 2,
      "data-node": name, "data-points": points, "data-last-lag-ms": last === null ? "" : last,
      "data-max-lag-ms": peak,
    }));
    legend.push(el("span", { "--swatch": colorOf(name), "data-node": name }, `${name} ${last === null ? "–" : last + " ms"}`));
  }
  chart.replaceChildren(...parts);
  chart.dataset.updates = String(state.updates);
  chart.dataset.samples = String(state.samples.length);
  chart.dataset.lastTsMs = String(now);
  $("legend").replaceChildren(...legend);
}

// -- config: keys, values, history, diff ----------------------------------------------------------
$("prefix-form").addEventListener("submit", (ev) => { ev.preventDefault(); listKeys(); loadMcp(); });

async function listKeys() {
  const prefix = $("prefix").value;
  const list = $("keys");
  try {
    const res = await api("/api/keys?prefix=" + encodeURIComponent(prefix));
    list.replaceChildren(...res.keys.map((k) => el("li", {
      "data-key": k.key, title: `mod ${k.mod_revision}, version ${k.version}`,
      onclick: () => openKey(k.key),
    }, k.key)));
    list.dataset.revision = res.revision;
    show("keys-more", res.more);
  } catch (e) {
    list.replaceChildren(el("li", { class: "error" }, e.message));
  }
}

function detect(text) {
  try { return { lang: "json", text: JSON.stringify(JSON.parse(text), null, 2) }; } catch (e) { /* not JSON */ }
  return { lang: /^\s*[\w"'-][^\n]*:(\s|$)/m.test(text) || /^\s*-\s/m.test(text) ? "yaml" : "text", text };
}

function span(cls, text) { return el("span", { class: cls }, text); }

// A small highlighter: JSON tokens, or YAML line by line. Output is text nodes only.
function highlight(text, lang) {
  const out = document.createDocumentFragment();
  if (text.length > HIGHLIGHT_CHARS_MAX || lang === "text") { out.append(text); return out; }
  if (lang === "json") {
    const re = /("(?:\\.|[^"\\])*")(\s*:)?|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|\b(true|false|null)\b|([{}[\],:])/g;
    let at = 0, m;
    while ((m = re.exec(text))) {
      out.append(text.slice(at, m.index));
      if (m[1]) { out.append(span(m[2] ? "tok-key" : "tok-str", m[1])); if (m[2]) out.append(span("tok-punct", m[2])); }
      else if (m[3]) out.append(span("tok-num", m[3]));
      else if (m[4]) out.append(span("tok-lit", m[4]));
      else out.append(span("tok-punct", m[5]));
      at = re.lastIndex;
    }
    out.append(text.slice(at));
    return out;
  }
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    let rest = line, comment = "";
    const hash = line.search(/(^|\s)#/);
    if (hash >= 0) { rest = line.slice(0, hash); comment = line.slice(hash); }
    const km = rest.match(/^(\s*(?:-\s+)?)([^\s:#'"][^:#]*?|"[^"]*"|'[^']*')(:)(\s.*|$)/);
    let value = rest;
    if (km) { out.append(km[1], span("tok-key", km[2]), span("tok-punct", km[3])); value = km[4]; }
    else {
      const dash = rest.match(/^(\s*-\s+)(.*)$/);
      if (dash) { out.append(span("tok-punct", dash[1])); value = dash[2]; }
    }
    const v = value.trim();
    const lead = value.slice(0, value.length - value.trimStart().length);
    if (!v) out.append(value);
    else if (/^["'].*["']$/.test(v)) out.append(lead, span("tok-str", v), value.slice(lead.length + v.length));
    else if (/^-?\d+(\.\d+)?$/.test(v)) out.append(lead, span("tok-num", v), value.slice(lead.length + v.length));
    else if (/^(true|false|null|yes|no|~)$/i.test(v)) out.append(lead, span("tok-lit", v), value.slice(lead.length + v.length));
    else out.append(lead, span("tok-str", v), value.slice(lead.length + v.length));
    if (comment) out.append(span("tok-com", comment));
    if (i < lines.length - 1) out.append("\n");
  });
  return out;
}

function showValue(pre, text) {
  const d = detect(text);
  pre.dataset.lang = d.lang;
  pre.replaceChildren(highlight(d.text, d.lang));
}

async function openKey(key) {
  state.key = key;
  for (const li of $("keys").children) li.classList.toggle("selected", li.dataset.key === key);
  show("key-view", true);
  show("diff-box", false);
  show("rollback-box", false);
  $("key-error").textContent = "";
  $("key-name").textContent = key;
  try {
    const v = await api("/api/kv?key=" + encodeURIComponent(key));
    const lease = v.lease ? ` · lease ${v.lease}` + (v.lease_ttl_s === null ? "" : ` (${v.lease_ttl_s} s left)`) : "";
    $("key-meta").textContent = `version ${v.version} · modified at revision ${v.mod_revision} · created at ${v.create_revision} · read at ${v.revision}${lease}`;
    if (v.value_encoding === "base64") { $("key-value").textContent = "(binary, base64) " + v.value; }
    else showValue($("key-value"), v.value);
  } catch (e) {
    $("key-meta").textContent = "";
    $("key-value").textContent = "";
    $("key-error").textContent = e.message;
  }
  await loadHistory(key);
}

async function loadHistory(key) {
  const body = $("history").tBodies[0];
  try {
    const h = await api("/api/history?key=" + encodeURIComponent(key));
    state.history = h.entries;
    body.replaceChildren(...h.entries.map((e, i) => {
      const a = el("input", { type: "radio", name: "rev-a", value: e.revision });
      const b = el("input", { type: "radio", name: "rev-b", value: e.revision });
      if (i === 1) a.checked = true;
      if (i === 0) b.checked = true;
      a.addEventListener("change", showDiff);
      b.addEventListener("change", showDiff);
      const actions = el("td", {});
      if (state.me && state.me.can_write_mcp && e.type === "PUT" && i > 0) {
        actions.append(el("button", { class: "danger", onclick: () => planRollback(e.revision) }, "roll back to this"));
      }
      return el("tr", { "data-revision": e.revision, "data-type": e.type },
        el("td", {}, a), el("td", {}, b), el("td", {}, e.revision), el("td", {}, when(e.ts_ms)),
        el("td", {}, e.identity || "–"), el("td", {}, e.type), el("td", {}, e.version || "–"), actions);
    }));
    $("history").dataset.revisions = h.entries.map((e) => e.revision).join(",");
    const more = $("history-more");
    more.hidden = !h.more && !h.compact_revision;
    more.textContent = (h.more ? "older entries not shown. " : "") + (h.compact_revision ? `history starts at revision ${h.compact_revision}.` : "");
    if (h.entries.length >= 2) await showDiff();
  } catch (e) {
    body.replaceChildren();
    $("key-error").textContent = e.message;
  }
}

async function showDiff() {
  const a = document.querySelector('input[name="rev-a"]:checked');
  const b = document.querySelector('input[name="rev-b"]:checked');
  if (!a || !b) return;
  const ra = Number(a.value), rb = Number(b.value);
  try {
    // The server computes the diff (difflib; JSON values compared indented).
    const d = await api(`/api/diff?key=${encodeURIComponent(state.key)}&a=${ra}&b=${rb}`);
    const pre = $("diff");
    pre.replaceChildren(...d.lines.map(([op, line]) => el("span", { class: op === "+" ? "add" : op === "-" ? "del" : "" }, `${op} ${line}\n`)));
    pre.dataset.a = ra;
    pre.dataset.b = rb;
    pre.dataset.added = d.added;
    pre.dataset.removed = d.removed;
    $("diff-title").textContent = `Revision ${ra} → ${rb}`;
    show("diff-box", true);
  } catch (e) { $("key-error").textContent = e.message; }
}

// -- config: rollback (write token, explicit confirm) ---------------------------------------------
async function planRollback(revision) {
  $("key-error").textContent = "";
  try {
    const plan = await api("/api/rollback", { key: state.key, to_revision: revision, dry_run: true });
    state.rollbackPlan = { revision };
    $("rollback-plan").replaceChildren(
      plan.changes.length
        ? `Roll ${state.key} back to revision ${revision}: ${plan.changes.length} change(s) against revision ${plan.read_revision}.\n` +
          plan.changes.map((c) => `${c.op} ${c.key}`).join("\n")
        : "Nothing to change: the key already holds that value.");
    show("rollback-confirm", plan.changes.length > 0);
    show("rollback-box", true);
  } catch (e) { $("key-error").textContent = e.message; }
}
$("rollback-cancel").addEventListener("click", () => show("rollback-box", false));
$("rollback-confirm").addEventListener("click", async () => {
  try {
    const out = await api("/api/rollback", { key: state.key, to_revision: state.rollbackPlan.revision, dry_run: false });
    show("rollback-box", false);
    await openKey(state.key);
    $("key-meta").textContent += ` · rolled back at revision ${out.revision}`;
  } catch (e) { $("key-error").textContent = e.message; }
});

// -- config: the MCP document ----------------------------------------------------------------
async function loadMcp() {
  $("mcp-error").textContent = "";
  try {
    const view = await api("/api/mcp");
    const cfg = view.config;
    $("mcp-meta").textContent = `valid MCP config at revision ${view.revision}: ${cfg.models.length} model(s), routing ${cfg.routing.policy}`;
    $("mcp-models").replaceChildren(el("table", { class: "table", id: "models-table" },
      el("thead", {}, el("tr", {}, ...["model", "endpoint", "weight", "timeout s", "retries"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...cfg.models.map((m) => el("tr", { "data-model": m.name },
        el("td", {}, m.name), el("td", {}, m.endpoint), el("td", {}, fmt(m.weight)),
        el("td", {}, fmt(m.timeout_s)), el("td", {}, fmt(m.max_retries)))))));
    const routing = el("pre", { class: "code", id: "routing-view" });
    showValue(routing, JSON.stringify(cfg.routing));
    $("mcp-routing").replaceChildren(el("h3", {}, "Routing"), routing);
    if (!$("apply-doc").value) $("apply-doc").value = view.document;
  } catch (e) {
    $("mcp-models").replaceChildren();
    $("mcp-routing").replaceChildren();
    if (e.status === 404) $("mcp-meta").textContent = "no MCP config under /mcp/ yet: paste one below and apply it";
    else {
      $("mcp-meta").textContent = "";
      $("mcp-error").textContent = e.message + (e.problems.length ? "\n  " + e.problems.join("\n  ") : "");
    }
  }
}

function renderChanges(out) {
  return out.changes.map((c) => el("div", { class: "change", "data-key": c.key, "data-op": c.op },
    el("strong", { class: "op-" + c.op }, { add: "+ ", change: "~ ", delete: "- " }[c.op] + c.key),
    el("ul", {}, ...c.fields.map((f) => el("li", {}, `${f.path || "(value)"}: ${JSON.stringify(f.old)} → ${JSON.stringify(f.new)}`)))));
}

$("apply-dry").addEventListener("click", async () => {
  showError("apply-error", null);
  show("apply-result", false);
  show("apply-confirm-box", false);
  $("apply-real").disabled = true;
  try {
    const out = await api("/api/mcp/apply", { document: $("apply-doc").value, dry_run: true });
    state.dryRun = { document: $("apply-doc").value, revision: out.read_revision, count: out.changes.length };
    $("apply-summary").textContent = `dry run: ${out.changes.length} change(s) against revision ${out.read_revision}; nothing written`;
    $("apply-summary").dataset.changes = out.changes.length;
    $("apply-changes").replaceChildren(...renderChanges(out));
    show("apply-result", true);
    $("apply-real").disabled = out.changes.length === 0;
  } catch (e) { showError("apply-error", e); }
});
$("apply-doc").addEventListener("input", () => { $("apply-real").disabled = true; show("apply-confirm-box", false); });
$("apply-real").addEventListener("click", () => {
  if (!state.dryRun) return;
  $("apply-confirm").textContent = `Confirm: write ${state.dryRun.count} change(s) at revision ${state.dryRun.revision}`;
  show("apply-confirm-box", true);
});
$("apply-cancel").addEventListener("click", () => show("apply-confirm-box", false));
$("apply-confirm").addEventListener("click", async () => {
  showError("apply-error", null);
  try {
    const out = await api("/api/mcp/apply", { document: state.dryRun.document, dry_run: false, expected_revision: state.dryRun.revision });
    show("apply-confirm-box", false);
    $("apply-real").disabled = true;
    $("apply-summary").textContent = `applied: ${out.changes.length} change(s) at revision ${out.revision}`;
    $("apply-summary").dataset.revision = out.revision;
    await Promise.all([listKeys(), loadMcp()]);
  } catch (e) { showError("apply-error", e); }
});

// -- start ---------------------------------------------------------------------------------
(async () => {
  route();
  try { await whoami(); } catch (e) { if (e.status !== 401) $("whoami").textContent = e.message; else await waitForLogin(); }
  streamStatus();
})();
