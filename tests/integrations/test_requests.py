"""requests client spans against real loopback servers: tags, injection, errors, exclusions,
suppression of our own traffic, redirects, hooks and tracer failures."""

from __future__ import annotations

import http.server
import socket
import threading
import time
import traceback
from typing import Any, Dict, List

import opentracing
import pytest
import requests
from opentracing.mocktracer import MockTracer
from requests.adapters import HTTPAdapter

from opentracing_sls import integrations
from opentracing_sls.integrations import diagnostics, suppress_instrumentation
from opentracing_sls.integrations import requests as ot_requests
from opentracing_sls.reporting import HttpSender, Reporter
from opentracing_sls.testing import make_span_record, make_test_tracer

pytestmark = pytest.mark.usefixtures("handler_path")  # C and Python handlers

ORIGINAL_SEND = requests.Session.send


class EchoApp:
    """A plain WSGI app (not Flask, so it makes no spans) recording each request's headers."""

    def __init__(self) -> None:
        self.requests: List[Dict[str, str]] = []

    def __call__(self, environ, start_response):
        headers = {key[5:].replace("_", "-").lower(): value
                   for key, value in environ.items() if key.startswith("HTTP_")}
        headers["path"] = environ["PATH_INFO"]
        self.requests.append(headers)
        path = environ["PATH_INFO"]
        if path.startswith("/status/"):
            start_response("%s X" % path.rsplit("/", 1)[1], [("Content-Type", "text/plain")])
        elif path == "/redirect":
            start_response("302 Found", [("Location", "/final")])
        else:
            start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


@pytest.fixture
def echo(serve):
    app = EchoApp()
    server = serve(app)
    server.app = app
    return server


def test_client_span_is_a_child_with_semantic_tags_and_injected_ids(instrumented, echo):
    with instrumented.start_active_span("handler") as scope:
        url = echo.url("/things?page=2").replace("http://", "http://user:secret@")
        assert requests.get(url, timeout=5).text == "ok"
        parent = scope.span.context
    [client, _] = instrumented.reporter.get_spans()
    assert client.operation_name == "GET"
    assert (client.trace_id, client.parent_id) == (parent.trace_id, parent.span_id)
    assert client.tags["span.kind"] == "client"
    assert client.tags["component"] == "requests"
    assert client.tags["http.method"] == "GET"
    assert client.tags["http.url"] == echo.url("/things?page=2")
    assert client.tags["peer.ipv4"] == "127.0.0.1" and client.tags["peer.port"] == echo.port
    assert client.tags["http.status_code"] == 200
    [seen] = echo.app.requests
    assert seen["x-b3-traceid"] == "%016x" % client.trace_id
    assert seen["x-b3-spanid"] == "%016x" % client.span_id
    assert seen["x-b3-parentspanid"] == "%016x" % parent.span_id
    assert seen["x-b3-sampled"] == "1"
    assert seen["traceparent"] == "00-%032x-%016x-01" % (client.trace_id, client.span_id)
    assert "b3" not in seen  # not configured, and nothing stale to rewrite


def test_host_name_peer_and_default_port(instrumented, echo):
    requests.get(echo.url("/").replace("127.0.0.1", "localhost"), timeout=5)
    [span] = instrumented.reporter.get_spans()
    assert span.tags["peer.hostname"] == "localhost" and span.tags["peer.port"] == echo.port


def test_5xx_is_an_error_4xx_is_not(instrumented, echo):
    assert requests.get(echo.url("/status/503"), timeout=5).status_code == 503
    assert requests.get(echo.url("/status/404"), timeout=5).status_code == 404
    failed, missing = instrumented.reporter.get_spans()
    assert failed.tags["error"] is True and failed.logs[0][1]["message"] == "HTTP 503"
    assert missing.tags["http.status_code"] == 404 and "error" not in missing.tags


class _FailingAdapter(HTTPAdapter):
    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def send(self, request, **kwargs):
        raise self.exc


def test_transport_exception_is_reraised_unchanged_and_tagged(instrumented):
    original = requests.exceptions.ConnectionError("connection refused by test")
    session = requests.Session()
    session.mount("http://", _FailingAdapter(original))
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        session.get("http://example.invalid/", timeout=1)
    assert info.value is original
    assert traceback.extract_tb(info.value.__traceback__)[-1].name == "send"
    [span] = instrumented.reporter.get_spans()
    assert span.tags["error"] is True
    assert span.logs[0][1]["error.kind"] == "ConnectionError"
    assert "http.status_code" not in span.tags


def test_real_connection_failure(instrumented):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get("http://127.0.0.1:%d/" % port, timeout=2)
    [span] = instrumented.reporter.get_spans()
    assert span.tags["error"] is True


def test_each_redirect_hop_gets_its_own_span(instrumented, echo):
    response = requests.get(echo.url("/redirect"), timeout=5)
    assert response.status_code == 200 and len(response.history) == 1
    hop, first = instrumented.reporter.get_spans()
    assert hop.parent_id == first.span_id
    assert first.tags["http.status_code"] == 302 and hop.tags["http.status_code"] == 200
    assert [r["x-b3-spanid"] for r in echo.app.requests] == [
        "%016x" % first.span_id, "%016x" % hop.span_id]


def test_excluded_urls_get_no_span_and_no_headers(tracer, echo):
    ot_requests.instrument(excluded_urls=[r"/metrics$"])
    requests.get(echo.url("/metrics"), timeout=5)
    requests.get(echo.url("/other"), timeout=5)
    assert [s.tags["http.url"] for s in tracer.reporter.get_spans()] == [echo.url("/other")]
    assert "x-b3-traceid" not in echo.app.requests[0]
    assert "x-b3-traceid" in echo.app.requests[1]


def test_suppress_instrumentation_block(instrumented, echo):
    with suppress_instrumentation():
        requests.get(echo.url("/"), timeout=5)
    assert instrumented.reporter.get_spans() == []
    assert "x-b3-traceid" not in echo.app.requests[0]


@pytest.mark.parametrize("thread_name", ["opentracing-sls-reporter", "opentracing-sls-sampler",
                                         "shim-sink-sls"])
def test_our_own_threads_are_never_traced(instrumented, echo, thread_name):
    thread = threading.Thread(target=requests.get, args=(echo.url("/"),), name=thread_name)
    thread.start()
    thread.join(5)
    assert instrumented.reporter.get_spans() == []
    assert "x-b3-traceid" not in echo.app.requests[0]


class _Collector(http.server.BaseHTTPRequestHandler):
    received: List[Dict[str, str]] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class _RequestsSender(HttpSender):
    """An HttpSender that posts with ``requests``, as a user's custom sender might."""

    def send(self, payload: bytes) -> None:
        requests.post(self.url, data=payload, timeout=5,
                      headers={"Content-Type": "application/vnd.apache.thrift.binary"}
                      ).raise_for_status()


@pytest.mark.parametrize("sender_class", [HttpSender, _RequestsSender])
def test_reporter_traffic_is_never_traced(instrumented, sender_class):
    _Collector.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = "http://127.0.0.1:%d/api/traces" % server.server_address[1]
    sender = sender_class(url)
    sender.url = url
    reporter = Reporter(sender, flush_interval=0.05)
    try:
        reporter.set_process("svc", {})
        with instrumented.start_active_span("app-work"):  # a span active in the app thread
            reporter.report_span(make_span_record())
            assert reporter.flush(5)
    finally:
        reporter.close(5)
        server.shutdown()
        server.server_close()
    assert len(_Collector.received) == 1
    headers = _Collector.received[0]
    assert not {"x-b3-traceid", "traceparent", "uber-trace-id"} & set(headers)
    assert [s.operation_name for s in instrumented.reporter.get_spans()] == ["app-work"]


def test_hooks_and_their_failures(tracer, echo):
    seen: Dict[str, Any] = {}

    def on_request(span, request):
        seen["header"] = request.headers.get("x-b3-spanid")
        raise RuntimeError("hook bug")

    def on_response(span, request, response):
        span.set_tag("body.length", len(response.content))

    ot_requests.instrument(request_hook=on_request, response_hook=on_response)
    assert requests.get(echo.url("/"), timeout=5).text == "ok"
    [span] = tracer.reporter.get_spans()
    assert seen["header"] == "%016x" % span.span_id
    assert span.tags["body.length"] == 2
    assert diagnostics.snapshot()["integrations.requests.hook_errors"] == 1


class _InjectFails(opentracing.Tracer):
    def __init__(self) -> None:
        self.inner = make_test_tracer()
        super().__init__(self.inner.scope_manager)

    def start_active_span(self, *args, **kwargs):
        return self.inner.start_active_span(*args, **kwargs)

    def inject(self, span_context, format, carrier):
        raise RuntimeError("inject bug")


def test_inject_failure_never_reaches_the_application(echo):
    tracer = _InjectFails()
    ot_requests.instrument(tracer=tracer)
    assert requests.get(echo.url("/"), timeout=5).text == "ok"
    assert len(tracer.inner.reporter.get_spans()) == 1
    assert diagnostics.snapshot()["integrations.requests.errors"] == 1


def test_mock_tracer_headers_and_forwarded_b3_coexist(echo):
    from opentracing_sls.integrations import forwarding

    mock = MockTracer()
    ot_requests.instrument(tracer=mock)
    incoming = {"x-b3-traceid": "463ac35c9f6413ad", "x-b3-spanid": "a2fb4a1d1a96d312",
                "x-request-id": "rid"}
    with forwarding.carry(incoming):
        requests.get(echo.url("/"), timeout=5)
    [span] = mock.finished_spans()
    [seen] = echo.app.requests
    assert seen["ot-tracer-spanid"] == "%x" % span.context.span_id
    # MockTracer writes no B3, so the mesh's headers are forwarded verbatim.
    assert seen["x-b3-spanid"] == "a2fb4a1d1a96d312" and seen["x-request-id"] == "rid"


def test_instrument_idempotent_uninstrument_restores(tracer, echo):
    assert integrations.instrument(["requests"]) == ["requests"]
    assert integrations.instrument(["requests"]) == ["requests"]
    requests.get(echo.url("/"), timeout=5)
    assert len(tracer.reporter.get_spans()) == 1
    assert integrations.uninstrument(["requests"]) == ["requests"]
    assert requests.Session.send is ORIGINAL_SEND
    assert integrations.uninstrument(["requests"]) == []
    requests.get(echo.url("/"), timeout=5)
    assert len(tracer.reporter.get_spans()) == 1


def test_unsampled_calls_still_propagate_the_decision(echo):
    from opentracing_sls.sampling import ConstSampler

    tracer = make_test_tracer(sampler=ConstSampler(False))
    opentracing.set_global_tracer(tracer)
    ot_requests.instrument()
    requests.get(echo.url("/"), timeout=5)
    assert tracer.reporter.get_spans() == []
    assert echo.app.requests[0]["x-b3-sampled"] == "0"


def test_client_span_duration_covers_the_call(instrumented, serve):
    def slow(environ, start_response):
        time.sleep(0.05)
        start_response("200 OK", [])
        return [b""]

    server = serve(slow)
    requests.get(server.url("/"), timeout=5)
    [span] = instrumented.reporter.get_spans()
    assert span.duration >= 50_000


def test_the_c_handler_runs_only_where_it_matches_the_python_one(handler_path, tracer):
    ot_requests.instrument()
    handler = ot_requests._instrumentor._handler
    if handler_path == "python":
        pytest.skip("about the C handler's switching; the Python handler has none")
    assert handler.enabled
    # Hooks and exclusions are the Python handler's alone.
    ot_requests.instrument(excluded_urls=["/health"])
    assert not handler.enabled
    ot_requests.instrument(excluded_urls=[], response_hook=lambda *a: None)
    assert not handler.enabled
    ot_requests.instrument(response_hook=None)
    assert handler.enabled
    ot_requests.uninstrument()
    assert not handler.enabled
    with pytest.raises(TypeError, match="needs opentracing"):
        handler.enable(tracer=None)
    assert not handler.enabled


class _Breaks(opentracing.Tracer):
    """Our tracer, except that one step of a client span raises."""

    def __init__(self, step: str) -> None:
        self.inner = make_test_tracer()
        self.step = step
        super().__init__(self.inner.scope_manager)

    def start_active_span(self, *args, **kwargs):
        if self.step == "start":
            raise RuntimeError("start bug")
        scope = self.inner.start_active_span(*args, **kwargs)
        if self.step in ("set_tag", "close"):
            broken = self.step

            def fail(*a, **k):
                raise RuntimeError(broken + " bug")
            if broken == "set_tag":
                scope.span.set_tag = fail
            else:
                real_close = scope.close

                def close():
                    real_close()
                    fail()
                scope.close = close
        return scope

    def inject(self, span_context, format, carrier):
        self.inner.inject(span_context, format, carrier)


class _Scripted(requests.adapters.BaseAdapter):
    """Answers in process: a status, or an exception to raise."""

    def __init__(self, status: int = 200, exc: Any = None) -> None:
        super().__init__()
        self.status, self.exc, self.sent = status, exc, []

    def send(self, request, **kwargs):
        self.sent.append(request)
        if isinstance(self.exc, type):
            raise self.exc("down")  # a fresh one per call: a re-raised one grows its traceback
        if self.exc is not None:
            raise self.exc
        response = requests.Response()
        response.status_code = self.status
        response._content = b"ok"
        response.request = request
        return response

    def close(self) -> None:
        pass


@pytest.mark.parametrize("step", ["start", "set_tag", "close"])
def test_a_failing_tracer_step_is_counted_and_the_call_still_happens(step):
    tracer = _Breaks(step)
    ot_requests.instrument(tracer=tracer)
    session = requests.Session()
    adapter = _Scripted(200)
    session.mount("http://", adapter)
    assert session.get("http://svc.local/", timeout=1).status_code == 200
    assert len(adapter.sent) == 1
    assert diagnostics.snapshot()["integrations.requests.errors"] == 1
    if step == "start":  # no span: the call went out untraced, without trace headers
        assert "x-b3-traceid" not in adapter.sent[0].headers
        assert tracer.inner.reporter.get_spans() == []
    else:
        assert adapter.sent[0].headers["x-b3-traceid"]
        assert len(tracer.inner.reporter.get_spans()) == 1
    assert tracer.active_span is None


def test_the_apps_exception_passes_even_when_our_end_of_span_fails():
    tracer = _Breaks("close")
    ot_requests.instrument(tracer=tracer)
    session = requests.Session()
    original = requests.exceptions.ReadTimeout("slow")
    session.mount("http://", _Scripted(exc=original))
    with pytest.raises(requests.exceptions.ReadTimeout) as info:
        session.get("http://svc.local/", timeout=1)
    assert info.value is original and info.value.__context__ is None
    assert diagnostics.snapshot()["integrations.requests.errors"] == 1
    [span] = tracer.inner.reporter.get_spans()
    assert span.tags["error"] is True


def test_keyword_arguments_reach_the_original(instrumented):
    session = requests.Session()
    adapter = _Scripted(204)
    seen = []
    adapter_send = adapter.send

    def send(request, **kwargs):
        seen.append(kwargs)
        return adapter_send(request, **kwargs)
    adapter.send = send
    session.mount("http://", adapter)
    session.get("http://svc.local/", timeout=3, verify=False, stream=True)
    assert seen[0]["timeout"] == 3 and seen[0]["verify"] is False and seen[0]["stream"] is True
    [span] = instrumented.reporter.get_spans()
    assert span.tags["http.status_code"] == 204


def test_headers_other_than_requests_own_mapping(instrumented):
    session = requests.Session()
    adapter = _Scripted(200)
    session.mount("http://", adapter)
    request = requests.Request("GET", "http://svc.local/x").prepare()
    request.headers = {"B3": "stale-stale-1"}  # a plain dict, as some wrappers leave it
    session.send(request, timeout=1)
    [span] = instrumented.reporter.get_spans()
    sent = adapter.sent[0].headers
    assert sent["x-b3-spanid"] == "%016x" % span.span_id
    assert "B3" not in sent and sent["b3"].startswith("%016x-%016x" % (span.trace_id,
                                                                        span.span_id))


def test_no_reference_leak_per_call(instrumented, object_growth):
    session = requests.Session()
    session.mount("http://", _Scripted(200))
    ok = _Scripted(exc=requests.exceptions.ConnectionError)
    failing = requests.Session()
    failing.mount("http://", ok)

    def calls(n):
        for _ in range(n):
            session.get("http://svc.local/", timeout=1)
            with pytest.raises(requests.exceptions.ConnectionError):
                failing.get("http://svc.local/", timeout=1)
        instrumented.reporter.clear()
        ok.sent.clear()
        session.adapters["http://"].sent.clear()

    assert object_growth(calls, 50, 300) <= 50


def test_url_tags_are_cached_bounded_and_never_shared_mutably(instrumented, monkeypatch):
    monkeypatch.setattr(ot_requests, "_URL_CACHE_MAX", 3)
    ot_requests._url_tags_cache.clear()
    session = requests.Session()
    session.mount("http://", _Scripted(200))
    for i in range(5):
        session.get("http://user:pw@svc.local:8080/items/%d" % i, timeout=1)
    session.get("http://user:pw@svc.local:8080/items/4", timeout=1)
    spans = instrumented.reporter.get_spans()
    assert [s.tags["http.url"] for s in spans] == [
        "http://svc.local:8080/items/%d" % i for i in (0, 1, 2, 3, 4, 4)]
    assert all(s.tags["peer.hostname"] == "svc.local" and s.tags["peer.port"] == 8080
               for s in spans)
    # Started over when full: at most 3 entries, the latest among them.
    assert len(ot_requests._url_tags_cache) <= 3
    assert "http://user:pw@svc.local:8080/items/4" in ot_requests._url_tags_cache
    cached = ot_requests._url_tags_cache["http://user:pw@svc.local:8080/items/4"]
    assert cached == {"http.url": "http://svc.local:8080/items/4",
                      "peer.hostname": "svc.local", "peer.port": 8080}
    spans[-1].tags["http.url"] = "changed"  # the span's tags are its own copy
    assert cached["http.url"] == "http://svc.local:8080/items/4"


def test_reconfiguring_from_inside_a_call_is_safe(instrumented):
    # requests runs response hooks inside Session.send: the C handler must keep what it was
    # enabled with until the call is done.
    session = requests.Session()
    session.mount("http://", _Scripted(200))

    def off(response, **kwargs):
        ot_requests.uninstrument()

    def reconfigure(response, **kwargs):
        ot_requests.instrument(response_hook=lambda span, request, response: None)

    assert session.get("http://svc.local/", timeout=1, hooks={"response": off}).ok
    ot_requests.instrument()
    assert session.get("http://svc.local/", timeout=1, hooks={"response": reconfigure}).ok
    assert session.get("http://svc.local/", timeout=1).ok
    assert len(instrumented.reporter.get_spans()) == 3
