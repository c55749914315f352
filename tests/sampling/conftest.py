"""Fixtures for the sampling tests: a fake clock and a real local sampling-strategy server."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, List, Tuple

import pytest


class FakeClock:
    """A settable monotonic clock for rate limiters."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class StrategyServer:
    """A sampling endpoint on 127.0.0.1 serving whatever the test sets, recording requests."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b"{}"
        self.paths: List[str] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with outer._lock:
                    outer.paths.append(self.path)
                    status, body = outer.status, outer.body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.url = self.base_url + "/sampling"
        # A short poll interval so shutdown() at teardown does not wait half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def serve_json(self, payload: Any, status: int = 200) -> None:
        self.serve(json.dumps(payload).encode(), status)

    def serve(self, body: bytes, status: int = 200) -> None:
        with self._lock:
            self.status, self.body = status, body

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.paths)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def strategy_server() -> Iterator[StrategyServer]:
    server = StrategyServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[Tuple[str, int]]:
    """A port that accepts connections into its backlog but never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()
    finally:
        sock.close()
