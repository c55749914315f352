// The search view: the form, the scatter plot of start time x duration, the result list.
// The page URL carries the form (/search?service=..&lookback=1h&...), so a search is a link.

import { api } from "./api.js";
import { prepareTrace } from "./model.js";
import { navigate } from "./nav.js";
import { scatterPlot } from "./scatter.js";
import {
  fill, formatDuration, formatTime, h, LOOKBACKS, lookbackMicros, parseLogfmt,
  relativeTime, serviceColor, toLogfmt,
} from "./util.js";

const ALL = "";
const SORTS = {
  recent: ["Most recent", (a, b) => b.start - a.start],
  longest: ["Longest first", (a, b) => b.duration - a.duration],
  shortest: ["Shortest first", (a, b) => a.duration - b.duration],
  most: ["Most spans", (a, b) => b.spans.length - a.spans.length],
  fewest: ["Fewest spans", (a, b) => a.spans.length - b.spans.length],
};

// Microseconds for a datetime-local input's value (local time), or "".
function inputToMicros(value) {
  const ms = value ? new Date(value).getTime() : NaN;
  return Number.isNaN(ms) ? "" : String(ms * 1000);
}

function microsToInput(us) {
  if (!us) return "";
  const d = new Date(Number(us) / 1000 - new Date().getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

function tagsText(json) {
  if (!json) return "";
  try {
    return toLogfmt(JSON.parse(json));
  } catch (err) {
    return "";
  }
}

function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", { text: label }), control,
    hint ? h("small", { class: "muted", text: hint }) : null);
}

function buildForm(q, onSubmit) {
  const service = h("select", { name: "service", required: true },
    h("option", { value: "", text: "Loading…" }));
  const operation = h("select", { name: "operation" }, h("option", { value: ALL, text: "all" }));
  const tags = h("input", {
    name: "tags", value: tagsText(q.get("tags")), placeholder: "http.status_code=500 error=true",
    spellcheck: "false",
  });
  const lookback = h("select", { name: "lookback" },
    LOOKBACKS.map(([key]) => h("option", { value: key, text: `Last ${key}` })),
    h("option", { value: "custom", text: "Custom range" }));
  lookback.value = q.get("lookback") || "1h";
  const start = h("input", { type: "datetime-local", name: "start",
    value: microsToInput(q.get("start")) });
  const end = h("input", { type: "datetime-local", name: "end",
    value: microsToInput(q.get("end")) });
  const custom = h("div", { class: "custom-range" }, field("From", start), field("To", end));
  const showCustom = () => { custom.hidden = lookback.value !== "custom"; };
  lookback.addEventListener("change", showCustom);
  showCustom();
  const minDuration = h("input", { name: "minDuration", value: q.get("minDuration") || "",
    placeholder: "e.g. 1.2s, 100ms" });
  const maxDuration = h("input", { name: "maxDuration", value: q.get("maxDuration") || "",
    placeholder: "e.g. 1.1s" });
  const limit = h("input", { type: "number", name: "limit", min: "1", max: "1500",
    value: q.get("limit") || "20" });
  const error = h("p", { class: "form-error", role: "alert" });
  const form = h("form", { class: "panel search-form", novalidate: true },
    h("h2", { text: "Search" }),
    field("Service", service), field("Operation", operation),
    field("Tags", tags, "logfmt: key=value key2=\"a value\""),
    field("Lookback", lookback), custom,
    h("div", { class: "pair" }, field("Min duration", minDuration),
      field("Max duration", maxDuration)),
    field("Limit results", limit), error,
    h("button", { type: "submit", class: "primary", text: "Find Traces" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    error.textContent = "";
    const params = new URLSearchParams();
    if (!service.value) {
      error.textContent = "Choose a service.";
      return;
    }
    params.set("service", service.value);
    if (operation.value !== ALL) params.set("operation", operation.value);
    if (tags.value.trim()) {
      try {
        params.set("tags", JSON.stringify(parseLogfmt(tags.value)));
      } catch (err) {
        error.textContent = `Tags: ${err.message}`;
        return;
      }
    }
    params.set("lookback", lookback.value);
    if (lookback.value === "custom") {
      const from = inputToMicros(start.value);
      const to = inputToMicros(end.value);
      if (!from || !to) {
        error.textContent = "A custom range needs both ends.";
        return;
      }
      params.set("start", from);
      params.set("end", to);
    }
    if (minDuration.value.trim()) params.set("minDuration", minDuration.value.trim());
    if (maxDuration.value.trim()) params.set("maxDuration", maxDuration.value.trim());
    params.set("limit", limit.value || "20");
    onSubmit(params);
  });
  return { form, service, operation };
}

async function loadOperations(select, service, wanted) {
  fill(select, h("option", { value: ALL, text: "all" }));
  if (!service) return;
  const names = await api.operations(service);
  for (const name of names) select.appendChild(h("option", { value: name, text: name }));
  if (wanted && names.includes(wanted)) select.value = wanted;
}

async function loadServices(controls, q, status) {
  const { service, operation } = controls;
  let names;
  try {
    names = await api.services();
  } catch (err) {
    fill(status, h("p", { class: "error", text: `Cannot load services: ${err.message}` }));
    return;
  }
  fill(service, h("option", { value: "", text: names.length ? "Choose a service" : "No services yet" }),
    names.map((name) => h("option", { value: name, text: name })));
  const wanted = q.get("service") || (names.length === 1 ? names[0] : "");
  if (names.includes(wanted)) service.value = wanted;
  service.addEventListener("change", () => loadOperations(operation, service.value, null)
    .catch((err) => fill(status, h("p", { class: "error", text: err.message }))));
  await loadOperations(operation, service.value, q.get("operation"));
}

// The API query of a page URL: the window is computed now from the lookback.
function apiParams(q) {
  const params = new URLSearchParams();
  for (const key of ["service", "operation", "tags", "minDuration", "maxDuration", "limit"]) {
    if (q.get(key)) params.set(key, q.get(key));
  }
  const lookback = q.get("lookback") || "1h";
  params.set("lookback", lookback);
  if (lookback === "custom" && q.get("start") && q.get("end")) {
    params.set("start", q.get("start"));
    params.set("end", q.get("end"));
  } else {
    const end = Date.now() * 1000;
    params.set("end", String(end));
    params.set("start", String(end - lookbackMicros(lookback)));
  }
  if (!params.get("limit")) params.set("limit", "20");
  return params;
}

// Enough of the id to tell traces apart; padded 64-bit ids start with zeros.
function shortId(traceID) {
  return (traceID.replace(/^0+/, "") || "0").slice(0, 8);
}

function resultRow(trace, maxDuration) {
  const widthPct = maxDuration ? Math.max(1, (trace.duration / maxDuration) * 100) : 100;
  const services = [...trace.services.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  return h("a", { class: "result", href: `/trace/${trace.traceID}`,
    dataset: { traceId: trace.traceID } },
  h("div", { class: "result-head" },
    h("span", { class: "result-name", text: trace.name }),
    h("span", { class: "trace-id", text: shortId(trace.traceID) }),
    h("span", { class: "result-duration", text: formatDuration(trace.duration) })),
  h("div", { class: "duration-bar" }, h("span", { style: { width: `${widthPct}%` } })),
  h("div", { class: "result-body" },
    h("span", { class: "tag", text: `${trace.spans.length} Span${trace.spans.length === 1 ? "" : "s"}` }),
    trace.errors ? h("span", { class: "tag error", text: `${trace.errors} Error${trace.errors === 1 ? "" : "s"}` }) : null,
    h("span", { class: "services" }, services.map(([name, count]) =>
      h("span", { class: "service-badge", style: { borderLeftColor: serviceColor(name) } },
        `${name} (${count})`))),
    h("span", { class: "result-time", title: formatTime(trace.start),
      text: `${formatTime(trace.start).slice(0, 19)} · ${relativeTime(trace.start)}` })));
}

function renderResults(section, body, sortKey) {
  const traces = (body.data || []).map(prepareTrace).filter((t) => t.spans.length);
  const warnings = (body.errors || []).map((e) => e.msg);
  const list = h("div", { class: "result-list" });
  const sort = h("select", { class: "sort", "aria-label": "Sort" },
    Object.entries(SORTS).map(([key, [label]]) => h("option", { value: key, text: label })));
  sort.value = SORTS[sortKey] ? sortKey : "recent";
  const maxDuration = Math.max(0, ...traces.map((t) => t.duration));
  const drawList = () => {
    const sorted = [...traces].sort(SORTS[sort.value][1]);
    fill(list, sorted.map((t) => resultRow(t, maxDuration)));
  };
  sort.addEventListener("change", drawList);
  const plot = h("div", { class: "scatter panel" });
  fill(section,
    warnings.length ? h("p", { class: "error", text: warnings.join("; ") }) : null,
    traces.length ? plot : null,
    h("div", { class: "result-bar" },
      h("h2", { class: "result-count", text: `${traces.length} Trace${traces.length === 1 ? "" : "s"}` }),
      traces.length ? sort : null),
    traces.length ? list : h("p", { class: "muted empty", text: "No trace matched. Widen the lookback or drop a condition." }));
  drawList();
  if (!traces.length) return () => {};
  return scatterPlot(plot, traces, (trace) => navigate(`/trace/${trace.traceID}`));
}

export function renderSearch(main, url) {
  const q = url.searchParams;
  const results = h("section", { class: "results" });
  const controls = buildForm(q, (params) => navigate(`/search?${params}`));
  main.append(h("div", { class: "search-page" }, controls.form, results));
  let disposePlot = () => {};
  const ready = loadServices(controls, q, results);
  if (!q.get("service")) {
    fill(results, h("div", { class: "hint panel" }, h("h2", { text: "Find traces" }),
      h("p", { text: "Pick a service and press Find Traces. Results plot each trace's start time against its duration; click a dot or a row to open the trace." })));
    return () => disposePlot();
  }
  fill(results, h("p", { class: "muted", text: "Searching…" }));
  const started = performance.now();
  ready.then(() => api.searchTraces(apiParams(q)))
    .then((body) => {
      if (!results.isConnected) return;
      disposePlot = renderResults(results, body, q.get("sort"));
      results.dataset.loadedMs = String(Math.round(performance.now() - started));
    })
    .catch((err) => fill(results, h("p", { class: "error", text: `Search failed: ${err.message}` })));
  return () => disposePlot();
}
