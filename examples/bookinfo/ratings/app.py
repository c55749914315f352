"""ratings: ``GET /ratings/<id>``, ``POST /ratings/<id>``, ``GET /health``.

As Istio's Node.js ratings: every product starts with ``{"Reviewer1": 5, "Reviewer2": 4}``;
a POST of a JSON object of reviewer -> stars replaces a product's ratings (kept in memory);
a non-numeric id is a 400 ``please provide numeric product ID``.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Optional

from flask import Flask, jsonify, request

from .. import faults

DEFAULT_RATINGS: Dict[str, int] = {"Reviewer1": 5, "Reviewer2": 4}


def _numeric_id(text: str) -> Optional[int]:
    try:
        return int(text)
    except ValueError:
        return None


def _valid_ratings(body: Any) -> bool:
    return (isinstance(body, dict) and bool(body)
            and all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                    for k, v in body.items()))


def create_app() -> Flask:
    app = Flask(__name__)
    faults.install(app)
    added: Dict[int, Dict[str, int]] = {}
    lock = threading.Lock()

    @app.get("/health")
    def health() -> Any:
        return jsonify(status="Ratings is healthy")

    @app.get("/ratings/<product_id>")
    def get_ratings(product_id: str) -> Any:
        number = _numeric_id(product_id)
        if number is None:
            return jsonify(error="please provide numeric product ID"), 400
        with lock:
            ratings = dict(added.get(number, DEFAULT_RATINGS))
        return jsonify(id=number, ratings=ratings)

    @app.post("/ratings/<product_id>")
    def post_ratings(product_id: str) -> Any:
        number = _numeric_id(product_id)
        if number is None:
            return jsonify(error="please provide numeric product ID"), 400
        body = request.get_json(silent=True)
        if not _valid_ratings(body):
            return jsonify(error="please provide valid ratings JSON"), 400
        with lock:
            added[number] = dict(body)
        return jsonify(id=number, ratings=body)

    return app


app = create_app()
