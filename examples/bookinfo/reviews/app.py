"""reviews: ``GET /reviews/<id>`` answers the book's reviews, ``GET /health`` its health.

The version comes from ``SERVICE_VERSION`` (``v1``, ``v2``, ``v3``; default ``v1``) and sets
what Istio's three reviews images set: v1 has ratings disabled (no ``rating`` field), v2 calls
ratings and colours the stars black, v3 red. ``ENABLE_RATINGS`` and ``STAR_COLOR`` override
it, as in the images. The ratings call waits 10 s for black stars and 2.5 s otherwise (the
difference the Istio fault-injection task is built on). When ratings fails, reviews still
answers 200 and each review carries ``{"error": "Ratings service is currently unavailable"}``.

Where Istio routes between the versions (a VirtualService), one process here can switch at
run time: ``PUT /admin/version`` with ``{"version": "v2"}``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

import requests
from flask import Flask, jsonify, request

from .. import faults
from ..upstream import service_url

logger = logging.getLogger("bookinfo.reviews")

RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"
VERSIONS = ("v1", "v2", "v3")
_STAR_COLORS = {"v1": "black", "v2": "black", "v3": "red"}

# The sample's two reviews of the one book.
REVIEWS = (
    ("Reviewer1", "A riot from start to finish: the mistaken identities and the slapstick "
                  "never let up."),
    ("Reviewer2", "Great fun on stage, though it has less depth than Shakespeare's later "
                  "comedies."),
)


@dataclass(frozen=True)
class Version:
    name: str
    ratings_enabled: bool
    star_color: str

    @property
    def ratings_timeout(self) -> float:
        """Seconds to wait for ratings: 10 with black stars (v2), 2.5 otherwise (v3)."""
        return 10.0 if self.star_color == "black" else 2.5


def version_from(name: str, environ: Mapping[str, str]) -> Version:
    if name not in VERSIONS:
        raise ValueError("unknown reviews version %r; known: %s" % (name, ", ".join(VERSIONS)))
    enabled = environ.get("ENABLE_RATINGS", "").strip().lower()
    return Version(name,
                   enabled == "true" if enabled else name != "v1",
                   environ.get("STAR_COLOR", "").strip() or _STAR_COLORS[name])


def fetch_ratings(product_id: int, version: Version) -> Optional[Dict[str, Any]]:
    """The reviewer -> stars map from ratings, or None when ratings cannot answer."""
    url = "%s/ratings/%d" % (service_url("ratings"), product_id)
    try:
        response = requests.get(url, timeout=version.ratings_timeout)
    except requests.RequestException as exc:
        logger.warning("ratings unavailable: %s", exc)
        return None
    if response.status_code != 200:
        logger.warning("ratings answered %d", response.status_code)
        return None
    try:
        ratings = response.json().get("ratings")
    except ValueError:
        return None
    return ratings if isinstance(ratings, dict) else None


def reviews_body(product_id: int, version: Version, ratings: Optional[Dict[str, Any]],
                 podname: str, clustername: str) -> Dict[str, Any]:
    items: List[Dict[str, Any]] = []
    for reviewer, text in REVIEWS:
        item: Dict[str, Any] = {"reviewer": reviewer, "text": text}
        if version.ratings_enabled:
            stars = (ratings or {}).get(reviewer)
            item["rating"] = ({"stars": stars, "color": version.star_color}
                              if isinstance(stars, int) else {"error": RATINGS_UNAVAILABLE})
        items.append(item)
    return {"id": str(product_id), "podname": podname, "clustername": clustername,
            "reviews": items}


def create_app(environ: Optional[Mapping[str, str]] = None) -> Flask:
    env = os.environ if environ is None else environ
    app = Flask(__name__)
    faults.install(app, env)
    state = {"version": version_from(env.get("SERVICE_VERSION", "").strip() or "v1", env)}
    lock = threading.Lock()
    # Which pod answered: the page shows it, so routing between versions is visible.
    podname = env.get("HOSTNAME") or socket.gethostname()
    clustername = env.get("CLUSTER_NAME", "")

    @app.get("/health")
    def health() -> Any:
        return jsonify(status="Reviews is healthy")

    @app.get("/reviews/<int:product_id>")
    def reviews(product_id: int) -> Any:
        version: Version = state["version"]
        ratings = fetch_ratings(product_id, version) if version.ratings_enabled else None
        return jsonify(reviews_body(product_id, version, ratings, podname, clustername))

    @app.route("/admin/version", methods=["GET", "PUT"])
    def admin_version() -> Any:
        if request.method == "PUT":
            body = request.get_json(silent=True)
            name = body.get("version") if isinstance(body, dict) else None
            try:
                # An explicit switch picks the version's own defaults, not the start-up
                # ENABLE_RATINGS/STAR_COLOR overrides.
                new = version_from(str(name), {})
            except ValueError as exc:
                return jsonify(error=str(exc)), 400
            with lock:
                state["version"] = new
        current: Version = state["version"]
        return jsonify(version=current.name, ratings_enabled=current.ratings_enabled,
                       star_color=current.star_color)

    return app


app = create_app()
