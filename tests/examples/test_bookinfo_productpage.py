"""productpage against real details/reviews/ratings apps on loopback (no tracing involved):
routes, the degraded pages and error texts, the reviews retry, timeouts, login, metrics."""

from __future__ import annotations

import re
import time
from typing import Any, Dict, List

import pytest
from bookinfo.details.app import create_app as details_app
from bookinfo.faults import Faults
from bookinfo.productpage import upstreams as upstreams_module
from bookinfo.productpage.app import PRODUCTS
from bookinfo.productpage.app import create_app as productpage_app
from bookinfo.ratings.app import create_app as ratings_app
from bookinfo.reviews.app import create_app as reviews_app
from flask import Flask, jsonify, request

DETAILS_ERROR = "Sorry, product details are currently unavailable for this book."
REVIEWS_ERROR = "Sorry, product reviews are currently unavailable for this book."
RATINGS_ERROR = "Sorry, product ratings are currently unavailable for this book."


def _env(**ports: int) -> Dict[str, str]:
    env = {}
    for name, port in ports.items():
        env[name.upper() + "_HOSTNAME"] = "127.0.0.1"
        env[name.upper() + "_SERVICE_PORT"] = str(port)
    return env


class Recorder:
    """A stand-in upstream that answers ``status`` and records each request's headers."""

    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.status = status
        self.body = body if body is not None else {}
        self.seen: List[Dict[str, str]] = []
        self.app = Flask("recorder")
        self.app.add_url_rule("/<path:path>", "any", self._handle)

    def _handle(self, path: str) -> Any:
        self.seen.append({k.lower(): v for k, v in request.headers.items()})
        return jsonify(self.body), self.status


@pytest.fixture
def full(serve, monkeypatch):
    """productpage with real details, reviews v3 and ratings."""
    ratings = serve(ratings_app())
    monkeypatch.setenv("RATINGS_HOSTNAME", "127.0.0.1")
    monkeypatch.setenv("RATINGS_SERVICE_PORT", str(ratings.port))
    reviews = serve(reviews_app({"SERVICE_VERSION": "v3"}))
    details = serve(details_app())
    env = _env(details=details.port, reviews=reviews.port, ratings=ratings.port)
    return productpage_app(env).test_client(), {"details": details, "reviews": reviews,
                                                "ratings": ratings}


def test_productpage_renders_book_details_and_red_stars(full):
    client, _ = full
    page = client.get("/productpage")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "The Comedy of Errors" in html
    assert "Book Details" in html and "123-1234567890" in html and "PublisherA" in html
    assert "Book Reviews" in html and "Reviewer1" in html and "Reviewer2" in html
    assert html.count('style="color: red"') == 2
    assert "\u2605" * 5 in html and "\u2605" * 4 + "\u2606" in html
    assert "Sign in" in html


def test_productpage_degrades_when_everything_is_down(closed_port):
    env = _env(details=closed_port, reviews=closed_port, ratings=closed_port)
    page = productpage_app(env).test_client().get("/productpage")
    assert page.status_code == 200  # always 200, as BookInfo
    html = page.get_data(as_text=True)
    assert "Error fetching product details!" in html and DETAILS_ERROR in html
    assert "Error fetching product reviews!" in html and REVIEWS_ERROR in html


def test_ratings_down_shows_the_rating_error_in_each_review(serve, closed_port, monkeypatch):
    monkeypatch.setenv("RATINGS_HOSTNAME", "127.0.0.1")
    monkeypatch.setenv("RATINGS_SERVICE_PORT", str(closed_port))
    reviews = serve(reviews_app({"SERVICE_VERSION": "v2"}))
    details = serve(details_app())
    client = productpage_app(_env(details=details.port, reviews=reviews.port)).test_client()
    html = client.get("/productpage").get_data(as_text=True)
    assert html.count("Ratings service is currently unavailable") == 2
    assert "Book Details" in html


def test_reviews_is_tried_twice_and_keeps_the_status(serve):
    reviews = Recorder(status=503)
    served = serve(reviews.app)
    client = productpage_app(_env(reviews=served.port)).test_client()
    response = client.get("/api/v1/products/0/reviews")
    assert (response.status_code, response.get_json()) == (503, {"error": REVIEWS_ERROR})
    assert len(reviews.seen) == 2
    client.get("/productpage")
    assert len(reviews.seen) == 4


def test_reviews_retry_stops_at_the_first_success(serve):
    reviews = Recorder(status=200, body={"reviews": []})
    client = productpage_app(_env(reviews=serve(reviews.app).port)).test_client()
    assert client.get("/api/v1/products/0/reviews").status_code == 200
    assert len(reviews.seen) == 1


def test_details_is_tried_once_and_its_status_kept(serve):
    details = Recorder(status=404)
    client = productpage_app(_env(details=serve(details.app).port)).test_client()
    response = client.get("/api/v1/products/0")
    assert (response.status_code, response.get_json()) == (404, {"error": DETAILS_ERROR})
    assert len(details.seen) == 1


def test_api_routes(full, closed_port):
    client, _ = full
    assert client.get("/api/v1/products").get_json() == PRODUCTS
    assert client.get("/api/v1/products/0").get_json()["ISBN-10"] == "1234567890"
    assert client.get("/api/v1/products/0/reviews").get_json()["reviews"][0]["rating"] == \
        {"stars": 5, "color": "red"}
    assert client.get("/api/v1/products/0/ratings").get_json() == \
        {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}
    bad = client.get("/api/v1/products/abc")
    assert (bad.status_code, bad.get_json()) == (400, {"error": DETAILS_ERROR})
    down = productpage_app(_env(ratings=closed_port)).test_client()
    response = down.get("/api/v1/products/0/ratings")
    assert (response.status_code, response.get_json()) == (500, {"error": RATINGS_ERROR})


def test_upstream_calls_use_the_3_second_timeout(serve, monkeypatch):
    assert upstreams_module.TIMEOUT == 3.0
    monkeypatch.setattr(upstreams_module, "TIMEOUT", 0.3)  # the mechanism, without waiting 3 s
    details = serve(details_app())
    details.app.extensions["bookinfo.faults"].set(Faults(delay=1.0))
    client = productpage_app(_env(details=details.port)).test_client()
    started = time.monotonic()
    html = client.get("/productpage").get_data(as_text=True)
    assert DETAILS_ERROR in html
    assert time.monotonic() - started < 0.9


def test_login_sets_end_user_for_the_upstreams_and_logout_clears_it(serve):
    details, reviews = Recorder(body={}), Recorder(body={"reviews": []})
    client = productpage_app(_env(details=serve(details.app).port,
                                  reviews=serve(reviews.app).port)).test_client()
    client.get("/productpage")
    assert "end-user" not in details.seen[-1]
    login = client.post("/login", data={"username": "jason", "passwd": "x"},
                        headers={"Referer": "http://bookinfo/productpage"})
    assert (login.status_code, login.headers["Location"]) == (302,
                                                              "http://bookinfo/productpage")
    page = client.get("/productpage").get_data(as_text=True)
    assert re.search(r'<span id="user">jason</span>', page) and "Sign out" in page
    assert details.seen[-1]["end-user"] == "jason" and reviews.seen[-1]["end-user"] == "jason"
    client.get("/api/v1/products/0")
    assert details.seen[-1]["end-user"] == "jason"
    logout = client.get("/logout")
    assert logout.status_code == 302 and logout.headers["Location"] == "/productpage"
    client.get("/productpage")
    assert "end-user" not in details.seen[-1]


def test_index_health_and_metrics(full):
    client, services = full
    index = client.get("/").get_data(as_text=True)
    for name in ("details", "reviews", "ratings"):
        assert services[name].url in index
    assert client.get("/index.html").status_code == 200
    health = client.get("/health")
    assert health.get_data(as_text=True) == "Product page is healthy"
    client.get("/productpage")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'request_result_total{destination_app="details",response_code="200"} 1.0' in metrics
    assert 'request_result_total{destination_app="reviews",response_code="200"} 1.0' in metrics


def test_flood_factor_adds_concurrent_reviews_calls(serve):
    reviews = Recorder(body={"reviews": []})
    env = _env(reviews=serve(reviews.app).port)
    env["FLOOD_FACTOR"] = "5"
    productpage_app(env).test_client().get("/productpage")
    assert len(reviews.seen) == 6
