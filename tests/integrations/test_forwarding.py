"""Istio header forwarding: two instrumented Flask services on real servers, and the rules
for headers the tracer owns."""

from __future__ import annotations

import http.client
import json

import opentracing
import pytest
import requests
from flask import Flask, request
from requests.structures import CaseInsensitiveDict

from opentracing_sls import integrations
from opentracing_sls.integrations import flask as ot_flask
from opentracing_sls.integrations import forwarding
from opentracing_sls.integrations.forwarding import ForwardList
from opentracing_sls.testing import make_test_tracer

pytestmark = pytest.mark.usefixtures("handler_path")  # C and Python handlers

TRACE = "80f198ee56343ba864fe8b2a57d3eff7"
ENVOY_SPAN = "e457b5a2e4d86bd1"

# What an Istio sidecar and the calling service put on the request productpage receives.
INCOMING = {
    "x-request-id": "1a2b3c4d-0000-4000-9000-000000000001",
    "x-b3-traceid": TRACE,
    "x-b3-spanid": ENVOY_SPAN,
    "x-b3-sampled": "1",
    "b3": "%s-%s-1" % (TRACE, ENVOY_SPAN),
    "tracestate": "vendor=opaque",
    "x-ot-span-context": "lightstep-context",
    "grpc-trace-bin": "AAARf5ifrlZr",
    "x-cloud-trace-context": "105445aa7843bc8bf206b12000100000/1;o=1",
    "sw8": "1-TRACEID-SEGMENT-3-U0VSVklDRQ==-SU5TVEFOQ0U=-L2FwaQ==-aG9zdDo4MDgw",
    "x-datadog-trace-id": "1234", "x-datadog-parent-id": "5678",
    "x-datadog-sampling-priority": "1",
    "end-user": "jason",
    "x-tenant": "acme",               # forwarded only because configured
    "x-custom-region": "eu",          # matches the configured prefix x-custom-*
    "x-unlisted": "stays here",
    "authorization": "Bearer not-for-downstream",
}
VERBATIM = ("x-request-id", "tracestate", "x-ot-span-context", "grpc-trace-bin",
            "x-cloud-trace-context", "sw8", "x-datadog-trace-id", "x-datadog-parent-id",
            "x-datadog-sampling-priority", "end-user", "x-tenant", "x-custom-region")


def _reviews_app() -> Flask:
    app = Flask("reviews")

    @app.route("/reviews/<id>")
    def reviews(id):
        return {k.lower(): v for k, v in request.headers.items()}

    return app


def _productpage_app(reviews_url: str) -> Flask:
    app = Flask("productpage")

    @app.route("/api/v1/products/<id>/reviews")
    def product_reviews(id):
        return requests.get(reviews_url + "/reviews/" + id, timeout=5).json()

    return app


def _call(port: int, path: str, headers: dict) -> dict:
    # http.client, not requests: the test driver itself must not be instrumented.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        conn.close()


def _wait_for_spans(tracer, count: int) -> list:
    import time

    deadline = time.monotonic() + 5
    while len(tracer.reporter.get_spans()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return tracer.reporter.get_spans()


def test_two_services_one_trace_and_istio_headers_reach_downstream(tracer, serve):
    integrations.instrument(options={"flask": {"forward_headers": ["x-tenant", "x-custom-*"]}})
    reviews = serve(_reviews_app())
    productpage = serve(_productpage_app(reviews.url()))

    seen = _call(productpage.port, "/api/v1/products/0/reviews", INCOMING)

    spans = _wait_for_spans(tracer, 3)
    by_name = {s.operation_name: s for s in spans}
    assert set(by_name) == {"/api/v1/products/<id>/reviews", "GET", "/reviews/<id>"}
    upstream, client, downstream = (by_name["/api/v1/products/<id>/reviews"], by_name["GET"],
                                    by_name["/reviews/<id>"])
    # One trace, the mesh's, with correct parent/child links.
    assert {s.trace_id for s in spans} == {int(TRACE, 16)}
    assert upstream.parent_id == int(ENVOY_SPAN, 16)
    assert client.parent_id == upstream.span_id
    assert downstream.parent_id == client.span_id
    assert client.tags["peer.port"] == reviews.port
    # The headers productpage sent: Istio's list verbatim, trace context = the client span.
    for name in VERBATIM:
        assert seen[name] == INCOMING[name], name
    assert "x-unlisted" not in seen and "authorization" not in seen
    client_id, upstream_id = "%016x" % client.span_id, "%016x" % upstream.span_id
    assert seen["x-b3-traceid"] == TRACE
    assert seen["x-b3-spanid"] == client_id
    assert seen["x-b3-parentspanid"] == upstream_id
    assert seen["x-b3-sampled"] == "1"
    # b3 was not configured: the stale copy is rewritten to agree with the multi-headers.
    assert seen["b3"] == "%s-%s-1-%s" % (TRACE, client_id, upstream_id)
    assert seen["traceparent"] == "00-%s-%s-01" % (TRACE, client_id)


def test_app_headers_win_over_forwarded_ones(tracer, serve):
    integrations.instrument()
    reviews = serve(_reviews_app())
    app = Flask("productpage")

    @app.route("/")
    def index():
        return requests.get(reviews.url("/reviews/1"), headers={"end-user": "override"},
                            timeout=5).json()

    seen = _call(serve(app).port, "/", {"end-user": "jason", "x-request-id": "rid"})
    assert seen["end-user"] == "override" and seen["x-request-id"] == "rid"


def test_forwarding_can_be_turned_off(tracer, serve, monkeypatch):
    monkeypatch.setenv("OPENTRACING_SLS_FORWARDING", "false")
    integrations.instrument()
    reviews = serve(_reviews_app())
    seen = _call(serve(_productpage_app(reviews.url())).port, "/api/v1/products/1/reviews",
                 {"x-request-id": "rid", "end-user": "jason"})
    assert "x-request-id" not in seen and "end-user" not in seen
    assert "x-b3-spanid" in seen  # the tracer still injects


def test_forwarding_works_with_the_noop_tracer(serve):
    opentracing.set_global_tracer(opentracing.Tracer())
    integrations.instrument()
    reviews = serve(_reviews_app())
    seen = _call(serve(_productpage_app(reviews.url())).port, "/api/v1/products/1/reviews",
                 INCOMING)
    for name in VERBATIM[:10] + ("x-b3-traceid", "x-b3-spanid", "b3"):
        assert seen.get(name) == INCOMING.get(name), name


def test_calls_outside_a_request_forward_nothing(instrumented, serve):
    reviews = serve(_reviews_app())
    seen = requests.get(reviews.url("/reviews/1"), timeout=5).json()
    assert "x-request-id" not in seen and "end-user" not in seen


# -- the rules, unit by unit ------------------------------------------------------------------


def test_forward_list_reads_the_environ_case_insensitively():
    fl = ForwardList(["X-Tenant", "x-custom-*"])
    environ = {"HTTP_X_REQUEST_ID": "rid", "HTTP_X_TENANT": "acme", "HTTP_X_CUSTOM_A_B": "1",
               "HTTP_HOST": "h", "wsgi.version": (1, 0)}
    assert fl.capture(environ) == {"x-request-id": "rid", "x-tenant": "acme",
                                   "x-custom-a-b": "1"}
    assert ForwardList().capture({"HTTP_HOST": "h"}) is None
    assert "x-custom-*" in fl.names and "x-request-id" in fl.names


class _OtherMapping(CaseInsensitiveDict):
    """Any other case-insensitive mapping: takes the generic path, not requests' store."""


@pytest.fixture(params=[CaseInsensitiveDict, _OtherMapping])
def apply_to(request):
    """apply() on a fresh outgoing mapping of each kind; returns the headers it ends with."""
    return lambda *args, **kwargs: _apply(*args, mapping=request.param, **kwargs)


def _apply(injected, forwarded, app_set=None, mapping=CaseInsensitiveDict):
    outgoing = mapping(app_set or {})
    forwarding.apply(outgoing, injected, forwarded)
    return {k.lower(): v for k, v in outgoing.items()}


def test_stale_multi_headers_rewritten_from_an_injected_single_header(apply_to):
    injected = {"b3": "%s-1111111111111111-0-2222222222222222" % TRACE}
    forwarded = {"x-b3-traceid": TRACE, "x-b3-spanid": ENVOY_SPAN, "x-b3-sampled": "1",
                 "x-b3-flags": "1", "traceparent": "00-%s-%s-01" % (TRACE, ENVOY_SPAN)}
    assert apply_to(injected, forwarded) == {
        "b3": injected["b3"], "x-b3-traceid": TRACE, "x-b3-spanid": "1111111111111111",
        "x-b3-sampled": "0", "traceparent": "00-%s-1111111111111111-00" % TRACE}


def test_traceparent_rewritten_from_64_bit_b3_and_deferred_decision(apply_to):
    injected = {"x-b3-traceid": "463ac35c9f6413ad", "x-b3-spanid": "1111111111111111"}
    out = apply_to(injected, {"traceparent": "00-%s-%s-01" % (TRACE, ENVOY_SPAN),
                            "b3": "stale", "x-b3-sampled": "1"})
    assert out["traceparent"] == "00-0000000000000000463ac35c9f6413ad-1111111111111111-00"
    assert out["b3"] == "463ac35c9f6413ad-1111111111111111"  # no decision: two fields
    assert "x-b3-sampled" not in out


def test_debug_and_app_set_stale_headers(apply_to):
    injected = {"x-b3-traceid": TRACE, "x-b3-spanid": "1111111111111111", "x-b3-flags": "1"}
    out = apply_to(injected, None, app_set={"B3": "stale-value", "X-B3-Sampled": "0"})
    assert out["b3"] == "%s-1111111111111111-d" % TRACE
    assert "x-b3-sampled" not in out and out["x-b3-flags"] == "1"


def test_tracer_without_b3_or_w3c_leaves_copies_verbatim(apply_to):
    forwarded = {"x-b3-spanid": ENVOY_SPAN, "b3": "x"}
    out = apply_to({"ot-tracer-spanid": "1"}, forwarded)
    assert out == {"ot-tracer-spanid": "1", "x-b3-spanid": ENVOY_SPAN, "b3": "x"}


@pytest.mark.parametrize("propagation", [("b3",), ("b3single",), ("w3c",), ("b3", "b3single"),
                                         ("jaeger", "b3")])
def test_outgoing_trace_headers_always_agree(propagation, apply_to):
    """Whatever formats the tracer writes, every B3/W3C header names the client span."""
    tracer = make_test_tracer(propagation=propagation)
    parent = tracer.extract(opentracing.Format.HTTP_HEADERS, {"b3": "%s-%s-1" % (TRACE,
                                                                             ENVOY_SPAN)})
    span = tracer.start_span("GET", child_of=parent)
    injected = {}
    tracer.inject(span.context, opentracing.Format.HTTP_HEADERS, injected)
    forwarded = {name: INCOMING[name] for name in ("x-b3-traceid", "x-b3-spanid", "x-b3-sampled",
                                                   "b3")}
    forwarded["traceparent"] = "00-%s-%s-01" % (TRACE, ENVOY_SPAN)
    out = apply_to(injected, forwarded)
    named = {"x-b3-spanid": out["x-b3-spanid"], "b3": out["b3"].split("-")[1],
             "traceparent": out["traceparent"].split("-")[2]}
    assert set(named.values()) == {"%016x" % span.context.span_id}, out
    # Copies are rewritten, never added: a parent header appears only where B3 multi is ours.
    assert out.get("x-b3-parentspanid") == (ENVOY_SPAN if "b3" in propagation else None)


def test_carry_for_other_frameworks(instrumented, serve):
    reviews = serve(_reviews_app())
    with forwarding.carry({"X-Request-Id": "from-django"}):
        seen = requests.get(reviews.url("/reviews/1"), timeout=5).json()
    assert seen["x-request-id"] == "from-django"
    assert ot_flask.is_instrumented()


def _forwarder_app(reviews_url: str) -> Flask:
    """Calls reviews plainly, inside carry(...) and from a thread given the request context."""
    import threading

    import flask

    app = Flask("forwarder")

    @app.route("/plain")
    def plain():
        return requests.get(reviews_url + "/reviews/1", timeout=5).json()

    @app.route("/carried")
    def carried():
        with forwarding.carry({"X-Request-Id": "carried"}):
            return requests.get(reviews_url + "/reviews/1", timeout=5).json()

    @app.route("/nothing")
    def nothing():
        with forwarding.carry({}):
            return requests.get(reviews_url + "/reviews/1", timeout=5).json()

    @app.route("/thread")
    def thread():
        seen = {}

        @flask.copy_current_request_context
        def call():
            seen.update(requests.get(reviews_url + "/reviews/1", timeout=5).json())
        worker = threading.Thread(target=call)
        worker.start()
        worker.join(10)
        return seen

    return app


def test_carry_inside_a_request_and_a_thread_with_its_context(instrumented, serve):
    reviews = serve(_reviews_app())
    client = _forwarder_app(reviews.url()).test_client()
    headers = {"x-request-id": "incoming", "end-user": "jason"}
    seen = client.get("/plain", headers=headers).get_json()
    assert seen["x-request-id"] == "incoming" and seen["end-user"] == "jason"
    seen = client.get("/carried", headers=headers).get_json()
    assert seen["x-request-id"] == "carried" and "end-user" not in seen
    seen = client.get("/nothing", headers=headers).get_json()  # carry({}): forward none
    assert "x-request-id" not in seen and "end-user" not in seen
    seen = client.get("/thread", headers=headers).get_json()
    assert seen["x-request-id"] == "incoming" and seen["end-user"] == "jason"


def test_headers_carried_around_a_request_do_not_hide_its_own(instrumented, serve):
    reviews = serve(_reviews_app())
    client = _forwarder_app(reviews.url()).test_client()
    with forwarding.carry({"x-request-id": "outer", "end-user": "outer"}):
        seen = client.get("/plain", headers={"x-request-id": "inner"}).get_json()
        assert seen["x-request-id"] == "inner" and "end-user" not in seen
        seen = client.get("/plain").get_json()  # a request without any: none forwarded
        assert "x-request-id" not in seen and "end-user" not in seen
        # Outside the requests, the carried ones again.
        assert requests.get(reviews.url("/reviews/1"), timeout=5).json()["end-user"] == "outer"


def test_without_flasks_request_context_variable_the_headers_still_go(tracer, serve,
                                                                      monkeypatch):
    # As with a Flask older than 2.2: the handlers make the headers current themselves.
    integrations.instrument()
    saved = list(forwarding.REQUEST_SOURCE)
    forwarding.REQUEST_SOURCE[:] = [None, None]  # the list itself: the C handler holds it
    try:
        monkeypatch.setattr(ot_flask._instrumentor, "_request_context", None)
        ot_flask._instrumentor._state_changed()
        if ot_flask._instrumentor._handlers is not None:
            assert not any(handler.enabled for handler in ot_flask._instrumentor._handlers)
        reviews = serve(_reviews_app())
        client = _forwarder_app(reviews.url()).test_client()
        seen = client.get("/plain", headers={"x-request-id": "incoming"}).get_json()
        assert seen["x-request-id"] == "incoming"
    finally:
        forwarding.REQUEST_SOURCE[:] = saved
