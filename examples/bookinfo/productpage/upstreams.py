"""productpage's calls to details, reviews and ratings, with Istio BookInfo's failure rules.

- Each call is a fresh ``requests.get(..., timeout=3.0)``: no session, no connection pool.
  BookInfo does that on purpose, so every call is a new connection and the mesh can spread
  the load.
- reviews is tried twice. BookInfo keeps this retry deliberately ("a bug introduced for the
  fault-injection task"): with a 7 s ratings delay and v2's 10 s timeout, the page waits
  about 2 x 3 s before giving up on reviews.
- A call that raises has no status and counts as 500; a non-200 answer keeps its status.
  Either way the body is ``{"error": "Sorry, product <what> are currently unavailable for
  this book."}``, the text the page shows.

Every outcome counts in ``request_result{destination_app, response_code}``.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Tuple

import requests
from prometheus_client import CollectorRegistry, Counter

logger = logging.getLogger("bookinfo.productpage")

TIMEOUT = 3.0
REVIEWS_TRIES = 2
Result = Tuple[int, Dict[str, Any]]


def unavailable(what: str) -> Dict[str, str]:
    return {"error": "Sorry, product %s are currently unavailable for this book." % what}


class Upstreams:
    """The three services productpage calls, by base URL."""

    def __init__(self, urls: Mapping[str, str], registry: CollectorRegistry) -> None:
        self.urls = dict(urls)
        self.results = Counter("request_result", "Upstream request results",
                               ["destination_app", "response_code"], registry=registry)

    def _get(self, app: str, path: str, headers: Mapping[str, str]) -> Optional[Any]:
        try:
            response = requests.get(self.urls[app] + path, headers=dict(headers),
                                    timeout=TIMEOUT)
        except requests.RequestException as exc:
            logger.warning("%s unavailable: %s", app, exc)
            self.results.labels(destination_app=app, response_code="500").inc()
            return None
        self.results.labels(destination_app=app,
                            response_code=str(response.status_code)).inc()
        return response

    def _json(self, app: str, what: str, path: str, headers: Mapping[str, str]) -> Result:
        response = self._get(app, path, headers)
        return _result(response, what)

    def details(self, product_id: Any, headers: Mapping[str, str]) -> Result:
        return self._json("details", "details", "/details/%s" % product_id, headers)

    def ratings(self, product_id: Any, headers: Mapping[str, str]) -> Result:
        return self._json("ratings", "ratings", "/ratings/%s" % product_id, headers)

    def reviews(self, product_id: Any, headers: Mapping[str, str]) -> Result:
        result: Result = (500, unavailable("reviews"))
        for _ in range(REVIEWS_TRIES):
            result = _result(self._get("reviews", "/reviews/%s" % product_id, headers),
                             "reviews")
            if result[0] == 200:
                break
        return result


def _result(response: Optional[Any], what: str) -> Result:
    if response is None:
        return 500, unavailable(what)
    if response.status_code == 200:
        try:
            return 200, response.json()
        except ValueError:
            return 500, unavailable(what)
    return response.status_code, unavailable(what)
