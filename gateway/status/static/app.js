// The status page: polls /api/status/* and fills the sections. Every value from the gateway
// goes into the page as text (textContent), never as HTML: label values are whatever a
// client sent.
"use strict";

const API = "../api/status/";
const POLL_MS = 2000;
const METRIC_ROWS = 15;  // rows of the metric table until "show all"
const state = { selectedMetric: null, metrics: [], pointsHistory: [], tailMetric: null, allMetrics: false };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fill(tbody, rows, emptyText, columns) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: columns || 2 }, emptyText))]));
}

function num(v, digits) {
  if (v === null || v === undefined) return "–";
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return Number.isInteger(v) && digits === undefined ? String(v) : v.toFixed(digits === undefined ? 1 : digits);
}

function seconds(v) {
  if (v === null || v === undefined) return "–";
  if (v < 0.001) return (v * 1e6).toFixed(0) + " µs";
  if (v < 1) return (v * 1e3).toFixed(1) + " ms";
  return v.toFixed(2) + " s";
}

function bytes(v) {
  if (v === null || v === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return v.toFixed(i ? 1 : 0) + " " + units[i];
}

function badge(text, cls) { return el("span", { class: "badge " + (cls || text) }, text); }

async function getJSON(path) {
  const response = await fetch(API + path, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok && response.status !== 503) throw new Error(body.detail || response.statusText);
  return body;
}

function counts(id, mapping) {
  const rows = Object.entries(mapping).sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => el("tr", {}, el("td", {}, el("code", {}, reason)), el("td", { class: "num" }, num(n))));
  fill(document.querySelector(`#${id} tbody`), rows, "none");
}

// ---------------------------------------------------------------- pipeline

async function refreshPipeline() {
  const p = await getJSON("pipeline");
  const rate = p.points_in.per_second;
  document.getElementById("fig-points-rate").textContent = num(rate);
  document.getElementById("fig-points-total").textContent = num(p.points_in.total);
  document.getElementById("fig-series").textContent = num(p.active_series);
  const http = p.latency.http;
  const lat = http ? (http.recent && http.recent.requests ? http.recent : http.since_start) : null;
  document.getElementById("fig-latency").textContent = lat ? `${seconds(lat.p50_seconds)} / ${seconds(lat.p99_seconds)}` : "no requests";
  const f = p.forwarder;
  const queue = document.getElementById("fig-queue");
  const breaker = document.getElementById("fig-breaker");
  if (f === null) {
    queue.replaceChildren(badge("forwarding off", "off"));
    breaker.replaceChildren(badge("no upstream", "off"));
  } else {
    const age = f.oldest_entry_age_seconds;
    queue.textContent = `${f.queue_length} (${(f.queue_fill_ratio * 100).toFixed(0)} %)` + (age !== null ? `, oldest ${seconds(age)}` : "");
    breaker.replaceChildren(f.breaker ? badge(f.breaker.state) : badge("no check", "off"));
  }
  const m = p.memory_limiter;
  const memory = document.getElementById("fig-memory");
  if (!m.enabled) memory.replaceChildren(badge("off", "off"));
  else memory.replaceChildren(badge(m.refusing ? "refusing" : "accepting"), ` ${bytes(m.rss_bytes)} / ${bytes(m.soft_limit_bytes)}`);
  counts("refused", p.refused_requests);
  counts("rejected", p.rejected_points);
  counts("dropped", p.dropped_points);
  if (rate !== null) {
    state.pointsHistory.push([p.timestamp, rate]);
    if (state.pointsHistory.length > 300) state.pointsHistory.shift();
  }
  Charts.line(document.getElementById("chart-points"),
    [{ name: "points/s in", color: "#2b6cb0", points: state.pointsHistory }],
    { title: "points/s in (this page's polls)", format: (v) => num(v) });
}

// ---------------------------------------------------------------- cardinality

async function refreshCardinality() {
  const metricParam = state.selectedMetric ? `&metric=${encodeURIComponent(state.selectedMetric)}` : "";
  let c;
  try {
    c = await getJSON(`cardinality?top=500${metricParam}`);
  } catch (error) {  // the selected metric went stale: start over with the biggest
    state.selectedMetric = null;
    c = await getJSON("cardinality?top=500");
  }
  state.metrics = c.metrics;
  if (!state.selectedMetric && c.metrics.length) {
    // The biggest metric is shown right away: its exploding label is on top without a click.
    state.selectedMetric = c.metrics[0].name;
    return refreshCardinality();
  }
  document.getElementById("card-summary").textContent =
    `${num(c.series_total)} series in ${c.metrics_total} metrics from ${c.services_total} services; ` +
    `limit ${c.limits.max_series_per_stream} series per stream, ${c.limits.max_series_per_service || "no"} per service`;
  const biggest = c.metrics.length ? c.metrics[0].series : 1;
  const shown = state.allMetrics ? c.metrics : c.metrics.slice(0, METRIC_ROWS);
  const rows = shown.map((m) => {
    const overflowing = m.overflowed_series > 0;
    const row = el("tr", { dataset: { metric: m.name }, class: m.name === state.selectedMetric ? "selected" : "" },
      el("td", {}, el("code", {}, m.name)),
      el("td", { class: "num" }, num(m.series)),
      el("td", { class: "barcell" }, el("div", { class: "bar" + (overflowing ? " hot" : ""), style: `width:${(100 * m.series / biggest).toFixed(1)}%` })),
      el("td", { class: "num" }, overflowing ? `${num(m.overflowed_series)} series` : "–"),
      el("td", { class: "num" }, num(m.limit_per_stream)));
    row.addEventListener("click", () => { state.selectedMetric = m.name; refreshCardinality().catch(report); });
    return row;
  });
  if (shown.length < c.metrics.length) {
    const more = el("tr", { id: "card-more" }, el("td", { colspan: 5, class: "empty" }, `show all ${c.metrics.length} metrics`));
    more.addEventListener("click", () => { state.allMetrics = true; refreshCardinality().catch(report); });
    rows.push(more);
  }
  fill(document.querySelector("#card-metrics tbody"), rows, "no series yet", 5);
  fill(document.querySelector("#card-services tbody"), c.services.map((s) => el("tr", {},
    el("td", {}, el("code", {}, s.service || "(no service.name)")),
    el("td", { class: "num" }, num(s.series)),
    el("td", { class: "num" }, num(s.metrics)),
    el("td", { class: "num" }, s.overflowed_series ? num(s.overflowed_series) : "–"))), "no services yet", 4);
  const labels = c.labels;
  document.getElementById("card-labels-metric").textContent = labels ? labels.metric : "–";
  if (labels) {
    const most = labels.labels.length ? labels.labels[0].distinct_values : 1;
    fill(document.querySelector("#card-labels tbody"), labels.labels.map((l, i) => el("tr", { dataset: { label: l.name } },
      el("td", {}, el("code", {}, l.name)),
      el("td", { class: "num" }, num(l.distinct_values)),
      el("td", { class: "barcell" }, el("div", { class: "bar" + (i === 0 && l.distinct_values > 10 ? " hot" : ""), style: `width:${(100 * l.distinct_values / most).toFixed(1)}%` })),
      el("td", {}, l.top_values.map((v) => `${v.value} (${v.series})`).join(", ")))),
      "this metric has no labels", 4);
  }
  updateTailChoices();
}

// ---------------------------------------------------------------- live tail

function updateTailChoices() {
  const select = document.getElementById("tail-metric");
  const names = state.metrics.map((m) => m.name).sort();
  const current = select.value || state.tailMetric;
  if (select.options.length !== names.length || [...select.options].some((o, i) => o.value !== names[i])) {
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  }
  if (current && names.includes(current)) select.value = current;
  if (select.value !== state.tailMetric) {
    state.tailMetric = select.value;
    updateTailServices();
  }
}

function updateTailServices() {
  const metric = state.metrics.find((m) => m.name === state.tailMetric);
  const select = document.getElementById("tail-service");
  const current = select.value;
  const services = metric ? metric.services : [];
  select.replaceChildren(el("option", { value: "" }, "all"), ...services.map((s) => el("option", { value: s }, s || "(none)")));
  if (services.includes(current)) select.value = current;
}

function valueText(p) {
  if (p.value !== undefined) return num(p.value, Number.isInteger(p.value) ? undefined : 3);
  return `count ${num(p.count)}, sum ${num(p.sum, 3)}`;
}

async function refreshTail() {
  const metric = state.tailMetric;
  if (!metric) return;
  const service = document.getElementById("tail-service").value;
  const limit = document.getElementById("tail-limit").value;
  const query = `tail?metric=${encodeURIComponent(metric)}&limit=${limit}` + (service ? `&service=${encodeURIComponent(service)}` : "");
  let t;
  try { t = await getJSON(query); } catch (error) { t = { points: [] }; }
  const rows = t.points.map((p) => el("tr", {},
    el("td", {}, p.timestamp ? new Date(p.timestamp * 1000).toTimeString().slice(0, 8) : "–"),
    el("td", {}, el("code", {}, p.service)),
    el("td", {}, el("code", {}, Object.entries(p.labels).map(([k, v]) => `${k}="${v}"`).join(", "))),
    el("td", { class: "num tail-value" }, valueText(p))));
  fill(document.querySelector("#tail-points tbody"), rows, "no points", 4);
}

// ---------------------------------------------------------------- health

function ago(ts) {
  if (!ts) return "not yet";
  const s = Date.now() / 1000 - ts;
  return s < 1 ? "just now" : `${s.toFixed(0)} s ago`;
}

async function refreshHealth() {
  const h = await getJSON("health");
  const summary = document.getElementById("health-summary");
  summary.replaceChildren("overall ", badge(h.status), h.ready ? " · ready" : " · not ready", h.output ? ` · ${h.output}` : "");
  fill(document.querySelector("#health-checks tbody"), h.checks.map((c) => el("tr", { dataset: { check: c.name } },
    el("td", {}, el("code", {}, c.name), c.required ? " (required)" : ""),
    el("td", {}, badge(c.status)),
    el("td", {}, c.breaker ? badge(c.breaker.state) : "–", c.breaker && c.breaker.consecutive_failures ? ` ${c.breaker.consecutive_failures} failures` : ""),
    el("td", {}, ago(c.timestamp)),
    el("td", { class: "num" }, seconds(c.duration_seconds)),
    el("td", {}, c.observations.map((o) => `${o.measurement} ${o.value === null ? "–" : o.value}${o.unit ? " " + o.unit : ""}`).join(", ")),
    el("td", {}, c.output || ""))), h.details ? "no checks" : "details hidden", 7);
}

// ---------------------------------------------------------------- host

async function refreshHost() {
  const h = await getJSON("host");
  document.getElementById("host-summary").textContent = h.enabled
    ? `${h.points.length} readings, one every ${num(h.interval_seconds)} s (the observers' ring buffer)`
    : "system observers are off (observers.enabled: false)";
  const pts = (key, scale) => h.points.map((p) => [p.timestamp, p[key] === null ? null : p[key] * (scale || 1)]);
  Charts.line(document.getElementById("chart-cpu"), [{ name: "CPU", color: "#2b6cb0", points: pts("cpu_usage_percent") }],
    { title: "CPU usage %", max: 100, format: (v) => v.toFixed(0) });
  Charts.line(document.getElementById("chart-memory"), [{ name: "memory", color: "#805ad5", points: pts("memory_utilization", 100) }],
    { title: "memory used %", max: 100, format: (v) => v.toFixed(0) });
  Charts.line(document.getElementById("chart-load"), [{ name: "load 1m", color: "#dd6b20", points: pts("load_1m") }],
    { title: "load average (1 m)", format: (v) => v.toFixed(2) });
  Charts.line(document.getElementById("chart-network"), [
    { name: "in", color: "#2f855a", points: pts("network_receive_bytes_per_second") },
    { name: "out", color: "#c53030", points: pts("network_transmit_bytes_per_second") }],
    { title: "network bytes/s", format: (v) => bytes(v) });
}

// ---------------------------------------------------------------- driving

function report(error) {
  document.getElementById("updated").textContent = `update failed: ${error.message}`;
}

async function tick() {
  await Promise.all([refreshPipeline(), refreshHealth(), refreshHost()]);
  if (document.getElementById("tail-follow").checked) await refreshTail();
  document.getElementById("updated").textContent = "updated " + new Date().toTimeString().slice(0, 8);
}

async function start() {
  document.getElementById("tail-metric").addEventListener("change", (e) => {
    state.tailMetric = e.target.value; updateTailServices(); refreshTail().catch(report);
  });
  for (const id of ["tail-service", "tail-limit"]) {
    document.getElementById(id).addEventListener("change", () => refreshTail().catch(report));
  }
  await refreshCardinality().catch(report);
  await tick().catch(report);
  document.body.dataset.ready = "true";
  setInterval(() => tick().catch(report), POLL_MS);
  setInterval(() => refreshCardinality().catch(report), 2 * POLL_MS);
}

start();
