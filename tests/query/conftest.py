"""Fixture traces in a real LocalStore, and the query server running on a loopback port.

The traces (all within the last hour, so the UI's default lookback finds them):

- SHOP (128-bit id): frontend ``GET /checkout`` -> api ``charge`` -> db ``SELECT`` and a
  FOLLOWS_FROM ``send-mail`` in ``mailer``; the api span errors, carries an int64 beyond 2^53,
  a double, a binary value and a log; the frontend process has tags.
- HOME: frontend ``GET /`` -> api ``list`` (fast, no errors).
- SLOW: frontend ``GET /checkout`` taking 2 s.
- BIG: 2000 spans of ``frontend`` / ``api`` / ``db``, a deep and wide tree.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from opentracing_sls.shim.model import (
    BINARY,
    BOOL,
    CHILD_OF,
    DOUBLE,
    FOLLOWS_FROM,
    LONG,
    STRING,
    Log,
    Process,
    Reference,
    Span,
    Tag,
)
from opentracing_sls.shim.query_reader import LocalReader, Reader
from opentracing_sls.shim.store import LocalStore

NOW_US = int(time.time() * 1_000_000)
SHOP = (0xABCDEF << 64) | 0x1234
HOME = 0x77
SLOW = 0x5105
BIG = 0xB16B16
BIG_SPANS = 2000
BIG_INT = (1 << 60) + 3

FRONTEND = Process("frontend", (Tag("hostname", STRING, "fe-1"), Tag("ip", STRING, "10.0.0.7"),
                                Tag("jaeger.version", STRING, "Python-4.8.0")))
API = Process("api", (Tag("hostname", STRING, "api-1"),))
DB = Process("db", ())
MAILER = Process("mailer", ())


def make_span(trace_id: int, span_id: int, parent_id: int, operation: str, start: int,
              duration: int, process: Process, tags=(), logs=(),
              refs: Optional[Tuple[Reference, ...]] = None) -> Span:
    if refs is None:
        refs = (Reference(CHILD_OF, trace_id, parent_id),) if parent_id else ()
    return Span(trace_id, span_id, parent_id, operation, 1, start, duration, tuple(tags),
                tuple(logs), refs, process)


def shop_spans(start: int) -> List[Span]:
    return [
        make_span(SHOP, 1, 0, "GET /checkout", start, 300_000, FRONTEND,
                  tags=(Tag("span.kind", STRING, "server"),
                        Tag("http.status_code", LONG, 500))),
        make_span(SHOP, 2, 1, "charge", start + 10_000, 250_000, API,
                  tags=(Tag("span.kind", STRING, "server"), Tag("error", BOOL, True),
                        Tag("order.total", DOUBLE, 12.5), Tag("big", LONG, BIG_INT),
                        Tag("blob", BINARY, b"\x00\x01\xff")),
                  logs=(Log(start + 20_000, (Tag("event", STRING, "error"),
                                             Tag("message", STRING, "card declined"))),)),
        make_span(SHOP, 3, 2, "SELECT", start + 30_000, 5_000, DB,
                  tags=(Tag("span.kind", STRING, "client"),)),
        # As jaeger-client reports it: the parent id names the span it follows from.
        make_span(SHOP, 4, 1, "send-mail", start + 290_000, 40_000, MAILER,
                  refs=(Reference(FOLLOWS_FROM, SHOP, 1),)),
    ]


def big_spans(start: int) -> List[Span]:
    """A 2000-span trace: a root over 40 branches of up to 50 spans, each branch a chain of
    chains (every 7th span hangs off the start of the previous chain), so deep and wide."""
    processes = (FRONTEND, API, DB)
    spans = [make_span(BIG, 1, 0, "batch", start, 5_000_000, FRONTEND,
                       tags=(Tag("span.kind", STRING, "server"),))]
    parent = 1
    for n in range(BIG_SPANS - 1):
        branch, i = divmod(n, 50)
        if i % 7 == 0:
            parent = 1 if i == 0 else spans[-7].span_id
        spans.append(make_span(BIG, n + 2, parent, "step-%d" % (i % 5),
                               start + branch * 100_000 + i * 1_000, 50_000, processes[i % 3],
                               tags=(Tag("branch", LONG, branch),)))
        parent = n + 2
    return spans


def fixture_spans(now_us: int = NOW_US) -> List[Span]:
    return (shop_spans(now_us - 120_000_000)
            + [make_span(HOME, 1, 0, "GET /", now_us - 60_000_000, 12_000, FRONTEND,
                         tags=(Tag("span.kind", STRING, "server"),
                               Tag("http.status_code", LONG, 200))),
               make_span(HOME, 2, 1, "list", now_us - 59_995_000, 8_000, API,
                         tags=(Tag("span.kind", STRING, "server"),))]
            + [make_span(SLOW, 1, 0, "GET /checkout", now_us - 30_000_000, 2_000_000,
                         FRONTEND, tags=(Tag("span.kind", STRING, "server"),))]
            + big_spans(now_us - 600_000_000))


@pytest.fixture(scope="session")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("query") / "spans.db")
    with LocalStore(path) as store:
        store.write_spans(fixture_spans())
    return path


class Response:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class QueryServer:
    """An app served on 127.0.0.1 from a background event loop."""

    def __init__(self, app: Any) -> None:
        from aiohttp import web

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> Tuple[Any, int]:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            return runner, runner.addresses[0][1]

        self.runner, self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.base = "http://127.0.0.1:%d" % self.port

    def get(self, path: str, timeout: float = 10.0) -> Response:
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
                return Response(r.status, r.headers, r.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.headers, exc.read())

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., QueryServer]]:
    """``serve(reader, **query_app_kwargs)`` -> a running QueryServer, stopped after the test."""
    from opentracing_sls.shim.query_api import query_app

    servers: List[QueryServer] = []

    def start(reader: Reader, **kwargs: Any) -> QueryServer:
        server = QueryServer(query_app(reader, **kwargs))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def local_server(store_path: str) -> Iterator[QueryServer]:
    """The query server over the fixture store (shared by a module's tests: reads only)."""
    from opentracing_sls.shim.query_api import query_app

    reader = LocalReader.open(store_path)
    server = QueryServer(query_app(reader, owns_reader=True))
    yield server
    server.close()


def trace_hex(trace_id: int) -> str:
    return "%032x" % trace_id if trace_id >> 64 else "%016x" % trace_id


@pytest.fixture
def ids() -> Dict[str, str]:
    return {"shop": trace_hex(SHOP), "home": trace_hex(HOME), "slow": trace_hex(SLOW),
            "big": trace_hex(BIG)}
