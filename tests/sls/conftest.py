"""Fixtures for the SLS sink tests: a real SLS test server on a free loopback port, the
official SDK pointed at it, and shims writing to it."""

from __future__ import annotations

from typing import Dict, Iterator, List

import pytest
from aliyun.log import LogClient

from opentracing_sls.shim.config import resolve
from opentracing_sls.shim.server import Shim
from opentracing_sls.testing import free_ports
from opentracing_sls.testing.sls_server import SlsServer

PROJECT = "trace-test"
LOGSTORE = "jaeger-span"
LISTEN_KEYS = ("compact_port", "binary_port", "http_port", "zipkin_port", "sampling_port",
               "admin_port", "query_port")


@pytest.fixture
def sls_server() -> Iterator[SlsServer]:
    server = SlsServer().start()
    yield server
    server.stop()


def sdk_client(server: SlsServer, secret: str = "") -> LogClient:
    client = LogClient(server.endpoint, server.access_key_id,
                       secret or server.access_key_secret, source="127.0.0.1")
    client._isRowIp = True  # the SDK would prefix the project to "127.0.0.1:port"
    return client


@pytest.fixture
def sdk():
    """``sdk(server, secret="")``: the official LogClient pointed at the test server."""
    return sdk_client


def shim_flags(server: SlsServer, spool: str, **overrides: str) -> Dict[str, str]:
    """A shim writing only to ``server``: compact UDP and admin ports, fast batching."""
    compact, admin = free_ports(2)
    flags = {"listen.host": "127.0.0.1"}
    flags.update({"listen." + key: "0" for key in LISTEN_KEYS})
    flags.update({
        "listen.compact_port": str(compact), "listen.admin_port": str(admin),
        "storage.type": "aliyun_sls",
        "storage.aliyun_sls.endpoint": server.endpoint,
        "storage.aliyun_sls.project": PROJECT,
        "storage.aliyun_sls.accesskey.id": server.access_key_id,
        "storage.aliyun_sls.accesskey.secret": server.access_key_secret,
        "storage.aliyun_sls.batch.linger_ms": "100",
        "storage.aliyun_sls.retry.initial_backoff_ms": "20",
        "storage.aliyun_sls.retry.max_backoff_ms": "200",
        "storage.aliyun_sls.timeout_ms": "2000",
        "spool.path": spool,
    })
    flags.update(overrides)
    return flags


@pytest.fixture
def flags_for(tmp_path):
    """``flags_for(server, **overrides)``: shim flags writing to ``server``."""
    return lambda server, **overrides: shim_flags(server, str(tmp_path / "spool"), **overrides)


@pytest.fixture
def sls_shim(tmp_path) -> Iterator:
    running: List[Shim] = []

    def start(server: SlsServer, **overrides: str) -> Shim:
        flags = shim_flags(server, str(tmp_path / "spool"), **overrides)
        shim = Shim(resolve(flags, environ={}))
        shim.start()
        shim.ports = {k: int(flags["listen." + k]) for k in ("compact_port", "admin_port")}
        running.append(shim)
        return shim

    yield start
    for shim in running:
        shim.stop(timeout=5)
