// metre's dashboard: a page over the public API (no build step, no CDN; ECharts is vendored).
// Every text that comes from the API is set with textContent, never parsed as HTML.

const API = "/api/v1";
const REFRESH_MS = 5000;
const charts = new Set();
let timer = null;
const loading = []; // the cards' first loads: the page is ready once all have settled
let rate = null; // {at, commits}: the previous overview refresh, for commits/s

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem("metre.token") || "";
}

async function api(path, options = {}) {
  const headers = { accept: "application/json", ...(options.headers || {}) };
  if (token()) headers.authorization = `Bearer ${token()}`;
  if (options.body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(API + path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `${response.status} ${response.statusText}`;
    if (response.status === 401) showBanner(`${message}: enter an API token above.`);
    throw new ApiError(response.status, message);
  }
  return body;
}

function showBanner(text, kind = "error") {
  const banner = document.getElementById("banner");
  banner.textContent = text;
  banner.className = kind === "info" ? "info" : "";
  banner.hidden = !text;
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

const short = (sha) => (sha ? sha.slice(0, 10) : "—");
const fmt = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en"));

function disposeCharts() {
  for (const c of charts) c.dispose();
  charts.clear();
}

window.addEventListener("resize", () => charts.forEach((c) => c.resize()));

// A chart: `points` is how many data points it draws (kept on the element for tests and
// screen readers alike).
function chart(option, points, label) {
  const node = el("div", { class: "chart", role: "img", "aria-label": `${label}: ${points} points`, "data-points": points });
  // ECharts sizes itself from the element: wait until the element is in the page.
  let frames = 0;
  const init = () => {
    if (!node.isConnected) {
      if (++frames < 300) requestAnimationFrame(init); // replaced before it was shown: give up
      return;
    }
    const instance = echarts.init(node, null, { renderer: "canvas" });
    instance.setOption({ animation: false, grid: { left: 48, right: 16, top: 28, bottom: 28 }, tooltip: { trigger: "axis" }, ...option });
    charts.add(instance);
    node.dataset.rendered = "true";
  };
  requestAnimationFrame(init);
  return node;
}

function provenance(body, path) {
  const p = (body && body.provenance) || {};
  const bits = [];
  if (p.watermark) bits.push(`as of ${new Date(p.watermark).toLocaleString()}`);
  if (p.head) bits.push(`head ${short(p.head)}`);
  if (p.version) bits.push(`v${p.version}`);
  return el("p", { class: "meta" }, bits.join(" · "), bits.length ? " · " : "", el("a", { href: API + path, text: "JSON" }));
}

function table(columns, rows) {
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null, text: c.title })));
  const body = rows.map((r) => el("tr", {}, columns.map((c) => el("td", { class: c.num ? "num" : c.cls || null, text: c.value(r) }))));
  return el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, body)));
}

function card(title, ...children) {
  return el("section", { class: "card", "aria-label": title }, el("h2", { text: title }), ...children);
}

// ---- overview -------------------------------------------------------------------------

const overview = { filter: "", sort: "id", desc: false };

function sortValue(repo, key) {
  if (key === "last_polled_at") return repo.last_polled_at || "";
  return repo[key] ?? "";
}

function repoRows(repos) {
  const f = overview.filter.toLowerCase();
  const shown = repos.filter((r) => !f || r.url.toLowerCase().includes(f) || r.state.includes(f));
  shown.sort((a, b) => {
    const x = sortValue(a, overview.sort);
    const y = sortValue(b, overview.sort);
    const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
    return overview.desc ? -c : c;
  });
  return shown;
}

function freshness(repo) {
  const behind = repo.progress.total - repo.progress.done;
  if (repo.state === "polling" && behind > 0) return `${fmt(behind)} commits to go`;
  if (!repo.last_polled_at) return "not polled yet";
  return `head confirmed ${ago(repo.last_polled_at)}`;
}

function reposTable(repos, rerender) {
  const cols = [
    ["id", "Id", true], ["url", "Repository"], ["state", "State"], ["last_polled_at", "Last poll"],
    ["commits", "Commits", true],
  ];
  const th = cols.map(([key, title, num]) => {
    const pressed = overview.sort === key;
    const arrow = pressed ? (overview.desc ? " ▼" : " ▲") : "";
    const cls = [num ? "num" : "", key === "id" || key === "last_polled_at" ? "wide-only" : ""].join(" ").trim() || null;
    return el("th", { scope: "col", class: cls, "aria-sort": pressed ? (overview.desc ? "descending" : "ascending") : "none" },
      el("button", { type: "button", text: title + arrow, onclick: () => {
        overview.desc = overview.sort === key ? !overview.desc : false;
        overview.sort = key;
        rerender();
      } }));
  });
  th.splice(4, 0, el("th", { scope: "col", text: "Freshness" }));
  th.push(el("th", { scope: "col", text: "Error" }));
  const rows = repoRows(repos).map((r) => el("tr", { "data-repo": r.id },
    el("td", { class: "num wide-only", text: r.id }),
    el("td", { class: "path" }, el("a", { href: `#/repos/${r.id}`, text: r.url }), r.branch ? ` (${r.branch})` : ""),
    el("td", { class: `state state-${r.state}`, text: r.state }),
    el("td", { class: "wide-only", text: ago(r.last_polled_at), title: r.last_polled_at || "" }),
    el("td", { text: freshness(r) }),
    el("td", { class: "num", text: fmt(r.commits) }),
    el("td", { class: "err", text: r.error || "" })));
  return el("div", { class: "table-wrap" }, el("table", { id: "repos" }, el("thead", {}, el("tr", {}, th)), el("tbody", {}, rows)));
}

function pipelinePanel(pipeline, repos) {
  const now = Date.now();
  const total = repos.reduce((s, r) => s + r.commits, 0);
  let perSecond = null;
  if (rate && now > rate.at) perSecond = Math.max(0, (total - rate.commits) / ((now - rate.at) / 1000));
  rate = { at: now, commits: total };
  const backlog = repos.reduce((s, r) => s + Math.max(0, r.progress.total - r.progress.done), 0);
  const states = Object.entries(pipeline.repos.by_state).map(([k, v]) => `${k}: ${v}`).join(", ") || "none";
  const stats = el("dl", { class: "stats" },
    el("div", {}, el("dt", { text: "Commits applied / s" }), el("dd", { id: "rate", text: perSecond === null ? "—" : perSecond.toFixed(1) })),
    el("div", {}, el("dt", { text: "Backlog (commits published, not applied)" }), el("dd", { id: "backlog", text: fmt(backlog) })),
    el("div", {}, el("dt", { text: "Consumer lag (events)" }), el("dd", { id: "lag", text: pipeline.lag && pipeline.lag.commits !== null ? fmt(pipeline.lag.commits) : "—" })),
    el("div", {}, el("dt", { text: "Dead letters" }), el("dd", { id: "dead-letters", text: fmt(pipeline.dead_letters.count) })),
    el("div", {}, el("dt", { text: "Data loss on the bus" }), el("dd", { id: "data-loss", class: pipeline.data_loss && pipeline.data_loss.unhealed ? "err" : null,
      text: pipeline.data_loss ? (pipeline.data_loss.unhealed ? `${fmt(pipeline.data_loss.unhealed)} healing` : `${fmt(pipeline.data_loss.count)} (healed)`) : "—" })),
    el("div", {}, el("dt", { text: "Repositories" }), el("dd", { text: states })));
  const lagging = (pipeline.repos.lagging || []).slice(0, 5).map((r) => el("li", {}, el("a", { href: `#/repos/${r.id}`, text: `repository ${r.id}` }), ": ", el("span", { class: "err", text: r.reason })));
  const letters = pipeline.dead_letters.last.slice(0, 5).map((d) => el("li", {}, `${d.topic}[${d.partition}]@${d.offset}: `, el("span", { class: "err", text: d.error })));
  return card("Pipeline", stats, lagging.length ? el("ul", { id: "lagging" }, lagging) : null, letters.length ? el("ul", {}, letters) : null,
    el("p", { class: "meta" }, el("a", { href: `${API}/pipeline`, text: "JSON" })));
}

function registerForm(onDone) {
  const msg = el("p", { class: "form-msg", role: "status" });
  const url = el("input", { id: "reg-url", required: true, placeholder: "https://… or a local path", size: 40 });
  const branch = el("input", { id: "reg-branch", placeholder: "default branch" });
  const form = el("form", { id: "register", onsubmit: async (e) => {
    e.preventDefault();
    msg.className = "form-msg";
    msg.textContent = "registering…";
    try {
      const body = { url: url.value.trim() };
      if (branch.value.trim()) body.branch = branch.value.trim();
      const repo = await api("/repos", { method: "POST", body });
      msg.textContent = `registered as #${repo.id}`;
      url.value = "";
      branch.value = "";
      onDone();
    } catch (err) {
      msg.className = "form-msg err";
      msg.textContent = err.message;
    }
  } },
  el("div", { class: "row" },
    el("label", { for: "reg-url", text: "URL" }), url,
    el("label", { for: "reg-branch", text: "Branch" }), branch,
    el("button", { type: "submit", text: "Register" })), msg);
  return card("Register a repository", form);
}

function notificationsPanel(targets, rules, deliveries) {
  const name = (t) => `${t.kind}${t.name ? ` “${t.name}”` : ""} ${t.url}`;
  const byId = new Map(targets.map((t) => [t.id, t]));
  const parts = [el("h2", { text: "Notifications" })];
  if (!targets.length) {
    parts.push(el("p", { class: "meta", text: "No targets yet: add one with POST /api/v1/notifications/targets, then rules (docs/notifications.md)." }));
  } else {
    parts.push(table([
      { title: "Rule", value: (r) => r.kind }, { title: "Scope", value: (r) => (r.repo_id ? `repository ${r.repo_id}` : "all") },
      { title: "Threshold", num: true, value: (r) => fmt(r.threshold) }, { title: "Target", value: (r) => (byId.has(r.target_id) ? name(byId.get(r.target_id)) : r.target_id) }], rules));
    parts.push(el("h3", { text: "Latest deliveries" }));
    parts.push(deliveries.length ? table([
      { title: "When", value: (d) => ago(d.delivered_at || d.created_at) }, { title: "Status", cls: "state", value: (d) => d.status },
      { title: "Alerts", num: true, value: (d) => fmt(d.alerts) }, { title: "Attempts", num: true, value: (d) => fmt(d.attempts) },
      { title: "Last error", cls: "err", value: (d) => d.last_error || "" }], deliveries) : el("p", { class: "meta", text: "nothing delivered yet" }));
  }
  parts.push(el("p", {}, el("a", { href: `${API}/notifications/deliveries`, text: "JSON" })));
  return el("section", { class: "card", "aria-label": "Notifications", id: "notifications" }, ...parts);
}

async function renderOverview(main) {
  const tableSlot = el("div");
  const pipeSlot = el("div");
  const notifySlot = el("div");
  const filter = el("input", { id: "filter", type: "search", placeholder: "filter by URL or state", value: overview.filter,
    oninput: () => { overview.filter = filter.value; draw(); } });
  let repos = [];
  const draw = () => tableSlot.replaceChildren(reposTable(repos, draw));
  const refresh = async () => {
    try {
      const [list, pipeline, targets, rules, deliveries] = await Promise.all([api("/repos"), api("/pipeline"),
        api("/notifications/targets"), api("/notifications/rules"), api("/notifications/deliveries?limit=10")]);
      repos = list.repos;
      draw();
      pipeSlot.replaceChildren(pipelinePanel(pipeline, repos));
      notifySlot.replaceChildren(notificationsPanel(targets.targets, rules.rules, deliveries.deliveries));
    } catch (err) {
      if (err.status !== 401) showBanner(err.message);
    }
  };
  main.replaceChildren(
    el("h1", { text: "Repositories" }),
    el("div", { class: "grid" },
      el("section", { class: "card wide", "aria-label": "Repositories" },
        el("div", { class: "row" }, el("label", { for: "filter", text: "Filter" }), filter), tableSlot),
      pipeSlot, registerForm(refresh), notifySlot));
  rate = null;
  await refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

// ---- one repository ------------------------------------------------------------------------

function seriesOption(periods, series, type = "line") {
  return {
    legend: { top: 0 },
    xAxis: { type: "category", data: periods },
    yAxis: { type: "value" },
    series: series.map(([name, data]) => ({ name, type, data, showSymbol: periods.length < 60 })),
  };
}

function granularityCard(title, path, build) {
  const slot = el("div");
  const buttons = ["day", "week", "month"].map((g) => el("button", { type: "button", class: "plain", "data-granularity": g, text: g, "aria-pressed": g === "month" ? "true" : "false",
    onclick: (e) => {
      buttons.forEach((b) => b.setAttribute("aria-pressed", String(b === e.currentTarget)));
      load(g);
    } }));
  const load = async (g) => {
    const p = `${path}?granularity=${g}`;
    try {
      const body = await api(p);
      disposeIn(slot);
      slot.replaceChildren(build(body), provenance(body, p));
    } catch (err) {
      slot.replaceChildren(el("p", { class: "err", text: err.message }));
    }
  };
  loading.push(load("month"));
  return el("section", { class: "card wide", "aria-label": title, "data-card": title }, el("h2", { text: title }),
    el("div", { class: "row", role: "group", "aria-label": "Period" }, buttons), slot);
}

function disposeIn(node) {
  for (const c of [...charts]) {
    if (node.contains(c.getDom())) {
      c.dispose();
      charts.delete(c);
    }
  }
}

async function metricCard(title, path, build, wide = false) {
  const section = el("section", { class: wide ? "card wide" : "card", "aria-label": title, "data-card": title }, el("h2", { text: title }), el("p", { class: "meta", text: "loading…" }));
  loading.push(api(path).then(
    (body) => section.replaceChildren(el("h2", { text: title }), build(body), provenance(body, path)),
    (err) => section.replaceChildren(el("h2", { text: title }), el("p", { class: "err", text: err.message }))));
  return section;
}

const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

function repoControls(repo, rerender) {
  const msg = el("p", { class: "form-msg", role: "status" });
  const say = (text, bad = false) => { msg.className = bad ? "form-msg err" : "form-msg"; msg.textContent = text; };
  const branch = el("input", { id: "branch", value: repo.branch || "", placeholder: "remote HEAD" });
  const poll = el("button", { type: "button", id: "poll", text: "Poll now", onclick: async () => {
    try { await api(`/repos/${repo.id}/poll`, { method: "POST" }); say("poll requested"); } catch (err) { say(err.message, true); }
  } });
  const form = el("form", { id: "branch-form", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api(`/repos/${repo.id}`, { method: "PATCH", body: { branch: branch.value.trim() || null } });
      say("branch changed; polling");
      rerender();
    } catch (err) { say(err.message, true); }
  } }, el("label", { for: "branch", text: "Branch" }), branch, el("button", { type: "submit", text: "Track" }));
  const stats = el("dl", { class: "stats" },
    el("div", {}, el("dt", { text: "State" }), el("dd", { class: `state state-${repo.state}`, id: "repo-state", text: repo.state })),
    el("div", {}, el("dt", { text: "Commits" }), el("dd", { text: fmt(repo.commits) })),
    el("div", {}, el("dt", { text: "Head" }), el("dd", { text: short(repo.head) })),
    el("div", {}, el("dt", { text: "Last poll" }), el("dd", { text: ago(repo.last_polled_at) })),
    el("div", {}, el("dt", { text: "Push webhook" }), el("dd", { id: "repo-webhook", text: repo.webhook ? "secret set" : "none", title: "docs/webhooks.md" })));
  return el("section", { class: "card wide", "aria-label": "Repository" }, stats,
    repo.error ? el("p", { class: "err", text: repo.error }) : null,
    el("div", { class: "row" }, form, poll), msg);
}

async function renderRepo(main, id) {
  const base = `/repos/${id}`;
  let repo;
  try {
    repo = await api(base);
  } catch (err) {
    main.replaceChildren(el("h1", { text: `Repository ${id}` }), el("p", { class: "err", text: err.message }));
    return;
  }
  const m = `${base}/metrics`;
  const cards = await Promise.all([
    metricCard("Top authors", `${m}/authors`, (b) => {
      const top = b.authors.slice().sort((x, y) => y.commits - x.commits).slice(0, 10);
      return el("div", {}, chart({ xAxis: { type: "value" }, yAxis: { type: "category", inverse: true, data: top.map((a) => a.email) }, grid: { left: 160, right: 16, top: 8, bottom: 24 },
        series: [{ type: "bar", name: "commits", data: top.map((a) => a.commits) }] }, top.length, "Top authors by commits"));
    }),
    metricCard("Truck factor", `${m}/truck-factor`, (b) => el("div", {},
      el("p", { class: "big", id: "truck-factor", text: b.truck_factor }),
      el("p", { class: "meta", text: `${fmt(b.files)} files at head; removing ${b.removed.map((r) => r.email).join(", ") || "nobody"} leaves most files without a main author` }))),
    metricCard("Punch card (author's own time)", `${m}/punchcard`, (b) => {
      const data = [];
      b.commits.forEach((row, d) => row.forEach((n, h) => data.push([h, d, n])));
      const max = Math.max(1, ...data.map((x) => x[2]));
      return chart({ tooltip: { position: "top" }, xAxis: { type: "category", data: [...Array(24).keys()] }, yAxis: { type: "category", inverse: true, data: WEEKDAYS },
        visualMap: { min: 0, max, show: false, inRange: { color: ["#eef2fb", "#2457c5"] } }, series: [{ type: "heatmap", name: "commits", data }] }, data.length, "Commits by weekday and hour");
    }),
    metricCard("Commit sizes (lines changed)", `${m}/commit-size`, (b) => {
      const bins = b.lines.histogram;
      const p = b.lines.percentiles;
      return el("div", {}, chart({ xAxis: { type: "category", data: bins.map((x) => (x.min === x.max ? `${x.min}` : `${x.min}–${x.max}`)) }, yAxis: { type: "value" },
        series: [{ type: "bar", name: "commits", data: bins.map((x) => x.commits) }] }, bins.length, "Commits by lines changed"),
      el("p", { class: "meta", text: `p50 ${fmt(p.p50)} · p90 ${fmt(p.p90)} · p99 ${fmt(p.p99)} lines` }));
    }),
    metricCard("Languages", `${m}/languages`, (b) => {
      const rows = b.languages.slice(0, 12);
      return chart({ xAxis: { type: "value" }, yAxis: { type: "category", inverse: true, data: rows.map((r) => r.language) }, grid: { left: 110, right: 16, top: 8, bottom: 24 },
        series: [{ type: "bar", name: "lines", data: rows.map((r) => r.lines) }] }, rows.length, "Current lines by language");
    }),
    metricCard("Hotspots (last 365 days)", `${m}/hotspots?limit=15`, (b) => table([
      { title: "File", cls: "path", value: (r) => r.path }, { title: "Changes", num: true, value: (r) => fmt(r.changes) },
      { title: "Lines", num: true, value: (r) => fmt(r.lines) }, { title: "Score", num: true, value: (r) => fmt(r.score) }], b.files)),
    metricCard("Files (most changed)", `${m}/files?limit=15`, (b) => table([
      { title: "File", cls: "path", value: (r) => r.path }, { title: "Commits", num: true, value: (r) => fmt(r.commits) },
      { title: "Authors", num: true, value: (r) => fmt(r.authors) }, { title: "Lines", num: true, value: (r) => fmt(r.lines) }], b.files)),
    metricCard("Ownership (main author per file)", `${m}/ownership?limit=15`, (b) => table([
      { title: "File", cls: "path", value: (r) => r.path }, { title: "Main author", value: (r) => (r.authors[0] ? r.authors[0].email : "—") },
      { title: "Authors", num: true, value: (r) => r.authors.length }], b.files)),
    metricCard("Coupling (files changed together)", `${m}/coupling?limit=15`, (b) => table([
      { title: "File", cls: "path", value: (r) => r.a }, { title: "Changes with", cls: "path", value: (r) => r.b },
      { title: "Shared", num: true, value: (r) => fmt(r.shared) }, { title: "Degree", num: true, value: (r) => r.degree.toFixed(2) }], b.pairs)),
  ]);
  main.replaceChildren(
    el("p", {}, el("a", { href: "#/", text: "← all repositories" })),
    el("h1", { text: repo.url + (repo.branch ? ` (${repo.branch})` : "") }),
    el("div", { class: "grid" },
      repoControls(repo, () => route()),
      granularityCard("Activity", `${m}/activity`, (b) => chart(seriesOption(b.series.map((x) => x.period), [
        ["commits", b.series.map((x) => x.commits)], ["merges", b.series.map((x) => x.merges)],
        ["lines added", b.series.map((x) => x.added)], ["lines removed", b.series.map((x) => x.removed)]]), b.series.length, "Activity per period")),
      granularityCard("Contributors", `${m}/contributors`, (b) => chart(seriesOption(b.series.map((x) => x.period), [
        ["active", b.series.map((x) => x.active)], ["new", b.series.map((x) => x.new)], ["returning", b.series.map((x) => x.returning)]], "bar"),
        b.series.length, "Contributors per period")),
      ...cards));
}

// ---- routing -------------------------------------------------------------------------------

async function route() {
  clearInterval(timer);
  timer = null;
  disposeCharts();
  showBanner("");
  const main = document.getElementById("main");
  const match = location.hash.match(/^#\/repos\/(\d+)$/);
  loading.length = 0;
  if (match) await renderRepo(main, Number(match[1]));
  else await renderOverview(main);
  await Promise.allSettled(loading.splice(0));
  document.body.dataset.ready = "true";
}

function start() {
  const input = document.getElementById("token");
  input.value = token();
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.value) sessionStorage.setItem("metre.token", input.value);
    else sessionStorage.removeItem("metre.token");
    route();
  });
  window.addEventListener("hashchange", () => { document.body.dataset.ready = "false"; route().then(() => document.getElementById("main").focus()); });
  route();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
