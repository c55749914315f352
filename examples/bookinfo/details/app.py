"""details: ``GET /details/<id>`` answers the book's details, ``GET /health`` its health.

Any numeric id gets the same book (the sample has one); anything else is a 400 with
``please provide numeric product id``, as Istio's Ruby details service answers. Istio's
optional call to the Google Books API (``ENABLE_EXTERNAL_BOOK_SERVICE``) is left out: the
demo must work offline.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from flask import Flask, jsonify

from .. import faults


def book_details(product_id: int) -> Dict[str, Any]:
    return {
        "id": product_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


def _numeric_id(text: str) -> Optional[int]:
    try:
        return int(text)
    except ValueError:
        return None


def create_app() -> Flask:
    app = Flask(__name__)
    faults.install(app)

    @app.get("/health")
    def health() -> Any:
        return jsonify(status="Details is healthy")

    @app.get("/details/<product_id>")
    def details(product_id: str) -> Any:
        number = _numeric_id(product_id)
        if number is None:
            return jsonify(error="please provide numeric product id"), 400
        return jsonify(book_details(number))

    return app


app = create_app()
