"""Fixtures for the BookInfo example: the ``bookinfo`` package on ``sys.path``, and apps served
on loopback by a werkzeug server in a thread (port 0, so no fixed ports)."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, Iterator, List

import pytest

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "examples")
if EXAMPLES_DIR not in sys.path:
    sys.path.insert(0, EXAMPLES_DIR)


class ServedApp:
    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.port
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Any], ServedApp]]:
    served: List[ServedApp] = []

    def start(app: Any) -> ServedApp:
        served.append(ServedApp(app))
        return served[-1]

    yield start
    for item in served:
        item.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
