// The statistics view: per operation, span count, errors, error rate and latency
// percentiles over a window (GET /api/stats), sortable; a row links to its traces.

import { api } from "./api.js";
import { navigate } from "./nav.js";
import {
  fill, formatDuration, formatPercent, h, LOOKBACKS, lookbackMicros, serviceColor,
} from "./util.js";

const COLUMNS = [
  ["service", "Service", (r) => r.service],
  ["operation", "Operation", (r) => r.operation],
  ["spanKind", "Kind", (r) => r.spanKind],
  ["count", "Spans", (r) => r.count],
  ["errors", "Errors", (r) => r.errors],
  ["errorRate", "Error rate", (r) => r.errorRate],
  ["p50", "p50", (r) => r.p50],
  ["p99", "p99", (r) => r.p99],
  ["max", "Max", (r) => r.max],
];

function cell(key, row, maxP99) {
  switch (key) {
    case "service":
      return h("td", {}, h("span", { class: "svc-dot", style: { background: serviceColor(row.service) } }), row.service);
    case "operation":
      return h("td", {}, h("a", {
        href: `/search?service=${encodeURIComponent(row.service)}&operation=${encodeURIComponent(row.operation)}&lookback=1h&limit=20`,
        text: row.operation,
      }));
    case "spanKind":
      return h("td", { class: "muted", text: row.spanKind || "—" });
    case "errorRate":
      return h("td", { class: row.errors ? "num bar-cell error" : "num bar-cell" },
        h("span", { class: "hbar error-bar", style: { width: `${row.errorRate * 100}%` } }),
        h("span", { class: "bar-text", text: formatPercent(row.errorRate) }));
    case "p99":
      return h("td", { class: "num bar-cell" },
        h("span", { class: "hbar", style: { width: `${maxP99 ? (row.p99 / maxP99) * 100 : 0}%` } }),
        h("span", { class: "bar-text", text: formatDuration(row.p99) }));
    case "p50":
    case "max":
      return h("td", { class: "num", text: formatDuration(row[key]) });
    default:
      return h("td", { class: row[key] && key === "errors" ? "num error" : "num", text: String(row[key]) });
  }
}

function table(rows, sortKey, descending, onSort) {
  const column = COLUMNS.find(([key]) => key === sortKey) || COLUMNS[3];
  const sorted = [...rows].sort((a, b) => {
    const x = column[2](a);
    const y = column[2](b);
    const order = typeof x === "string" ? x.localeCompare(y) : x - y;
    return descending ? -order : order;
  });
  const maxP99 = Math.max(0, ...rows.map((r) => r.p99));
  return h("table", { class: "table stats-table" },
    h("thead", {}, h("tr", {}, COLUMNS.map(([key, label]) => h("th", {
      class: key === column[0] ? `sortable sorted ${descending ? "desc" : "asc"}` : "sortable",
      onclick: () => onSort(key), text: label,
    })))),
    h("tbody", {}, sorted.map((row) => h("tr", { dataset: { operation: row.operation } },
      COLUMNS.map(([key]) => cell(key, row, maxP99))))));
}

export function renderStats(main, url) {
  const q = url.searchParams;
  const service = h("select", { "aria-label": "Service" }, h("option", { value: "", text: "All services" }));
  const lookback = h("select", { "aria-label": "Lookback" },
    LOOKBACKS.map(([key]) => h("option", { value: key, text: `Last ${key}` })));
  lookback.value = LOOKBACKS.some(([k]) => k === q.get("lookback")) ? q.get("lookback") : "1h";
  const body = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  const reload = () => {
    const params = new URLSearchParams({ lookback: lookback.value });
    if (service.value) params.set("service", service.value);
    navigate(`/stats?${params}`);
  };
  service.addEventListener("change", reload);
  lookback.addEventListener("change", reload);
  main.append(h("div", { class: "panel stats" },
    h("div", { class: "panel-head" }, h("h1", { text: "Operation statistics" }), service, lookback),
    h("p", { class: "muted", text: "Spans started in the window, per service, operation and span kind. Percentiles are of span durations." }),
    body));
  api.services().then((names) => {
    for (const name of names) service.appendChild(h("option", { value: name, text: name }));
    if (q.get("service")) service.value = q.get("service");
  }).catch(() => {});
  const end = Date.now() * 1000;
  const params = { start: String(end - lookbackMicros(lookback.value)), end: String(end) };
  if (q.get("service")) params.service = q.get("service");
  let sortKey = "count";
  let descending = true;
  api.stats(params).then((rows) => {
    if (!rows.length) {
      fill(body, h("p", { class: "muted empty", text: "No spans in this window." }));
      return;
    }
    const draw = () => fill(body, table(rows, sortKey, descending, (key) => {
      descending = key === sortKey ? !descending : !["service", "operation", "spanKind"].includes(key);
      sortKey = key;
      draw();
    }));
    draw();
  }).catch((err) => fill(body, h("p", { class: "error", text: `Cannot load statistics: ${err.message}` })));
}
