"""Unsampled requests skip building tags the tracer would drop, and nothing else changes.

Through real loopback servers: productpage (Flask, instrumented) calls details (a plain WSGI
app recording the headers it receives) with requests.
"""

from __future__ import annotations

import opentracing
import pytest
import requests
from flask import Flask
from jaeger_client import SpanContext as JaegerSpanContext
from opentracing.mocktracer import MockTracer

from opentracing_sls import Tracer, integrations
from opentracing_sls.integrations import flask as ot_flask
from opentracing_sls.integrations import requests as ot_requests
from opentracing_sls.integrations import suppress_instrumentation
from opentracing_sls.integrations.unsampled import active_child_unsampled, child_unsampled
from opentracing_sls.sampling import ConstSampler
from opentracing_sls.span_context import SpanContext
from opentracing_sls.testing import make_test_tracer

pytestmark = pytest.mark.usefixtures("handler_path")  # C and Python handlers

TRACE = "80f198ee56343ba864fe8b2a57d3eff7"
SPAN = "e457b5a2e4d86bd1"


class Details:
    """A plain WSGI app (no spans of its own) recording each request's headers."""

    def __init__(self) -> None:
        self.seen = []

    def __call__(self, environ, start_response):
        self.seen.append({key[5:].replace("_", "-").lower(): value
                          for key, value in environ.items() if key.startswith("HTTP_")})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"details"]


@pytest.fixture
def calls(monkeypatch):
    """How often the tag builders run."""
    counts = {"server": 0, "client": 0}
    server_tags, url_tags = ot_flask._server_tags, ot_requests._add_url_tags

    def counting_server_tags(*args):
        counts["server"] += 1
        return server_tags(*args)

    def counting_url_tags(*args):
        counts["client"] += 1
        return url_tags(*args)

    monkeypatch.setattr(ot_flask, "_server_tags", counting_server_tags)
    monkeypatch.setattr(ot_requests, "_add_url_tags", counting_url_tags)
    return counts


def productpage(details_url):
    app = Flask("productpage")

    @app.route("/productpage")
    def page():
        return requests.get(details_url, timeout=5).text

    return app


def call(tracer, serve, headers):
    opentracing.set_global_tracer(tracer)
    integrations.instrument()
    details = Details()
    server = serve(details)
    front = serve(productpage(server.url("/details/0")))
    with suppress_instrumentation():  # the test's own call sends exactly ``headers``
        response = requests.get(front.url("/productpage"), headers=headers, timeout=5)
    assert response.text == "details"
    [seen] = details.seen
    return seen


def test_unsampled_request_builds_no_tags_and_still_propagates(serve, calls):
    tracer = make_test_tracer(service_name="productpage")
    seen = call(tracer, serve, {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN,
                                "x-b3-sampled": "0", "x-request-id": "req-1"})
    assert tracer.reporter.get_spans() == []
    assert calls == {"server": 0, "client": 0}
    # The decision, the trace and Istio's request id still travel downstream, with a new
    # client span id under the server span's.
    assert seen["x-b3-traceid"] == TRACE and seen["x-b3-sampled"] == "0"
    assert seen["x-b3-spanid"] != SPAN and seen["x-b3-parentspanid"] not in (None, SPAN)
    assert seen["traceparent"].endswith("-00")
    assert seen["x-request-id"] == "req-1"


@pytest.mark.parametrize("headers", [
    {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1"},
    {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN},  # deferred: our sampler decides (yes)
    {},  # a new trace: our sampler decides (yes)
])
def test_sampled_requests_keep_every_tag(serve, calls, headers):
    tracer = make_test_tracer(service_name="productpage")
    call(tracer, serve, headers)
    by_name = {span.operation_name: span for span in tracer.reporter.get_spans()}
    assert set(by_name) == {"/productpage", "GET"}
    assert {"span.kind", "component", "http.method", "http.url", "peer.ipv4", "peer.port",
            "http.status_code"} <= set(by_name["/productpage"].tags)
    assert {"span.kind", "component", "http.method", "http.url", "peer.ipv4", "peer.port",
            "http.status_code"} <= set(by_name["GET"].tags)
    assert calls == {"server": 1, "client": 1}


def test_a_root_the_sampler_denies_still_gets_tags_offered(serve, calls):
    # The sampler decides a root: nothing is known before the span starts.
    tracer = make_test_tracer(service_name="productpage", sampler=ConstSampler(False))
    call(tracer, serve, {})
    assert tracer.reporter.get_spans() == []
    assert calls == {"server": 1, "client": 0}  # the client's parent is then known unsampled


def test_the_noop_tracer_gets_no_tags_and_headers_still_go_out(serve, calls):
    seen = call(opentracing.Tracer(), serve, {"x-b3-traceid": TRACE, "x-b3-spanid": SPAN,
                                              "x-request-id": "r"})
    assert calls == {"server": 0, "client": 0}
    assert (seen["x-b3-traceid"], seen["x-b3-spanid"], seen["x-request-id"]) == (TRACE, SPAN, "r")


def test_only_our_exact_tracer_and_decided_contexts_qualify():
    ours = make_test_tracer()
    denied = SpanContext(1, 2, 0, 0)
    assert child_unsampled(ours, denied)
    assert not child_unsampled(ours, SpanContext(1, 2, 0, 1))  # sampled
    assert not child_unsampled(ours, SpanContext(1, 2, 0, 0, sampling_deferred=True))
    assert not child_unsampled(ours, SpanContext(0, 0, 0, 0))  # a bare decision: a new root
    assert not child_unsampled(ours, None)
    assert not child_unsampled(ours, JaegerSpanContext(1, 2, 0, 0))

    class Custom(Tracer):
        pass

    custom = make_test_tracer()
    custom.__class__ = Custom  # same state, a subclass that could sample differently
    assert not child_unsampled(custom, denied)
    assert not child_unsampled(MockTracer(), denied)
    # OpenTracing's no-op tracer keeps nothing; a subclass of it might.
    assert child_unsampled(opentracing.Tracer(), None)
    assert active_child_unsampled(opentracing.Tracer())
    assert not child_unsampled(type("Own", (opentracing.Tracer,), {})(), None)

    assert not active_child_unsampled(ours)  # nothing active: a root
    with ours.start_active_span("denied", child_of=denied):
        assert active_child_unsampled(ours)
        assert not active_child_unsampled(custom)
    with ours.start_active_span("sampled"):
        assert not active_child_unsampled(ours)


def test_our_tracer_reads_the_environ_in_place_and_others_get_the_view():
    from opentracing_sls.integrations.unsampled import environ_carrier
    from opentracing_sls.integrations.wsgi import WSGIHeaders

    environ = {"wsgi.version": (1, 0), "REQUEST_METHOD": "GET", "HTTP_X_B3_TRACEID": TRACE,
               "HTTP_X_B3_SPANID": SPAN, "HTTP_X_B3_SAMPLED": "0", "HTTP_UBERCTX_USER": "a"}
    ours = make_test_tracer()
    assert environ_carrier(ours, environ) is environ
    http = opentracing.Format.HTTP_HEADERS
    assert ours.extract(http, environ) == ours.extract(http, WSGIHeaders(environ))
    assert ours.extract(http, environ).baggage == {"user": "a"}
    for tracer in (MockTracer(), opentracing.Tracer()):
        assert isinstance(environ_carrier(tracer, environ), WSGIHeaders)
    no_version = {k: v for k, v in environ.items() if k != "wsgi.version"}
    assert isinstance(environ_carrier(ours, no_version), WSGIHeaders)
    replaced = make_test_tracer()
    replaced.codecs[http] = type("OwnCodec", (type(replaced.codecs[http]),), {})(
        replaced.codecs[http].codecs)
    assert isinstance(environ_carrier(replaced, environ), WSGIHeaders)  # a codec of its own
