// churnguard dashboard: the at-risk list, a customer page and a live alert feed, over the
// read-model API of `churnguard serve`. No build step, no dependencies: it works offline.
"use strict";

const PAGE_SIZE = 50;
const LIST_REFRESH_MS = 5000;
const FEED_REFRESH_MS = 3000;
const SVG_NS = "http://www.w3.org/2000/svg";

const state = { tier: "", rule: "", shown: PAGE_SIZE, customerId: null };

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

// A server started with CHURNGUARD_SERVE_TOKEN wants it on every API call: the page takes it
// once from ?token=…, keeps it for the tab's session and drops it from the address bar.
const TOKEN_KEY = "churnguard-token";
const given = new URLSearchParams(location.search).get("token");
if (given) {
  sessionStorage.setItem(TOKEN_KEY, given);
  history.replaceState(null, "", location.pathname + location.hash);
}

async function api(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { headers });
  const body = await response.json();
  if (response.status === 401) {
    throw new Error("this server needs its access token: open the dashboard as /?token=…");
  }
  if (!response.ok) throw new Error(`${path}: ${body.error || response.status}`);
  return body;
}

function showStatus(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

function healthClass(health) {
  if (health === null || health === undefined) return "";
  if (health < 40) return "health-bad";
  return health < 65 ? "health-mid" : "health-good";
}

function severityTag(severity, text) {
  return el("span", { class: `tag sev-${severity}` }, text);
}

function when(iso) {
  return iso ? iso.replace("T", " ").slice(0, 16) : "";
}

// ---- at-risk list -------------------------------------------------------------------------

async function loadFilters() {
  const [tiers, rules] = await Promise.all([api("/tiers"), api("/rules")]);
  fillSelect($("tier-filter"), tiers.tiers, "all tiers");
  fillSelect($("rule-filter"), rules.rules.map((r) => r.id), "any rule");
}

function fillSelect(select, values, allLabel) {
  const current = select.value;
  select.replaceChildren(el("option", { value: "" }, allLabel));
  for (const value of values) select.append(el("option", { value }, value));
  select.value = values.includes(current) ? current : "";
}

async function loadAtRisk() {
  const params = new URLSearchParams({ limit: String(Math.min(state.shown, 500)) });
  if (state.tier) params.set("tier", state.tier);
  if (state.rule) params.set("rule", state.rule);
  const page = await api(`/at-risk?${params}`);
  const rows = page.items.map((item) => {
    const row = el(
      "tr",
      { "data-customer": item.customer_id },
      el("td", {}, el("a", { href: customerHref(item.customer_id) }, item.name || item.customer_id)),
      el("td", { class: "tier" }, item.tier || "—"),
      el("td", { class: `num ${healthClass(item.health)}` }, String(item.health ?? "—")),
      el("td", { class: "num" }, trendText(item.trend_7d)),
      el("td", {}, item.lifecycle_stage || ""),
      el("td", {}, ...item.open_alerts.map((a) => severityTag(a.severity, a.rule_id))),
    );
    row.addEventListener("click", () => { location.hash = customerHref(item.customer_id); });
    return row;
  });
  $("at-risk").tBodies[0].replaceChildren(...rows);
  $("list-count").textContent = `${rows.length} customer${rows.length === 1 ? "" : "s"}`;
  $("more").hidden = page.next_cursor === null;
}

function trendText(trend) {
  if (trend === null || trend === undefined) return "—";
  return trend > 0 ? `▲ ${trend}` : trend < 0 ? `▼ ${-trend}` : "0";
}

function customerHref(customerId) {
  return `#/customer/${encodeURIComponent(customerId)}`;
}

// ---- customer page ------------------------------------------------------------------------

async function loadCustomer(customerId) {
  const c = await api(`/customers/${encodeURIComponent(customerId)}`);
  $("customer-name").textContent = c.name || c.customer_id;
  $("customer-meta").textContent = [
    `id ${c.customer_id}`,
    `tier ${c.tier || "—"}`,
    `health ${c.health ?? "—"} (${trendText(c.health_trend_7d)} in 7 days)`,
    `stage ${c.lifecycle_stage || "—"}`,
    `as of ${when(c.as_of)}`,
  ].join(" · ");
  drawChart($("health-chart"), c.health_history);
  drawFactors(c.factors || {});
  $("customer-alerts").tBodies[0].replaceChildren(
    ...c.alerts.map((a) =>
      el("tr", {}, el("td", {}, a.status), el("td", {}, severityTag(a.severity, a.severity)),
        el("td", {}, a.rule_id), el("td", {}, when(a.fired_at)), el("td", {}, a.summary || ""))),
  );
  $("customer-tasks").tBodies[0].replaceChildren(
    ...c.tasks.map((t) =>
      el("tr", {}, el("td", {}, t.status), el("td", {}, t.priority), el("td", {},
        `${t.assignee} (${t.assignee_role})`), el("td", {}, when(t.due_at)), el("td", {}, t.title))),
  );
}

function drawFactors(factors) {
  const rows = Object.entries(factors)
    .sort((a, b) => b[1].contribution - a[1].contribution)
    .map(([name, f]) =>
      el("tr", {}, el("td", {}, name), el("td", { class: "num" }, f.missing ? "no data" : String(f.value)),
        el("td", { class: "num" }, String(f.points)), el("td", { class: "num" }, String(f.weight)),
        el("td", {}, el("span", { class: "bar", style: `width:${Math.max(1, f.contribution * 2)}px` }),
          ` ${f.contribution.toFixed(1)}`)));
  $("factors").tBodies[0].replaceChildren(...rows);
}

// The health history as a line with one point per snapshot, score 0-100 against time.
function drawChart(chart, history) {
  const width = 640, height = 220, left = 36, right = 12, top = 10, bottom = 26;
  chart.replaceChildren();
  for (const score of [0, 25, 50, 75, 100]) {
    const y = top + (height - top - bottom) * (1 - score / 100);
    chart.append(svg("line", { class: "grid", x1: left, x2: width - right, y1: y, y2: y }));
    chart.append(svg("text", { x: 4, y: y + 4 }, String(score)));
  }
  if (history.length === 0) {
    chart.append(svg("text", { x: width / 2 - 40, y: height / 2 }, "no health history yet"));
    return;
  }
  const first = history[0].as_of_ms, last = history[history.length - 1].as_of_ms;
  const span = Math.max(last - first, 1);
  const x = (ms) => left + (width - left - right) * (history.length === 1 ? 0.5 : (ms - first) / span);
  const y = (score) => top + (height - top - bottom) * (1 - score / 100);
  const points = history.map((p) => `${x(p.as_of_ms).toFixed(1)},${y(p.score).toFixed(1)}`);
  chart.append(svg("polyline", { class: "line", points: points.join(" ") }));
  for (const p of history) {
    const dot = svg("circle", { class: "point", cx: x(p.as_of_ms), cy: y(p.score), r: 3 });
    dot.append(svg("title", {}, `${new Date(p.as_of_ms).toISOString().slice(0, 10)}: ${p.score}`));
    chart.append(dot);
  }
  chart.append(svg("text", { x: left, y: height - 6 }, new Date(first).toISOString().slice(0, 10)));
  chart.append(svg("text", { x: width - right - 70, y: height - 6 },
    new Date(last).toISOString().slice(0, 10)));
}

// ---- live alert feed ----------------------------------------------------------------------

async function loadFeed() {
  const feed = await api("/alerts?status=all&limit=20");
  $("alert-feed").replaceChildren(
    ...feed.items.map((a) =>
      el("li", { "data-alert": a.alert_id }, severityTag(a.severity, a.status), " ",
        el("a", { href: customerHref(a.customer_id) }, a.customer_id), ` ${a.rule_id} `,
        el("span", { class: "when" }, when(a.resolved_at || a.fired_at)),
        el("div", {}, a.summary || ""))),
  );
}

// ---- routing and refresh ------------------------------------------------------------------

async function route() {
  const match = location.hash.match(/^#\/customer\/(.+)$/);
  state.customerId = match ? decodeURIComponent(match[1]) : null;
  $("list-view").hidden = state.customerId !== null;
  $("customer-view").hidden = state.customerId === null;
  await refresh();
}

async function refresh() {
  try {
    if (state.customerId === null) await loadAtRisk();
    else await loadCustomer(state.customerId);
    showStatus(`updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    showStatus(String(error.message || error), true);
  }
}

async function refreshFeed() {
  try {
    await loadFeed();
  } catch (error) {
    showStatus(String(error.message || error), true);
  }
}

function start() {
  $("tier-filter").addEventListener("change", (e) => { state.tier = e.target.value; refresh(); });
  $("rule-filter").addEventListener("change", (e) => { state.rule = e.target.value; refresh(); });
  $("more").addEventListener("click", () => { state.shown += PAGE_SIZE; refresh(); });
  window.addEventListener("hashchange", route);
  loadFilters().catch((error) => showStatus(String(error.message || error), true));
  route();
  refreshFeed();
  setInterval(() => { if (state.customerId === null) refresh(); }, LIST_REFRESH_MS);
  setInterval(() => loadFilters().catch(() => {}), LIST_REFRESH_MS * 6);
  setInterval(refreshFeed, FEED_REFRESH_MS);
}

start();
