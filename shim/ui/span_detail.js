// The selected span's detail: timing, ids, references, tags, process, logs, warnings.

import { formatDuration, h, serviceColor } from "./util.js";

function valueText(tag) {
  if (tag.type === "bool") return tag.value ? "true" : "false";
  return typeof tag.value === "string" ? tag.value : JSON.stringify(tag.value);
}

function kvTable(title, tags, cls) {
  if (!tags || !tags.length) return null;
  return h("section", { class: cls },
    h("h3", { text: `${title} (${tags.length})` }),
    h("table", { class: "table kv" }, h("tbody", {}, tags.map((t) => h("tr", {},
      h("td", { class: "key", text: t.key }),
      h("td", { class: t.key === "error" && valueText(t) === "true" ? "value error" : "value" },
        h("span", { text: valueText(t) }),
        t.type && t.type !== "string" ? h("small", { class: "type", text: t.type }) : null))))));
}

function logs(span, traceStart) {
  if (!span.logs || !span.logs.length) return null;
  return h("section", { class: "logs" },
    h("h3", { text: `Logs (${span.logs.length})` }),
    span.logs.map((log) => h("div", { class: "log" },
      h("div", { class: "log-time", text: `+${formatDuration(log.timestamp - traceStart)}` }),
      h("table", { class: "table kv" }, h("tbody", {}, (log.fields || []).map((f) => h("tr", {},
        h("td", { class: "key", text: f.key }), h("td", { class: "value", text: valueText(f) }))))))));
}

function references(span) {
  const refs = span.references || [];
  if (!refs.length) return null;
  return h("section", { class: "refs" }, h("h3", { text: "References" }),
    h("ul", {}, refs.map((r) => h("li", {},
      h("code", { text: r.refType }), " ",
      r.traceID.replace(/^0+/, "") === span.traceID.replace(/^0+/, "")
        ? h("span", { text: `span ${r.spanID}` })
        : h("a", { href: `/trace/${r.traceID}?span=${r.spanID}`, text: `trace ${r.traceID} span ${r.spanID}` })))));
}

export function spanDetail(span, trace) {
  const kind = (span.tags || []).find((t) => t.key === "span.kind");
  return h("div", { class: "detail", dataset: { spanId: span.spanID } },
    h("h2", {}, h("span", { class: "svc-dot", style: { background: serviceColor(span.process.serviceName) } }),
      `${span.process.serviceName}: ${span.operationName}`),
    h("dl", { class: "facts" },
      [["Duration", formatDuration(span.duration)],
        ["Start", `+${formatDuration(span.startTime - trace.start)}`],
        ["Span ID", span.spanID],
        ["Parent", span.parent ? span.parent.spanID : "(root)"],
        ["Kind", kind ? String(kind.value) : "—"],
        ["Children", String(span.children.length)]]
        .map(([k, v]) => h("div", {}, h("dt", { text: k }), h("dd", { text: v })))),
    span.warnings && span.warnings.length
      ? h("ul", { class: "warnings" }, span.warnings.map((w) => h("li", { text: w }))) : null,
    references(span),
    kvTable("Tags", span.tags, "tags"),
    kvTable(`Process: ${span.process.serviceName}`, span.process.tags, "process"),
    h("section", { class: "process-name" }, span.process.tags && span.process.tags.length ? null
      : h("p", { class: "muted", text: `Process ${span.process.serviceName} has no tags.` })),
    logs(span, trace.start));
}
