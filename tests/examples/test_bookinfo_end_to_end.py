"""BookInfo end to end: the shim and the four services as real processes on loopback, each
service under ``opentracing-sls run`` (no tracing code in the services), one trace per page
view in the shim's store."""

from __future__ import annotations

import time
from typing import Iterator

import pytest
import requests
from bookinfo.stack import BookinfoStack
from bookinfo.traffic import envoy_request_id

from opentracing_sls.shim.store import LocalStore, TraceQuery

from .bookinfo_e2e import headers_seen, one, probed_stack, tags, trace_id_of, wait_for_trace

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "killpg"),
                                reason="process groups (POSIX)")

RATINGS_ERROR = "Ratings service is currently unavailable"
DETAILS_ERROR = "Sorry, product details are currently unavailable for this book."


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[BookinfoStack]:
    running = probed_stack(str(tmp_path_factory.mktemp("bookinfo")), reviews_version="v3")
    running.start(timeout=30)
    yield running
    statuses = running.stop()
    # SIGTERM must end every service normally: that is when its tracer flushes.
    assert statuses == {name: 0 for name in statuses}, statuses


def page_view(stack: BookinfoStack, client: requests.Session) -> tuple:
    request_id = envoy_request_id()
    response = client.get(stack.url("productpage", "/productpage"), timeout=20,
                          headers={"x-request-id": request_id})
    assert response.status_code == 200
    return request_id, response.text


def test_one_page_view_is_one_trace_across_the_four_services(stack):
    client = requests.Session()
    login = client.post(stack.url("productpage", "/login"), data={"username": "jason"},
                        allow_redirects=False, timeout=10)
    assert login.status_code == 302
    started_us = int(time.time() * 1e6)
    request_id, html = page_view(stack, client)
    assert "Book Details" in html and html.count('style="color: red"') == 2

    trace_id = trace_id_of(stack, request_id)
    spans = wait_for_trace(stack.store_path, trace_id, spans=7)
    assert {s.process.service_name for s in spans} == {"productpage", "details", "reviews",
                                                       "ratings"}
    assert len(spans) == 7, [(s.process.service_name, s.operation_name) for s in spans]
    assert {s.trace_id for s in spans} == {trace_id}
    # ONE trace: no service started a trace of its own for this request.
    store = LocalStore(stack.store_path, create=False)
    try:
        for service in ("productpage", "details", "reviews", "ratings"):
            assert store.find_trace_ids(TraceQuery(service=service, start_min_us=started_us,
                                                   limit=0)) == [trace_id], service
    finally:
        store.close()

    # The call tree, parent by parent.
    root = one(spans, "productpage", "server")
    to_details = one(spans, "productpage", "client", "/details/0")
    to_reviews = one(spans, "productpage", "client", "/reviews/0")
    details = one(spans, "details", "server")
    reviews = one(spans, "reviews", "server")
    to_ratings = one(spans, "reviews", "client", "/ratings/0")
    ratings = one(spans, "ratings", "server")
    assert root.parent_id == 0 and root.operation_name == "/productpage"
    assert to_details.parent_id == root.span_id and to_reviews.parent_id == root.span_id
    assert details.parent_id == to_details.span_id
    assert reviews.parent_id == to_reviews.span_id
    assert to_ratings.parent_id == reviews.span_id
    assert ratings.parent_id == to_ratings.span_id
    assert not any(tags(s).get("error") for s in spans)
    assert ("version", "v3") in {(t.key, t.value) for t in reviews.process.tags}
    # Children lie within their parents.
    for child, parent in ((to_details, root), (details, to_details), (to_ratings, reviews)):
        assert parent.start_time <= child.start_time
        assert child.start_time + child.duration <= parent.start_time + parent.duration + 1000

    # What each service received: the Istio headers, forwarded hop by hop.
    seen = headers_seen(stack, request_id)
    assert set(seen) == {"productpage", "details", "reviews", "ratings"}
    for service in ("details", "reviews", "ratings"):
        assert seen[service]["end-user"] == "jason", service
        assert int(seen[service]["x-b3-traceid"], 16) == trace_id
        assert seen[service]["x-b3-sampled"] == "1"
    assert int(seen["details"]["x-b3-spanid"], 16) == to_details.span_id
    assert int(seen["reviews"]["x-b3-spanid"], 16) == to_reviews.span_id
    assert int(seen["ratings"]["x-b3-spanid"], 16) == to_ratings.span_id
    assert int(seen["ratings"]["x-b3-parentspanid"], 16) == reviews.span_id


def test_anonymous_page_view_carries_no_end_user(stack):
    request_id, _ = page_view(stack, requests.Session())
    seen = headers_seen(stack, request_id)
    assert set(seen) == {"productpage", "details", "reviews", "ratings"}
    assert not any("end-user" in headers for headers in seen.values())


def test_details_failure_degrades_the_page_and_the_trace_shows_it(stack):
    stack.set_faults("details", abort=503)
    try:
        request_id, html = page_view(stack, requests.Session())
    finally:
        stack.set_faults("details", abort=0)
    assert "Error fetching product details!" in html and DETAILS_ERROR in html
    assert "Book Reviews" in html
    spans = wait_for_trace(stack.store_path, trace_id_of(stack, request_id), spans=7)
    to_details = one(spans, "productpage", "client", "/details/0")
    assert tags(to_details)["http.status_code"] == 503 and tags(to_details)["error"] is True
    assert tags(one(spans, "details", "server"))["http.status_code"] == 503
    assert not tags(one(spans, "productpage", "server")).get("error")  # the page still 200


def test_reviews_version_knob(stack):
    stack.set_reviews_version("v1")
    try:
        request_id, html = page_view(stack, requests.Session())
    finally:
        stack.set_reviews_version("v3")
    assert "Reviewer1" in html and "\u2605" not in html
    spans = wait_for_trace(stack.store_path, trace_id_of(stack, request_id), spans=5)
    assert {s.process.service_name for s in spans} == {"productpage", "details", "reviews"}


def test_ratings_down_degrades_the_page_and_the_trace_shows_the_error(stack):
    assert stack.stop_service("ratings") == 0
    try:
        request_id, html = page_view(stack, requests.Session())
        assert html.count(RATINGS_ERROR) == 2
        assert "Book Details" in html and "Book Reviews" in html
        spans = wait_for_trace(stack.store_path, trace_id_of(stack, request_id), spans=6)
        assert "ratings" not in {s.process.service_name for s in spans}
        to_ratings = one(spans, "reviews", "client", "/ratings/0")
        assert tags(to_ratings)["error"] is True
        events = [{f.key: f.value for f in log.fields} for log in to_ratings.logs]
        assert any(e.get("event") == "error" and "ConnectionError" in str(e.get("error.kind"))
                   for e in events), events
        assert not tags(one(spans, "reviews", "server")).get("error")  # reviews answered 200
    finally:
        started = time.monotonic()
        stack.restart_service("ratings")
        assert time.monotonic() - started < 30
