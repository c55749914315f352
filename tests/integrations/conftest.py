"""Fixtures for the integration tests: a fresh global tracer, instrumentation undone after
each test, and real loopback WSGI servers on ports bound to 0."""

from __future__ import annotations

import threading
from typing import Any, Iterator, List

import opentracing
import pytest
from werkzeug.serving import make_server

from opentracing_sls import integrations
from opentracing_sls.integrations import diagnostics
from opentracing_sls.testing import make_test_tracer


@pytest.fixture(autouse=True)
def _clean_instrumentation(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OPENTRACING_SLS_FLASK_EXCLUDED_PATHS", "OPENTRACING_SLS_REQUESTS_EXCLUDED_URLS",
                 "OPENTRACING_SLS_FORWARD_HEADERS", "OPENTRACING_SLS_FORWARDING"):
        monkeypatch.delenv(name, raising=False)
    diagnostics.reset_for_tests()
    yield
    integrations.uninstrument()
    integrations.disable_log_correlation()


@pytest.fixture(params=["c", "python"])
def handler_path(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test twice: through the C request handlers (when built) and through the Python
    ones, which are the reference. The modules that trace requests in this process use it
    for every test (``pytestmark``); subprocess and C-piece tests need one run."""
    from opentracing_sls.integrations import flask as ot_flask
    from opentracing_sls.integrations import requests as ot_requests

    if request.param == "python":
        monkeypatch.setattr(ot_flask._instrumentor, "_handlers", None)
        monkeypatch.setattr(ot_requests._instrumentor, "_handler", None)
    elif ot_flask._instrumentor._handlers is None or ot_requests._instrumentor._handler is None:
        pytest.skip("the C handlers are not built (or OPENTRACING_SLS_PURE_PYTHON is set)")
    return request.param


@pytest.fixture
def tracer():
    """Our tracer with an in-memory reporter, installed as the global tracer."""
    t = make_test_tracer(service_name="svc")
    opentracing.set_global_tracer(t)
    return t


@pytest.fixture
def instrumented(tracer):
    integrations.instrument()
    return tracer


class LiveServer:
    """A threaded werkzeug server for ``app`` on 127.0.0.1, port chosen by the OS."""

    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def url(self, path: str = "/") -> str:
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: List[LiveServer] = []

    def start(app: Any) -> LiveServer:
        server = LiveServer(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()



@pytest.fixture
def spans(tracer):
    """``spans()``: the finished spans so far, by operation name (each name once)."""
    def by_name() -> dict:
        records = tracer.reporter.get_spans()
        names = [record.operation_name for record in records]
        assert len(names) == len(set(names)), names
        return {record.operation_name: record for record in records}
    return by_name


@pytest.fixture
def object_growth() -> Any:
    """``object_growth(run, warm, measured)``: how many more objects the garbage collector
    tracks after ``run(measured)`` than before it (``run(warm)`` first fills the caches). A
    reference leak per call shows as thousands."""
    import gc

    def measure(run: Any, warm: int, measured: int) -> int:
        run(warm)
        gc.collect()
        before = len(gc.get_objects())
        run(measured)
        gc.collect()
        return len(gc.get_objects()) - before
    return measure
