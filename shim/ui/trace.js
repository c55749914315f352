// The trace view: header, time per service, the timeline (gantt + collapsible span tree),
// and the detail of the selected span. /trace/<id>?span=<spanID> selects a span.
//
// The timeline is virtualized: only the rows in view (plus a margin) exist in the DOM, so a
// trace of thousands of spans costs the same DOM work as one of fifty.

import { api } from "./api.js";
import { prepareTrace, serviceBreakdown, visibleSpans } from "./model.js";
import { spanDetail } from "./span_detail.js";
import {
  fill, formatDuration, formatPercent, formatTime, h, serviceColor,
} from "./util.js";

const ROW_HEIGHT = 26;
const OVERSCAN = 12;
const MAX_INDENT = 30;

function header(trace) {
  const facts = [
    ["Trace start", formatTime(trace.start)],
    ["Duration", formatDuration(trace.duration)],
    ["Services", trace.services.size],
    ["Depth", trace.depth],
    ["Total spans", trace.spans.length],
    ["Errors", trace.errors],
  ];
  return h("div", { class: "panel trace-head" },
    h("h1", {}, h("span", { class: "trace-name", text: trace.name }),
      h("span", { class: "trace-id", text: trace.traceID })),
    h("dl", { class: "facts" }, facts.map(([k, v]) => h("div", { class: k === "Errors" && v ? "error" : "" },
      h("dt", { text: k }), h("dd", { text: String(v) })))),
    h("a", { class: "json-link", href: `/api/traces/${trace.traceID}?prettyPrint=true`,
      target: "_blank", text: "JSON" }));
}

function breakdown(trace) {
  const rows = serviceBreakdown(trace);
  const total = trace.duration || 1;
  return h("details", { class: "panel breakdown" },
    h("summary", { text: "Time per service (self time: not spent waiting for child spans)" }),
    h("table", { class: "table" },
      h("thead", {}, h("tr", {}, ["Service", "Spans", "Errors", "Self time", ""].map((t) => h("th", { text: t })))),
      h("tbody", {}, rows.map((r) => h("tr", {},
        h("td", {}, h("span", { class: "svc-dot", style: { background: serviceColor(r.service) } }), r.service),
        h("td", { class: "num", text: r.spans }),
        h("td", { class: r.errors ? "num error" : "num", text: r.errors }),
        h("td", { class: "num", text: formatDuration(r.selfTime) }),
        h("td", { class: "bar-cell" }, h("span", { class: "hbar", title: formatPercent(r.selfTime / total),
          style: { width: `${Math.min(100, (r.selfTime / total) * 100)}%`, background: serviceColor(r.service) } })))))));
}

function ruler(duration) {
  return h("div", { class: "tl-ruler" }, [0, 0.25, 0.5, 0.75, 1].map((f) =>
    h("span", { class: "tick", style: { left: `${f * 100}%` }, text: f ? formatDuration(f * duration) : "0" })));
}

function matches(span, needle) {
  if (span.operationName.toLowerCase().includes(needle) ||
      span.process.serviceName.toLowerCase().includes(needle) || span.spanID.includes(needle)) return true;
  return (span.tags || []).some((t) => `${t.key}=${t.value}`.toLowerCase().includes(needle));
}

class Timeline {
  constructor(trace, onSelect) {
    this.trace = trace;
    this.onSelect = onSelect;
    this.collapsed = new Set();
    this.selected = null;
    this.found = new Set();
    this.visible = trace.order;
    this.rows = h("div", { class: "tl-rows" });
    this.spacer = h("div", { class: "tl-spacer" }, this.rows);
    this.scroller = h("div", { class: "tl-scroll" }, this.spacer);
    this.scroller.addEventListener("scroll", () => this.schedule());
    this.rows.addEventListener("click", (event) => this.click(event));
    this.frame = 0;
  }

  schedule() {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => this.draw());
  }

  refresh() {
    this.visible = visibleSpans(this.trace.order, this.collapsed);
    this.spacer.style.height = `${this.visible.length * ROW_HEIGHT}px`;
    this.draw();
  }

  draw() {
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.visible.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    this.rows.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    const out = [];
    for (let i = first; i < last; i++) out.push(this.row(this.visible[i]));
    this.rows.replaceChildren(...out);
  }

  row(span) {
    const { start, duration } = this.trace;
    const total = duration || 1;
    const left = ((span.startTime - start) / total) * 100;
    const width = Math.max(0.15, (span.duration / total) * 100);
    const color = serviceColor(span.process.serviceName);
    const collapsed = this.collapsed.has(span.key);
    const kids = span.children.length;
    const classes = ["tl-row"];
    if (span === this.selected) classes.push("selected");
    if (span.error) classes.push("has-error");
    if (this.found.has(span)) classes.push("found");
    return h("div", { class: classes.join(" "), dataset: { spanId: span.spanID, key: span.key } },
      h("div", { class: "tl-name", style: { paddingLeft: `${Math.min(span.depth, MAX_INDENT) * 12 + 4}px` },
        title: `${span.process.serviceName}: ${span.operationName} (depth ${span.depth})` },
      kids ? h("button", { class: "toggle", type: "button", "aria-expanded": String(!collapsed),
        text: `${collapsed ? "▸" : "▾"} ${kids}` }) : h("span", { class: "toggle-spacer" }),
      h("span", { class: "svc-dot", style: { background: color } }),
      span.error ? h("span", { class: "error-mark", title: "error", text: "!" }) : null,
      h("span", { class: "svc", text: span.process.serviceName }),
      h("span", { class: "op", text: span.operationName })),
      h("div", { class: "tl-bar-cell" },
        h("div", { class: "tl-bar", style: { left: `${left}%`, width: `${width}%`, background: color } }),
        this.label(span, left, width)));
  }

  // The duration after the bar; inside a long bar that ends near the right edge; before a
  // short one there.
  label(span, left, width) {
    const text = formatDuration(span.duration);
    if (left + width <= 85) return h("span", { class: "tl-label", style: { left: `${left + width}%` }, text });
    if (width >= 12) return h("span", { class: "tl-label inside", style: { right: `${100 - left - width}%` }, text });
    return h("span", { class: "tl-label", style: { right: `${100 - left}%` }, text });
  }

  click(event) {
    const rowEl = event.target.closest(".tl-row");
    if (!rowEl) return;
    const span = this.visible.find((sp) => sp.key === rowEl.dataset.key);
    if (!span) return;
    if (event.target.closest(".toggle")) {
      if (this.collapsed.has(span.key)) this.collapsed.delete(span.key);
      else this.collapsed.add(span.key);
      this.refresh();
      return;
    }
    this.select(span);
  }

  select(span, scroll = false) {
    this.selected = span;
    if (scroll) {
      // Uncollapse the ancestors so the span is in the list, then bring it into view.
      for (let p = span.parent; p; p = p.parent) this.collapsed.delete(p.key);
      this.refresh();
      const index = this.visible.indexOf(span);
      const top = index * ROW_HEIGHT;
      if (top < this.scroller.scrollTop || top > this.scroller.scrollTop + this.scroller.clientHeight - ROW_HEIGHT) {
        this.scroller.scrollTop = Math.max(0, top - this.scroller.clientHeight / 3);
      }
    }
    this.draw();
    this.onSelect(span);
  }

  setCollapsed(keys) {
    this.collapsed = keys;
    this.refresh();
  }

  find(text) {
    const needle = text.trim().toLowerCase();
    this.found = new Set(needle ? this.trace.order.filter((sp) => matches(sp, needle)) : []);
    this.draw();
    return this.found;
  }
}

function toolbar(timeline, trace) {
  const count = h("span", { class: "muted find-count" });
  const find = h("input", { type: "search", class: "find", placeholder: "Find spans (service, operation, tag)",
    "aria-label": "Find spans" });
  let cursor = -1;
  find.addEventListener("input", () => {
    const found = timeline.find(find.value);
    cursor = -1;
    count.textContent = find.value.trim() ? `${found.size} match${found.size === 1 ? "" : "es"}` : "";
  });
  find.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    const list = trace.order.filter((sp) => timeline.found.has(sp));
    if (!list.length) return;
    cursor = (cursor + 1) % list.length;
    timeline.select(list[cursor], true);
  });
  const withChildren = () => new Set(trace.order.filter((sp) => sp.children.length).map((sp) => sp.key));
  return h("div", { class: "tl-toolbar" },
    h("button", { type: "button", text: "Expand all", onclick: () => timeline.setCollapsed(new Set()) }),
    h("button", { type: "button", text: "Collapse all", onclick: () => timeline.setCollapsed(withChildren()) }),
    h("button", { type: "button", text: "Expand one level", onclick: () => {
      const next = new Set(timeline.collapsed);
      const top = trace.order.filter((sp) => next.has(sp.key))
        .reduce((min, sp) => Math.min(min, sp.depth), Infinity);
      for (const sp of trace.order) if (sp.depth === top) next.delete(sp.key);
      timeline.setCollapsed(next);
    } }),
    find, count);
}

export function renderTrace(main, traceId, url) {
  fill(main, h("p", { class: "muted", text: `Loading trace ${traceId}…` }));
  const started = performance.now();
  let timeline = null;
  api.trace(traceId).then((data) => {
    if (!main.isConnected) return;
    const trace = prepareTrace(data[0]);
    const detail = h("div", { class: "panel span-detail" },
      h("p", { class: "muted", text: "Click a span to see its tags, logs and process." }));
    timeline = new Timeline(trace, (span) => {
      fill(detail, spanDetail(span, trace));
      const next = new URL(window.location.href);
      next.searchParams.set("span", span.spanID);
      history.replaceState(null, "", next);
    });
    fill(main, h("div", { class: "trace-page" }, header(trace), breakdown(trace),
      h("div", { class: "panel timeline" }, toolbar(timeline, trace),
        h("div", { class: "tl-header" }, h("div", { class: "tl-name-head", text: "Service & Operation" }),
          ruler(trace.duration)),
        timeline.scroller),
      detail));
    timeline.refresh();
    const wanted = url.searchParams.get("span");
    const initial = (wanted && trace.order.find((sp) => sp.spanID === wanted)) || null;
    if (initial) timeline.select(initial, true);
    main.dataset.renderMs = String(Math.round(performance.now() - started));
  }).catch((err) => {
    const missing = err.status === 404;
    fill(main, h("div", { class: "panel" },
      h("h1", { text: missing ? "Trace not found" : "Cannot load the trace" }),
      h("p", { class: missing ? "" : "error", text: missing
        ? `No trace ${traceId} in the store. It may be older than the retention, or not sampled.`
        : err.message })));
  });
  return () => { if (timeline) cancelAnimationFrame(timeline.frame); };
}
