"""Serves the web UI (``shim/ui``: plain HTML, CSS and JavaScript modules, no build step).

``/`` and every other path outside ``/api`` and ``/static`` answer ``index.html``, so deep
links (``/trace/<id>``, ``/search?service=...``, ``/dependencies``, ``/stats``) load the app,
which reads the location and shows that view (what jaeger-query's static handler does).
Assets are ``/static/<file>``, read once at start-up; only the files shipped in ``shim/ui``
are served, so no request can name a path outside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

from aiohttp import web

UI_DIR = Path(__file__).resolve().parent / "ui"
#: Explicit types: JavaScript modules are refused by browsers under a wrong MIME type, and
#: the system's MIME table varies (some map .js to text/plain).
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_HEADERS = {
    # Assets are not fingerprinted: a browser revalidates instead of running a stale app.
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


def load_assets(directory: Path = UI_DIR) -> Dict[str, Tuple[bytes, str]]:
    """``{file name: (bytes, content type)}`` of the UI files."""
    assets = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type is not None:
            assets[path.name] = (path.read_bytes(), content_type)
    if "index.html" not in assets:
        raise RuntimeError("the web UI is not installed: no index.html in %s" % directory)
    return assets


def add_ui_routes(app: web.Application, directory: Path = UI_DIR) -> None:
    """``/static/<file>`` and the ``index.html`` fallback for every other GET."""
    assets = load_assets(directory)
    index, _ = assets["index.html"]

    def respond(body: bytes, content_type: str) -> web.Response:
        text = not content_type.startswith("image/png")
        response = web.Response(body=body, content_type=content_type,
                                charset="utf-8" if text else None)
        response.headers.update(_HEADERS)
        return response

    async def static(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound(text="no such UI file\n")
        return respond(*asset)

    async def page(request: web.Request) -> web.Response:
        return respond(index, "text/html")

    async def no_favicon(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    app.router.add_get("/static/{name}", static)
    app.router.add_get("/favicon.ico", no_favicon)
    app.router.add_get("/{tail:.*}", page)
