"""BookInfo end to end through SLS: the same processes, with the shim writing to the SLS test
server (``opentracing_sls.testing.sls_server``) instead of its local store, as the Kubernetes
manifests deploy it. The trace is checked twice: as logs in the SLS layout, and read back
through the shim's query API, which reads SLS when that is its only storage (the UI's path in
the cluster)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Dict, Iterator, List

import pytest
import requests
from bookinfo.stack import BookinfoStack
from bookinfo.traffic import envoy_request_id

from opentracing_sls.testing.sls_server import SlsServer
from opentracing_sls.testing.sls_sql import run_sql

from .bookinfo_e2e import headers_seen, probed_stack, trace_id_of

PROJECT = "bookinfo-traces"
LOGSTORE = "jaeger-span"


@pytest.fixture(scope="module")
def sls() -> Iterator[SlsServer]:
    with SlsServer(sql=run_sql) as server:
        yield server


@pytest.fixture(scope="module")
def stack(sls, tmp_path_factory) -> Iterator[BookinfoStack]:
    workdir = tmp_path_factory.mktemp("bookinfo-sls")
    running = probed_stack(
        str(workdir), reviews_version="v3",
        shim_args=["--storage.type", "aliyun_sls",
                   "--storage.aliyun_sls.endpoint", sls.endpoint,
                   "--storage.aliyun_sls.project", PROJECT,
                   "--storage.aliyun_sls.logstore", LOGSTORE,
                   "--storage.aliyun_sls.accesskey.id", sls.access_key_id,
                   "--storage.aliyun_sls.batch.linger_ms", "100",
                   "--spool.path", str(workdir / "spool")],
        shim_env={"OPENTRACING_SLS_STORAGE_ALIYUN_SLS_ACCESSKEY_SECRET": sls.access_key_secret})
    running.start(timeout=30)
    yield running
    statuses = running.stop()
    assert statuses == {name: 0 for name in statuses}, statuses


def sls_spans(sls: SlsServer, trace_id: int, count: int, timeout: float = 10.0
              ) -> List[Dict[str, str]]:
    """The trace's logs in the logstore, once there are ``count`` (or at the timeout)."""
    wanted = "%016x" % trace_id
    deadline = time.monotonic() + timeout
    while True:
        rows = [dict(log.contents) for log in sls.logs(PROJECT, LOGSTORE)
                if dict(log.contents).get("traceID") == wanted]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def by(rows: List[Dict[str, str]], service: str, kind: str, url_part: str = "") -> Dict[str, str]:
    found = [r for r in rows if r["process.serviceName"] == service
             and r.get("tags.span.kind") == kind and url_part in r.get("tags.http.url", "")]
    assert len(found) == 1, (service, kind, url_part, rows)
    return found[0]


def test_a_page_view_is_one_trace_in_sls_and_in_the_query_api(stack, sls):
    client = requests.Session()
    client.post(stack.url("productpage", "/login"), data={"username": "jason"}, timeout=10)
    request_id = envoy_request_id()
    page = client.get(stack.url("productpage", "/productpage"), timeout=20,
                      headers={"x-request-id": request_id})
    assert page.status_code == 200 and "Book Reviews" in page.text
    trace_id = trace_id_of(stack, request_id)
    rows = sls_spans(sls, trace_id, 7)
    assert len(rows) == 7
    root = by(rows, "productpage", "server")
    to_details = by(rows, "productpage", "client", "/details/0")
    to_reviews = by(rows, "productpage", "client", "/reviews/0")
    to_ratings = by(rows, "reviews", "client", "/ratings/0")
    assert root["parentSpanID"] == "0" and root["operationName"] == "/productpage"
    assert to_details["parentSpanID"] == root["spanID"] == to_reviews["parentSpanID"]
    assert by(rows, "details", "server")["parentSpanID"] == to_details["spanID"]
    reviews = by(rows, "reviews", "server")
    assert reviews["parentSpanID"] == to_reviews["spanID"]
    assert to_ratings["parentSpanID"] == reviews["spanID"]
    assert by(rows, "ratings", "server")["parentSpanID"] == to_ratings["spanID"]
    assert reviews["process.tags.version"] == "v3"
    assert all(int(r["duration"]) > 0 and len(r["startTime"]) == 16 for r in rows)
    seen = headers_seen(stack, request_id)
    assert {s for s, h in seen.items() if h.get("end-user") == "jason"} == \
        {"details", "reviews", "ratings"}

    # The UI's view: the query API over SLS (the shim has no local store here).
    url = stack.url("query_port", "/api/traces/%016x" % trace_id)
    with urllib.request.urlopen(url, timeout=10) as response:
        [trace] = json.loads(response.read())["data"]
    assert len(trace["spans"]) == 7
    assert {p["serviceName"] for p in trace["processes"].values()} == {
        "productpage", "details", "reviews", "ratings"}
    with urllib.request.urlopen(stack.url("query_port", "/api/services"), timeout=10) as r:
        assert set(json.loads(r.read())["data"]) >= {"productpage", "details", "reviews",
                                                     "ratings"}


def test_ratings_down_the_error_is_in_sls(stack, sls):
    assert stack.stop_service("ratings") == 0
    try:
        request_id = envoy_request_id()
        page = requests.get(stack.url("productpage", "/productpage"), timeout=20,
                            headers={"x-request-id": request_id})
        assert page.text.count("Ratings service is currently unavailable") == 2
        rows = sls_spans(sls, trace_id_of(stack, request_id), 6)
        assert len(rows) == 6 and "ratings" not in {r["process.serviceName"] for r in rows}
        to_ratings = by(rows, "reviews", "client", "/ratings/0")
        assert to_ratings["tags.error"] == "true"
        assert "ConnectionError" in to_ratings["logs"]
    finally:
        stack.restart_service("ratings")


def test_the_walkthroughs_sls_statements_run_on_bookinfo_spans(stack, sls):
    """Every statement of docs/istio-sls-walkthrough.md, through the official SDK, on the
    spans of a few real page views (one of them slow and failing, for the error queries)."""
    from aliyun.log import GetLogsRequest, LogClient

    from .test_walkthrough_doc import sls_blocks, text

    stack.set_faults("details", abort=503)
    try:
        request_id = envoy_request_id()
        requests.get(stack.url("productpage", "/productpage"), timeout=20,
                     headers={"x-request-id": request_id})
    finally:
        stack.set_faults("details", abort=0)
    for _ in range(2):
        requests.get(stack.url("productpage", "/productpage"), timeout=20)
    trace_id = trace_id_of(stack, request_id)
    assert len(sls_spans(sls, trace_id, 7)) == 7
    client = LogClient(sls.endpoint, sls.access_key_id, sls.access_key_secret,
                       source="127.0.0.1")
    client._isRowIp = True  # a local server (see SlsServer's docstring)
    now = int(time.time())
    statements = sls_blocks(text())
    for statement in statements:
        query = statement.replace("<trace id>", "%016x" % trace_id)
        response = client.get_logs(GetLogsRequest(PROJECT, LOGSTORE, now - 3600, now + 60,
                                                  query=query, line=100))
        rows = [log.get_contents() for log in response.get_logs()]
        if "duration >= 3000000" in statement:
            assert rows == [], statement  # no page view was that slow
            continue
        assert rows, statement
        if "count_if" in statement:
            details = next(r for r in rows if r["service"] == "details")
            assert float(details["error_pct"]) > 0
        if "tags.error: true" == statement:
            assert {r["process.serviceName"] for r in rows} >= {"productpage", "details"}
        if "sum(duration)" in statement:
            assert {r["service"] for r in rows} == {"productpage", "details", "reviews",
                                                    "ratings"}
        if '"process.tags.version"' in statement:
            assert [r["version"] for r in rows] == ["v3"]
