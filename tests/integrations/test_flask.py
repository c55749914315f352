"""Flask server spans: names, tags, parents, errors, exclusions, hooks, streaming, safety."""

from __future__ import annotations

import threading
import time
import traceback

import flask
import opentracing
import pytest
import requests
from flask import Flask, Response, request, stream_with_context
from opentracing.mocktracer import MockTracer

from opentracing_sls import integrations
from opentracing_sls.integrations import diagnostics
from opentracing_sls.integrations import flask as ot_flask
from opentracing_sls.testing import make_test_tracer

pytestmark = pytest.mark.usefixtures("handler_path")  # C and Python handlers

ORIGINAL_WSGI_APP = Flask.wsgi_app


def make_app() -> Flask:
    app = Flask("products")

    @app.route("/api/v1/products/<id>")
    def product(id):
        return {"id": id}

    @app.route("/status/<int:code>")
    def status(code):
        return "status", code

    return app


def test_span_named_after_the_route_template_with_semantic_tags(instrumented, spans):
    client = make_app().test_client()
    response = client.get("/api/v1/products/7?lang=en", buffered=True,
                          environ_base={"REMOTE_ADDR": "10.1.2.3", "REMOTE_PORT": 53211})
    assert response.json == {"id": "7"}
    span = spans()["/api/v1/products/<id>"]
    assert span.parent_id == 0
    assert span.tags["span.kind"] == "server"
    assert span.tags["component"] == "flask"
    assert span.tags["http.method"] == "GET"
    assert span.tags["http.url"] == "http://localhost/api/v1/products/7?lang=en"
    assert span.tags["http.status_code"] == 200
    assert span.tags["peer.ipv4"] == "10.1.2.3"
    assert span.tags["peer.port"] == 53211
    assert "error" not in span.tags and span.logs == []


def test_unmatched_requests_are_named_by_method_and_code(instrumented, spans):
    client = make_app().test_client()
    assert client.get("/nowhere", buffered=True).status_code == 404
    assert client.post("/api/v1/products/1", buffered=True).status_code == 405
    by_name = spans()
    assert set(by_name) == {"GET 404", "POST 405"}
    assert by_name["GET 404"].tags["http.status_code"] == 404
    assert "error" not in by_name["GET 404"].tags


def test_ipv6_peer_and_non_ascii_path(instrumented, spans):
    app = Flask("x")

    @app.route("/café")
    def cafe():
        return "ok"

    app.test_client().get("/caf%C3%A9", buffered=True, environ_base={"REMOTE_ADDR": "::1"})
    span = spans()["/café"]
    assert span.tags["peer.ipv6"] == "::1"
    assert span.tags["http.url"] == "http://localhost/caf%C3%A9"


@pytest.mark.parametrize("headers", [
    {"x-b3-traceid": "80f198ee56343ba864fe8b2a57d3eff7", "x-b3-spanid": "e457b5a2e4d86bd1",
     "x-b3-sampled": "1"},
    {"b3": "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"},
    {"traceparent": "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01"},
])
def test_the_incoming_context_is_the_parent(instrumented, spans, headers):
    make_app().test_client().get("/api/v1/products/1", headers=headers, buffered=True)
    span = spans()["/api/v1/products/<id>"]
    assert span.trace_id == 0x80f198ee56343ba864fe8b2a57d3eff7
    assert span.parent_id == 0xe457b5a2e4d86bd1


def test_incoming_deny_decision_is_kept(instrumented, spans):
    make_app().test_client().get("/api/v1/products/1", buffered=True,
                                 headers={"b3": "80f198ee56343ba864fe8b2a57d3eff7-"
                                                "e457b5a2e4d86bd1-0"})
    assert spans() == {}


def test_server_span_ignores_a_span_active_in_the_calling_thread(instrumented, spans):
    with instrumented.start_active_span("test-driver"):
        make_app().test_client().get("/api/v1/products/1", buffered=True)
    assert spans()["/api/v1/products/<id>"].parent_id == 0


def test_apps_created_before_and_after_instrumenting_are_traced(tracer, spans):
    before = make_app()
    integrations.instrument(["flask"])
    after = make_app()
    before.test_client().get("/api/v1/products/1", buffered=True)
    after.test_client().get("/status/201", buffered=True)
    assert set(spans()) == {"/api/v1/products/<id>", "/status/<int:code>"}


def test_instrument_is_idempotent_and_uninstrument_restores_the_method(tracer):
    assert ot_flask.instrument() and ot_flask.instrument()
    make_app().test_client().get("/api/v1/products/1", buffered=True)
    assert len(tracer.reporter.get_spans()) == 1
    assert ot_flask.uninstrument() is True
    assert Flask.wsgi_app is ORIGINAL_WSGI_APP
    assert ot_flask.uninstrument() is False
    make_app().test_client().get("/api/v1/products/1", buffered=True)
    assert len(tracer.reporter.get_spans()) == 1


def test_app_exception_passes_through_unchanged_and_is_tagged(instrumented, spans):
    app = make_app()
    app.testing = True  # PROPAGATE_EXCEPTIONS: Flask re-raises to the server
    raised = []

    @app.route("/boom")
    def boom():
        exc = ValueError("product 7 is gone")
        raised.append(exc)
        raise exc

    with pytest.raises(ValueError) as info:
        app.test_client().get("/boom")
    assert info.value is raised[0]
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "boom"
    span = spans()["/boom"]
    assert span.tags["error"] is True
    [(_, fields)] = span.logs
    assert fields["event"] == "error"
    assert fields["error.kind"] == "ValueError"
    assert fields["message"] == "product 7 is gone"
    assert "in boom" in fields["stack"] and "raise exc" in fields["stack"]


def test_exception_turned_into_500_is_tagged_once(instrumented, spans):
    app = make_app()

    @app.route("/boom")
    def boom():
        raise KeyError("k")

    assert app.test_client().get("/boom", buffered=True).status_code == 500
    span = spans()["/boom"]
    assert span.tags["error"] is True and span.tags["http.status_code"] == 500
    assert [fields["error.kind"] for _, fields in span.logs] == ["KeyError"]


def test_5xx_without_exception_is_an_error_4xx_is_not(instrumented, spans):
    client = make_app().test_client()
    client.get("/status/503", buffered=True)
    [span] = spans().values()
    assert span.tags["error"] is True
    assert span.logs[0][1] == {"event": "error", "message": "HTTP 503"}
    instrumented.reporter.clear()
    client.get("/status/404", buffered=True)
    assert "error" not in spans()["/status/<int:code>"].tags


def test_excluded_paths_produce_no_span_and_no_client_spans(tracer, spans, serve):
    downstream = Flask("down")
    seen = {}

    @downstream.route("/ping")
    def ping():
        seen.update(request.headers)
        return "pong"

    server = serve(downstream)
    app = make_app()

    @app.route("/health")
    def health():
        return requests.get(server.url("/ping"), timeout=5).text

    integrations.instrument(["requests"])
    ot_flask.instrument(excluded_paths=[r"^/health$"])
    assert app.test_client().get("/health", buffered=True).data == b"pong"
    assert app.test_client().get("/healthz", buffered=True).status_code == 404
    by_name = spans()
    # /ping is the downstream app's own server span, a new trace: nothing was propagated.
    assert set(by_name) == {"/ping", "GET 404"} and by_name["/ping"].parent_id == 0
    assert not any(name.lower().startswith(("x-b3", "traceparent")) for name in seen)


def test_excluded_paths_from_the_environment(tracer, spans, monkeypatch):
    monkeypatch.setenv("OPENTRACING_SLS_FLASK_EXCLUDED_PATHS", r"^/status/2, [invalid")
    ot_flask.instrument()
    client = make_app().test_client()
    client.get("/status/204", buffered=True)
    client.get("/status/404", buffered=True)
    assert [s.tags["http.status_code"] for s in tracer.reporter.get_spans()] == [404]


def test_bad_explicit_options_raise_before_patching(tracer):
    with pytest.raises(ValueError, match="excluded_paths"):
        ot_flask.instrument(excluded_paths=["("])
    with pytest.raises(ValueError, match="request_hook"):
        ot_flask.instrument(request_hook="not callable")
    assert Flask.wsgi_app is ORIGINAL_WSGI_APP


def test_hooks_see_the_request_and_response(tracer, spans):
    def on_request(span, environ):
        span.set_tag("tenant", environ.get("HTTP_X_TENANT"))
        span.set_tag("in.request.context", flask.has_request_context())

    def on_response(span, status_code, headers):
        span.set_tag("hook.status", status_code)
        span.set_tag("hook.type", dict(headers).get("Content-Type"))

    ot_flask.instrument(request_hook=on_request, response_hook=on_response)
    make_app().test_client().get("/api/v1/products/1", headers={"x-tenant": "acme"},
                                 buffered=True)
    tags = spans()["/api/v1/products/<id>"].tags
    assert tags["tenant"] == "acme" and tags["in.request.context"] is True
    assert tags["hook.status"] == 200 and tags["hook.type"] == "application/json"


def test_raising_hooks_never_reach_the_application(tracer, spans):
    def explode(*args):
        raise RuntimeError("hook bug")

    ot_flask.instrument(request_hook=explode, response_hook=explode)
    response = make_app().test_client().get("/api/v1/products/9", buffered=True)
    assert response.status_code == 200 and response.json == {"id": "9"}
    assert spans()["/api/v1/products/<id>"].tags["http.status_code"] == 200
    assert diagnostics.snapshot()["integrations.flask.hook_errors"] == 2


class _BrokenSpan(opentracing.Span):
    """Delegates to a real span, except that ``broken`` raises."""

    def __init__(self, tracer, inner, broken):
        super().__init__(tracer, inner.context)
        self.inner = inner
        self.broken = broken

    def set_tag(self, key, value):
        if self.broken == "set_tag":
            raise RuntimeError("tag bug")
        self.inner.set_tag(key, value)
        return self

    def log_kv(self, key_values, timestamp=None):
        if self.broken == "set_tag":
            raise RuntimeError("log bug")
        self.inner.log_kv(key_values, timestamp)
        return self

    def finish(self, finish_time=None):
        if self.broken == "finish":
            raise RuntimeError("finish bug")
        self.inner.finish(finish_time)


class _BrokenTracer(opentracing.Tracer):
    """Fails in the named place, to prove no tracing error reaches the application."""

    def __init__(self, broken: str) -> None:
        self.inner = make_test_tracer()
        super().__init__(self.inner.scope_manager)
        self.broken = broken

    def _check(self, name: str) -> None:
        if name == self.broken:
            raise RuntimeError("tracer bug in " + name)

    def start_span(self, operation_name=None, child_of=None, references=None, tags=None,
                   start_time=None, ignore_active_span=False):
        self._check("start_span")
        if isinstance(child_of, _BrokenSpan):
            child_of = child_of.inner
        inner = self.inner.start_span(operation_name, child_of, references, tags, start_time,
                                      ignore_active_span)
        return _BrokenSpan(self, inner, self.broken)

    def start_active_span(self, operation_name, child_of=None, references=None, tags=None,
                          start_time=None, ignore_active_span=False, finish_on_close=True):
        span = self.start_span(operation_name, child_of, references, tags, start_time,
                               ignore_active_span)
        return self.scope_manager.activate(span, finish_on_close)

    def extract(self, format, carrier):
        self._check("extract")
        return self.inner.extract(format, carrier)

    def inject(self, span_context, format, carrier):
        self._check("inject")
        return self.inner.inject(span_context, format, carrier)


@pytest.mark.parametrize("broken", ["start_span", "extract", "set_tag", "finish"])
def test_tracer_failures_never_reach_the_application(broken):
    tracer = _BrokenTracer(broken)
    ot_flask.instrument(tracer=tracer)
    app = make_app()
    app.testing = True
    client = app.test_client()
    for path, code in (("/api/v1/products/3", 200), ("/status/503", 503), ("/x", 404)):
        assert client.get(path, buffered=True).status_code == code
    assert diagnostics.snapshot()["integrations.flask.errors"] >= 1
    reported = len(tracer.inner.reporter.get_spans())
    # A failing extract or set_tag still gives spans; a failing start or finish gives none.
    assert reported == {"start_span": 0, "extract": 3, "set_tag": 3, "finish": 0}[broken]


def test_tracer_failure_keeps_the_app_exception_unchanged():
    ot_flask.instrument(tracer=_BrokenTracer("set_tag"))
    app = Flask("x")
    app.testing = True
    original = LookupError("the app's own")

    @app.route("/")
    def index():
        raise original

    with pytest.raises(LookupError) as info:
        app.test_client().get("/")
    assert info.value is original


def test_streamed_response_keeps_the_span_active_until_the_end(tracer, serve):
    ot_flask.instrument()
    app = Flask("stream")
    active_ids = []

    @app.route("/stream")
    def stream():
        def chunks():
            for i in range(3):
                time.sleep(0.05)
                active_ids.append(opentracing.global_tracer().active_span.context.span_id)
                yield b"chunk%d\n" % i
        return Response(stream_with_context(chunks()))

    server = serve(app)
    with requests.get(server.url("/stream"), stream=True, timeout=5) as response:
        lines = response.iter_lines()
        assert next(lines) == b"chunk0"
        assert tracer.reporter.get_spans() == []  # still streaming: not finished
        assert list(lines) == [b"chunk1", b"chunk2"]
    deadline = time.monotonic() + 5
    while not tracer.reporter.get_spans() and time.monotonic() < deadline:
        time.sleep(0.01)
    [span] = tracer.reporter.get_spans()
    assert span.operation_name == "/stream"
    assert active_ids == [span.span_id] * 3
    assert span.duration >= 150_000  # µs: the three chunks' sleeps are inside the span
    assert span.tags["http.status_code"] == 200


def test_error_in_a_streamed_body_is_tagged(instrumented, spans):
    app = Flask("stream")

    @app.route("/stream")
    def stream():
        def chunks():
            yield b"first"
            raise OSError("disk gone")
        return Response(chunks())

    with pytest.raises(OSError, match="disk gone"):
        app.test_client().get("/stream", buffered=True)
    span = spans()["/stream"]
    assert span.tags["error"] is True and span.logs[0][1]["error.kind"] == "OSError"


def test_teardown_and_before_request_short_circuit_run_under_the_span(instrumented, spans):
    app = make_app()
    seen = {}

    @app.before_request
    def gate():
        if request.path.endswith("/0"):
            return "no product 0", 403

    @app.teardown_request
    def teardown(exc):
        span = opentracing.global_tracer().active_span
        seen["teardown"] = span.context.span_id if span else None

    assert app.test_client().get("/api/v1/products/0", buffered=True).status_code == 403
    span = spans()["/api/v1/products/<id>"]
    assert span.tags["http.status_code"] == 403
    assert seen["teardown"] == span.span_id


def test_middleware_holding_the_unpatched_wsgi_app_is_still_traced(tracer, spans):
    app = make_app()

    class Middleware:
        def __init__(self, wsgi_app):
            self.wsgi_app = wsgi_app

        def __call__(self, environ, start_response):
            return self.wsgi_app(environ, start_response)

    app.wsgi_app = Middleware(app.wsgi_app)  # bound before instrumenting: our proxy is skipped
    ot_flask.instrument()
    app.test_client().get("/status/502", buffered=True)
    span = spans()["/status/<int:code>"]
    assert span.tags["http.status_code"] == 502 and span.tags["error"] is True


def test_works_with_the_opentracing_mock_tracer():
    mock = MockTracer()
    ot_flask.instrument(tracer=mock)
    carrier = {}
    parent = mock.start_span("upstream")
    mock.inject(parent.context, opentracing.Format.HTTP_HEADERS, carrier)
    client = make_app().test_client()
    client.get("/api/v1/products/5", headers=carrier, buffered=True)
    client.get("/api/v1/products/6", buffered=True)  # no headers: MockTracer raises inside
    first, second = mock.finished_spans()
    assert first.operation_name == "/api/v1/products/<id>"
    assert first.context.trace_id == parent.context.trace_id
    assert first.parent_id == parent.context.span_id
    assert first.tags["span.kind"] == "server" and first.tags["http.status_code"] == 200
    assert second.parent_id is None
    assert "integrations.flask.errors" not in diagnostics.snapshot()


def test_concurrent_requests_get_their_own_spans(instrumented, serve):
    app = make_app()

    @app.route("/slow/<n>")
    def slow(n):
        time.sleep(0.02)
        return str(opentracing.global_tracer().active_span.context.span_id)

    server = serve(app)
    answers = {}

    def call(n):
        answers[n] = int(requests.get(server.url("/slow/%d" % n), timeout=5).text)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 5
    while len([s for s in instrumented.reporter.get_spans() if s.operation_name == "/slow/<n>"]
              ) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    server_spans = {s.span_id for s in instrumented.reporter.get_spans()
                    if s.operation_name == "/slow/<n>"}
    assert server_spans == set(answers.values()) and len(server_spans) == 8


def test_file_responses_keep_the_servers_file_wrapper(instrumented, spans, tmp_path):
    from werkzeug.wsgi import FileWrapper

    (tmp_path / "report.txt").write_bytes(b"x" * 10000)
    app = Flask("files")

    @app.route("/report")
    def report():
        return flask.send_file(tmp_path / "report.txt")

    class ServerFileWrapper(FileWrapper):
        """Stands for a server's own wrapper (gunicorn's enables sendfile)."""

    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path="/report").get_environ()
    environ["wsgi.file_wrapper"] = ServerFileWrapper
    body = app(environ, lambda status, headers, exc_info=None: None)
    # Returned as is, so the server keeps its sendfile path; the span ended on hand-over.
    assert type(body) is ServerFileWrapper
    assert spans()["/report"].tags["http.status_code"] == 200
    body.close()


def test_wsgi_headers_carrier_and_request_url():
    from opentracing_sls.integrations.wsgi import WSGIHeaders, request_url

    environ = {"HTTP_X_B3_TRACEID": "abc", "CONTENT_TYPE": "text/plain", "PATH_INFO": "/a b",
               "SERVER_NAME": "example", "SERVER_PORT": "443", "wsgi.url_scheme": "https",
               "QUERY_STRING": "q=1"}
    headers = WSGIHeaders(environ)
    assert headers["X-B3-TraceId"] == "abc" and headers["content-type"] == "text/plain"
    assert dict(headers) == {"x-b3-traceid": "abc"} and len(headers) == 1
    assert request_url(environ) == "https://example/a%20b?q=1"
    environ["SERVER_PORT"] = "8443"
    assert request_url(environ) == "https://example:8443/a%20b?q=1"


def test_the_c_handlers_run_only_where_they_match_the_python_ones(handler_path, tracer):
    if handler_path == "python":
        pytest.skip("about the C handlers' switching; the Python handlers have none")
    handlers = ot_flask._instrumentor._handlers
    ot_flask.instrument()
    assert [h.enabled for h in handlers] == [True, True]
    for options in ({"excluded_paths": ["^/health"]}, {"request_hook": lambda *a: None},
                    {"forward_headers": ["x-tenant-*"]}):
        ot_flask.instrument(**options)
        assert [h.enabled for h in handlers] == [False, False], options
        ot_flask.instrument(excluded_paths=[], request_hook=None, forward_headers=[])
        assert [h.enabled for h in handlers] == [True, True]
    ot_flask.instrument(forwarding_enabled=False)  # nothing to capture: still C
    assert [h.enabled for h in handlers] == [True, True]
    ot_flask.uninstrument()
    assert [h.enabled for h in handlers] == [False, False]
    with pytest.raises(TypeError, match="needs opentracing"):
        handlers[0].enable(tracer=None)


def test_a_failing_extract_of_our_tracer_is_counted_and_the_span_is_a_root(tracer, spans):
    def broken(carrier):
        raise RuntimeError("extract bug")

    tracer.codecs[opentracing.Format.HTTP_HEADERS]._cextract = broken
    ot_flask.instrument()
    app = make_app()
    response = app.test_client().get("/api/v1/products/1", headers={
        "x-b3-traceid": "463ac35c9f6413ad", "x-b3-spanid": "a2fb4a1d1a96d312"})
    assert response.status_code == 200
    assert diagnostics.snapshot()["integrations.flask.errors"] == 1
    span = spans()["/api/v1/products/<id>"]
    assert span.parent_id == 0
    assert span.trace_id != 0x463ac35c9f6413ad


def test_no_reference_leak_per_request(instrumented, object_growth):
    import io
    import sys

    app = make_app()

    @app.route("/fails")
    def fails():
        raise KeyError("the app's own")

    app.logger.disabled = True  # pytest's log capture would keep a record per request

    def start_response(status, headers, exc_info=None):
        pass

    def requests_(n):
        for i in range(n):
            for path in ("/api/v1/products/%d" % i, "/status/503", "/missing", "/fails"):
                environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "x",
                           "SERVER_PORT": "80", "wsgi.url_scheme": "http",
                           "wsgi.version": (1, 0), "wsgi.input": io.BytesIO(b""),
                           "wsgi.errors": sys.stderr, "HTTP_X_B3_TRACEID": "%016x" % (i + 1),
                           "HTTP_X_B3_SPANID": "a2fb4a1d1a96d312", "HTTP_X_B3_SAMPLED": "0",
                           "HTTP_X_REQUEST_ID": "r%d" % i}
                body = app(environ, start_response)
                b"".join(body)
                body.close()
        instrumented.reporter.clear()

    assert object_growth(requests_, 30, 200) <= 50


def test_reconfiguring_from_inside_a_request_is_safe(tracer, spans):
    # The C handlers hold what they were enabled with for the whole request: switching them
    # off or over from a view must neither crash nor lose this request's span.
    integrations.instrument()
    app = Flask("admin")

    @app.route("/off")
    def off():
        integrations.uninstrument()
        return "off"

    @app.route("/hook")
    def hook():
        ot_flask.instrument(request_hook=lambda span, environ: span.set_tag("hooked", True))
        return "hook"

    client = app.test_client()
    assert client.get("/off").status_code == 200
    assert "/off" in spans()
    integrations.instrument()
    assert client.get("/hook").status_code == 200
    assert client.get("/hook").status_code == 200
    assert [s.tags.get("hooked") for s in tracer.reporter.get_spans()
            if s.operation_name == "/hook"] == [None, True]
