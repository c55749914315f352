// In-app navigation without a page load; app.js registers the router.

let router = null;

export function setRouter(fn) {
  router = fn;
}

// Goes to `href` (a path inside the app); `replace` rewrites the current history entry.
export function navigate(href, replace = false) {
  const url = new URL(href, window.location.href);
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  if (router) router();
}
