// The single-page app: picks the view from the location, keeps links inside the page.
// Views: /search (default), /trace/<id>, /dependencies, /stats. Each render function gets
// the <main> element and the URL, and may return a cleanup function.

import { renderDependencies } from "./deps.js";
import { navigate, setRouter } from "./nav.js";
import { renderSearch } from "./search.js";
import { renderStats } from "./stats.js";
import { renderTrace } from "./trace.js";

const main = document.getElementById("view");
let cleanup = null;

function viewOf(path) {
  const trace = path.match(/^\/trace\/([^/]+)\/?$/);
  if (trace) return ["trace", (main, url) => renderTrace(main, decodeURIComponent(trace[1]), url)];
  if (path.startsWith("/dependencies")) return ["dependencies", renderDependencies];
  if (path.startsWith("/stats")) return ["stats", renderStats];
  return ["search", renderSearch];
}

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  const url = new URL(window.location.href);
  const [name, render] = viewOf(url.pathname);
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.view === name);
  }
  main.replaceChildren();
  main.dataset.view = name;
  const result = render(main, url);
  if (typeof result === "function") cleanup = result;
  else if (result && typeof result.then === "function") {
    result.then((fn) => { if (typeof fn === "function") cleanup = fn; });
  }
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0 || link.target ||
      event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.href);
  if (url.origin !== window.location.origin || /^\/(api|static)\//.test(url.pathname)) return;
  event.preventDefault();
  navigate(url.href);
});

document.getElementById("jump").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = event.target.elements.trace.value.trim();
  if (id) navigate(`/trace/${encodeURIComponent(id)}`);
});

setRouter(route);
window.addEventListener("popstate", route);
route();
