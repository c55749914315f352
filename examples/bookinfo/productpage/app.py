"""productpage: the BookInfo page and API, in Flask, with Istio BookInfo's routes and rules.

Routes: ``/`` and ``/index.html`` (the service tree), ``/health``, ``POST /login`` and
``/logout`` (the user lives in the signed cookie session), ``/productpage`` (always 200; a
failed upstream degrades its part of the page), ``/api/v1/products`` and
``/api/v1/products/<id>[/reviews|/ratings]`` (upstream JSON with the upstream's status),
``/metrics`` (Prometheus). Upstream addresses come from ``DETAILS_HOSTNAME``,
``REVIEWS_HOSTNAME``, ``RATINGS_HOSTNAME``, ``*_SERVICE_PORT`` and ``SERVICES_DOMAIN``;
``FLOOD_FACTOR`` adds that many concurrent reviews calls to each page view.

The one header productpage sets itself is ``end-user``, the signed-in user: an application
header Istio routes on (``end-user: jason`` goes to reviews v2 in the routing task). The
tracing headers and ``x-request-id`` are forwarded by the instrumentation, not here.
"""

from __future__ import annotations

import contextvars
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Mapping, Optional

from flask import Flask, Response, redirect, render_template, request, session
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .. import faults
from ..upstream import service_url
from .upstreams import Upstreams

PRODUCT_ID = 0
PRODUCTS: List[Dict[str, Any]] = [{
    "id": PRODUCT_ID,
    "title": "The Comedy of Errors",
    "descriptionHtml": (
        '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: '
        "The Comedy of Errors is one of <b>William Shakespeare's</b> early plays, his "
        "shortest and one of his most farcical comedies: two pairs of identical twins, "
        "separated at birth, land in the same town on the same day."),
}]

# BookInfo hard-codes its session key, so every replica reads every replica's cookie.
SECRET_KEY = b"bookinfo-opentracing-sls-demo-key"


def service_tree(urls: Mapping[str, str], own_url: str) -> Dict[str, Any]:
    """The services productpage knows about, for the index page."""
    ratings = {"name": urls["ratings"], "endpoint": "ratings", "children": []}
    details = {"name": urls["details"], "endpoint": "details", "children": []}
    reviews = {"name": urls["reviews"], "endpoint": "reviews", "children": [ratings]}
    return {"name": own_url, "endpoint": "productpage", "children": [details, reviews]}


def _user_headers() -> Dict[str, str]:
    user = session.get("user")
    return {"end-user": user} if user else {}


def _back() -> Any:
    # BookInfo redirects to the referrer; a request without one lands on the page.
    return redirect(request.referrer or "/productpage")


def _json(body: Any, status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def create_app(environ: Optional[Mapping[str, str]] = None) -> Flask:
    env = os.environ if environ is None else environ
    app = Flask(__name__)
    app.secret_key = env.get("PRODUCTPAGE_SECRET_KEY", "").encode() or SECRET_KEY
    faults.install(app, env)
    registry = CollectorRegistry()
    urls = {name: service_url(name, env) for name in ("details", "reviews", "ratings")}
    upstreams = Upstreams(urls, registry)
    app.extensions["bookinfo.upstreams"] = upstreams
    flood_factor = int(env.get("FLOOD_FACTOR", "0") or 0)
    flood_pool = ThreadPoolExecutor(max_workers=flood_factor) if flood_factor > 0 else None

    def flood(headers: Mapping[str, str]) -> None:
        # Extra reviews calls fired together, answers ignored: load for the mesh to spread.
        # Each runs in a copy of this request's context, as an asyncio task would.
        calls = [flood_pool.submit(contextvars.copy_context().run, upstreams.reviews,
                                   PRODUCT_ID, headers) for _ in range(flood_factor)]
        for call in calls:
            call.exception()

    @app.route("/")
    @app.route("/index.html")
    def index() -> Any:
        return render_template("index.html",
                               tree=service_tree(urls, request.host_url.rstrip("/")))

    @app.get("/health")
    def health() -> Any:
        return "Product page is healthy"

    @app.post("/login")
    def login() -> Any:
        response = _back()
        session["user"] = request.values.get("username", "")
        return response

    @app.get("/logout")
    def logout() -> Any:
        response = _back()
        session.pop("user", None)
        return response

    @app.get("/productpage")
    def productpage() -> Any:
        headers = _user_headers()
        details_status, details = upstreams.details(PRODUCT_ID, headers)
        if flood_pool is not None:
            flood(headers)
        reviews_status, reviews = upstreams.reviews(PRODUCT_ID, headers)
        return render_template("productpage.html", user=session.get("user", ""),
                               product=PRODUCTS[0], details=details,
                               details_status=details_status, reviews=reviews,
                               reviews_status=reviews_status)

    @app.get("/api/v1/products")
    def products() -> Any:
        return _json(PRODUCTS, 200)

    @app.get("/api/v1/products/<product_id>")
    def product(product_id: str) -> Any:
        status, body = upstreams.details(product_id, _user_headers())
        return _json(body, status)

    @app.get("/api/v1/products/<product_id>/reviews")
    def product_reviews(product_id: str) -> Any:
        status, body = upstreams.reviews(product_id, _user_headers())
        return _json(body, status)

    @app.get("/api/v1/products/<product_id>/ratings")
    def product_ratings(product_id: str) -> Any:
        status, body = upstreams.ratings(product_id, _user_headers())
        return _json(body, status)

    @app.get("/metrics")
    def metrics() -> Any:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return app


app = create_app()
