// The service dependency graph: services in columns by call depth (callers left of their
// callees), edges labelled with call counts, and the same edges as a table.

import { api } from "./api.js";
import { navigate } from "./nav.js";
import { fill, h, LOOKBACKS, lookbackMicros, s, serviceColor } from "./util.js";

const NODE_W = 170;
const NODE_H = 34;
const COL_GAP = 90;
const ROW_GAP = 26;
const PAD = 20;
const BACK_DROP = 60;

// Columns: the longest call path from a caller-less service, ignoring edges that close a
// cycle (found by depth-first search), so every edge of the rest points rightwards. The
// search starts at the services that make more calls than they receive, so in a cycle the
// edge judged "backwards" is the one against the main flow of calls.
export function layout(links) {
  const names = [...new Set(links.flatMap((l) => [l.parent, l.child]))].sort();
  const out = new Map(names.map((n) => [n, []]));
  const balance = new Map(names.map((n) => [n, 0]));
  for (const l of links) {
    out.get(l.parent).push(l.child);
    balance.set(l.parent, balance.get(l.parent) + l.callCount);
    balance.set(l.child, balance.get(l.child) - l.callCount);
  }
  const starts = [...names].sort((a, b) => balance.get(b) - balance.get(a) || a.localeCompare(b));
  const state = new Map();
  const back = new Set();
  for (const start of starts) {
    if (state.has(start)) continue;
    const stack = [[start, 0]];
    state.set(start, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const next = out.get(top[0])[top[1]++];
      if (next === undefined) {
        state.set(top[0], 2);
        stack.pop();
      } else if (state.get(next) === 1) back.add(`${top[0]}\n${next}`);
      else if (!state.has(next)) {
        state.set(next, 1);
        stack.push([next, 0]);
      }
    }
  }
  const forward = links.filter((l) => !back.has(`${l.parent}\n${l.child}`));
  const column = new Map(names.map((n) => [n, 0]));
  // Longest path by relaxation: at most |names| rounds on an acyclic graph.
  for (let round = 0; round < names.length; round++) {
    let changed = false;
    for (const l of forward) {
      if (column.get(l.child) < column.get(l.parent) + 1) {
        column.set(l.child, column.get(l.parent) + 1);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const columns = [];
  for (const n of names) (columns[column.get(n)] ||= []).push(n);
  const position = new Map();
  columns.forEach((col, ci) => {
    // Order a column by the mean row of its callers, to cut edge crossings.
    const key = (n) => {
      const rows = forward.filter((l) => l.child === n && position.has(l.parent))
        .map((l) => position.get(l.parent).row);
      return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Infinity;
    };
    col.sort((a, b) => key(a) - key(b) || a.localeCompare(b));
    col.forEach((n, row) => position.set(n, {
      row, x: PAD + ci * (NODE_W + COL_GAP), y: PAD + row * (NODE_H + ROW_GAP),
    }));
  });
  const height = PAD * 2 + Math.max(1, ...columns.map((c) => c.length)) * (NODE_H + ROW_GAP);
  const width = PAD * 2 + columns.length * (NODE_W + COL_GAP) - COL_GAP;
  return { names, position, back, width, height };
}

function graph(links) {
  const { names, position, back, width, height } = layout(links);
  const maxCalls = Math.max(1, ...links.map((l) => l.callCount));
  let anyBack = false;
  const edges = links.map((l) => {
    const a = position.get(l.parent);
    const b = position.get(l.child);
    const isBack = back.has(`${l.parent}\n${l.child}`) || b.x <= a.x;
    anyBack ||= isBack;
    const x1 = isBack ? a.x + NODE_W / 2 : a.x + NODE_W;
    const y1 = isBack ? a.y + NODE_H : a.y + NODE_H / 2;
    const x2 = isBack ? b.x + NODE_W / 2 : b.x;
    const y2 = isBack ? b.y + NODE_H : b.y + NODE_H / 2;
    // Edges against the flow loop under every node, so they cross no box.
    const low = height - PAD + BACK_DROP;
    const d = isBack
      ? `M${x1},${y1} C${x1},${low} ${x2},${low} ${x2},${y2}`
      : `M${x1},${y1} C${x1 + COL_GAP / 2},${y1} ${x2 - COL_GAP / 2},${y2} ${x2},${y2}`;
    const mx = (x1 + x2) / 2;
    const my = isBack ? (y1 + y2 + 6 * low) / 8 + 14 : (y1 + y2) / 2;
    return s("g", { class: "edge", dataset: { parent: l.parent, child: l.child } },
      s("path", { d, "marker-end": "url(#arrow)", class: isBack ? "back" : "",
        "stroke-width": 1 + 3 * Math.log1p(l.callCount) / Math.log1p(maxCalls) }),
      s("title", { text: `${l.parent} → ${l.child}: ${l.callCount} calls` }),
      s("text", { class: "edge-label", x: mx, y: my - 4, "text-anchor": "middle",
        text: String(l.callCount) }));
  });
  const nodes = names.map((n) => {
    const p = position.get(n);
    return s("g", { class: "node", dataset: { service: n }, tabindex: "0",
      transform: `translate(${p.x},${p.y})`,
      onclick: () => navigate(`/search?service=${encodeURIComponent(n)}&lookback=1h&limit=20`) },
    s("rect", { width: NODE_W, height: NODE_H, rx: 6, style: { stroke: serviceColor(n) } }),
    s("rect", { width: 6, height: NODE_H, rx: 2, style: { fill: serviceColor(n) } }),
    s("text", { x: 14, y: NODE_H / 2 + 4, text: n.length > 22 ? `${n.slice(0, 21)}…` : n }),
    s("title", { text: `${n} (click to search its traces)` }));
  });
  const total = height + (anyBack ? BACK_DROP : 0);
  return s("svg", { class: "deps-svg", width, height: total, viewBox: `0 0 ${width} ${total}` },
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
      markerWidth: "9", markerHeight: "9", markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
    s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow-head" }))),
    edges, nodes);
}

export function renderDependencies(main, url) {
  const lookbackName = url.searchParams.get("lookback") || "24h";
  const lookback = h("select", { "aria-label": "Lookback" },
    LOOKBACKS.map(([key]) => h("option", { value: key, text: `Last ${key}` })));
  lookback.value = LOOKBACKS.some(([k]) => k === lookbackName) ? lookbackName : "24h";
  lookback.addEventListener("change", () => navigate(`/dependencies?lookback=${lookback.value}`));
  const body = h("div", { class: "deps-body" }, h("p", { class: "muted", text: "Loading…" }));
  main.append(h("div", { class: "panel deps" },
    h("div", { class: "panel-head" }, h("h1", { text: "Service dependencies" }), lookback),
    body));
  api.dependencies(Date.now(), Math.round(lookbackMicros(lookback.value) / 1000))
    .then((links) => {
      if (!links.length) {
        fill(body, h("p", { class: "muted empty", text: "No calls between services in this window." }));
        return;
      }
      const sorted = [...links].sort((a, b) => b.callCount - a.callCount);
      fill(body, h("div", { class: "deps-graph" }, graph(links)),
        h("table", { class: "table" },
          h("thead", {}, h("tr", {}, ["Caller", "Callee", "Calls"].map((t) => h("th", { text: t })))),
          h("tbody", {}, sorted.map((l) => h("tr", {}, h("td", { text: l.parent }),
            h("td", { text: l.child }), h("td", { class: "num", text: l.callCount }))))));
    })
    .catch((err) => fill(body, h("p", { class: "error", text: `Cannot load dependencies: ${err.message}` })));
}
