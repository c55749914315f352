// The search results' scatter plot: x = trace start, y = trace duration, one dot per trace
// (bigger with more spans, red with errors). Redraws on resize; returns its cleanup.

import { fill, formatClock, formatDuration, s, ticks } from "./util.js";

const HEIGHT = 200;
const MARGIN = { top: 12, right: 16, bottom: 26, left: 64 };

function radius(trace) {
  return Math.min(12, 3 + Math.sqrt(trace.spans.length));
}

function draw(container, traces, onPick) {
  const width = Math.max(320, container.clientWidth || 800);
  const innerW = width - MARGIN.left - MARGIN.right;
  const innerH = HEIGHT - MARGIN.top - MARGIN.bottom;
  let x0 = Math.min(...traces.map((t) => t.start));
  let x1 = Math.max(...traces.map((t) => t.start));
  if (x1 - x0 < 1000) { x0 -= 500_000; x1 += 500_000; } // one trace: centre it in a second
  const pad = (x1 - x0) * 0.03; // keeps the dots at either end inside the plot
  x0 -= pad;
  x1 += pad;
  const y1 = Math.max(1, ...traces.map((t) => t.duration)) * 1.1;
  const x = (us) => MARGIN.left + ((us - x0) / (x1 - x0)) * innerW;
  const y = (us) => MARGIN.top + innerH - (us / y1) * innerH;
  const axis = [];
  for (const value of ticks(0, y1, 4)) {
    axis.push(s("line", { class: "grid", x1: MARGIN.left, x2: width - MARGIN.right,
      y1: y(value), y2: y(value) }));
    axis.push(s("text", { class: "axis-label", x: MARGIN.left - 6, y: y(value) + 4,
      "text-anchor": "end", text: value ? formatDuration(value) : "0" }));
  }
  for (const value of ticks(x0, x1, Math.max(2, Math.floor(innerW / 110)))) {
    axis.push(s("text", { class: "axis-label", x: x(value), y: HEIGHT - 8,
      "text-anchor": "middle", text: formatClock(value) }));
  }
  // Big dots first, so small ones on top stay clickable.
  const dots = [...traces].sort((a, b) => radius(b) - radius(a)).map((trace) => s("circle", {
    class: trace.errors ? "dot dot-error" : "dot",
    cx: x(trace.start), cy: y(trace.duration), r: radius(trace),
    dataset: { traceId: trace.traceID },
    tabindex: "0",
    onclick: () => onPick(trace),
    onkeydown: (event) => { if (event.key === "Enter") onPick(trace); },
  }, s("title", { text: `${trace.name}\n${formatDuration(trace.duration)}, ` +
    `${trace.spans.length} spans${trace.errors ? `, ${trace.errors} errors` : ""}` })));
  fill(container, s("svg", { class: "scatter-svg", width, height: HEIGHT,
    viewBox: `0 0 ${width} ${HEIGHT}`, role: "img",
    "aria-label": "Traces by start time and duration" },
  s("text", { class: "axis-title", x: 4, y: 12, text: "duration" }), axis, dots));
}

export function scatterPlot(container, traces, onPick) {
  let frame = 0;
  const redraw = () => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => draw(container, traces, onPick));
  };
  draw(container, traces, onPick);
  window.addEventListener("resize", redraw);
  return () => {
    cancelAnimationFrame(frame);
    window.removeEventListener("resize", redraw);
  };
}
