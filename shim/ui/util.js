// Small helpers shared by the views: DOM building, formatting, colours, logfmt.

const SVG_NS = "http://www.w3.org/2000/svg";

// Sets attributes, properties and listeners from a plain object on an element.
function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") el.textContent = value;
    else if (key === "class") el.setAttribute("class", value);
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "value" || key === "checked" || key === "selected") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// h("div", {class: "x", onclick: f}, child, "text", [more]) -> an HTML element.
export function h(tag, attrs, ...children) {
  return append(apply(document.createElement(tag), attrs), children);
}

// The same for SVG elements.
export function s(tag, attrs, ...children) {
  return append(apply(document.createElementNS(SVG_NS, tag), attrs), children);
}

// Replaces the children of el.
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// Durations arrive in microseconds.
export function formatDuration(us) {
  if (us === null || us === undefined || Number.isNaN(us)) return "";
  if (us < 1000) return `${trim(us, 0)}μs`;
  if (us < 1_000_000) return `${trim(us / 1000, 2)}ms`;
  if (us < 60_000_000) return `${trim(us / 1_000_000, 2)}s`;
  const minutes = Math.floor(us / 60_000_000);
  return `${minutes}m ${trim((us - minutes * 60_000_000) / 1_000_000, 1)}s`;
}

function trim(value, digits) {
  return String(Number(value.toFixed(digits)));
}

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

// Epoch microseconds as local "YYYY-MM-DD HH:MM:SS.mmm".
export function formatTime(us) {
  const d = new Date(us / 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.` +
    `${pad(d.getMilliseconds(), 3)}`;
}

export function formatClock(us) {
  const d = new Date(us / 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function relativeTime(us, nowMs = Date.now()) {
  const seconds = Math.round((nowMs - us / 1000) / 1000);
  if (seconds < 0) return "in the future";
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

export function formatPercent(fraction) {
  return `${trim(fraction * 100, 1)}%`;
}

// A stable colour per service name: the hue comes from a hash of the name, spread by the
// golden angle so that similar names still get well-separated hues.
export function serviceColor(name) {
  let hash = 2166136261;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 16777619);
  const hue = Math.round(((hash >>> 0) % 64) * 137.508) % 360;
  return `hsl(${hue}, 62%, 46%)`;
}

// "error=true http.status_code=500 msg=\"a b\"" -> {error: "true", ...}; throws on bad input.
export function parseLogfmt(text) {
  const tags = {};
  const re = /\s*([^\s=]+)=("((?:[^"\\]|\\.)*)"|(\S*))/y;
  let pos = 0;
  const input = text.trim();
  while (pos < input.length) {
    re.lastIndex = pos;
    const m = re.exec(input);
    if (!m) throw new Error(`expected key=value at "${input.slice(pos, pos + 20)}"`);
    tags[m[1]] = m[3] !== undefined ? m[3].replace(/\\(.)/g, "$1") : m[4];
    pos = re.lastIndex;
    while (pos < input.length && /\s/.test(input[pos])) pos++;
  }
  return tags;
}

export function toLogfmt(tags) {
  return Object.entries(tags)
    .map(([k, v]) => (/[\s"]/.test(v) || v === "" ? `${k}="${v.replace(/(["\\])/g, "\\$1")}"`
      : `${k}=${v}`))
    .join(" ");
}

// Round tick values covering [min, max] (about `count` of them).
export function ticks(min, max, count = 5) {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((m) => m >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(v);
  return out;
}

// Lookback choices of the search and statistics forms, in microseconds.
export const LOOKBACKS = [
  ["5m", 5 * 60e6], ["15m", 15 * 60e6], ["30m", 30 * 60e6], ["1h", 3600e6], ["2h", 7200e6],
  ["6h", 6 * 3600e6], ["12h", 12 * 3600e6], ["24h", 24 * 3600e6], ["2d", 48 * 3600e6],
  ["7d", 7 * 24 * 3600e6],
];

export function lookbackMicros(name) {
  const found = LOOKBACKS.find(([key]) => key === name);
  return found ? found[1] : 3600e6;
}
