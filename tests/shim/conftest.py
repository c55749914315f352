"""Fixtures that run a real shim on loopback with free ports (0 means "disabled" to the shim,
so free ports are chosen first) and a store in tmp_path."""

from __future__ import annotations

from typing import Dict, Iterator, List

import pytest

from opentracing_sls.shim import store_accel, thrift_decode
from opentracing_sls.shim.config import resolve
from opentracing_sls.shim.server import Shim
from opentracing_sls.testing import free_ports

PORT_KEYS = ("compact_port", "binary_port", "http_port", "zipkin_port", "sampling_port",
             "admin_port", "query_port")


class RunningShim:
    def __init__(self, shim: Shim, ports: Dict[str, int], store_path: str) -> None:
        self.shim = shim
        self.ports = ports
        self.store_path = store_path

    def url(self, key: str, path: str) -> str:
        return "http://127.0.0.1:%d%s" % (self.ports[key], path)


@pytest.fixture
def shim_factory(tmp_path) -> Iterator:
    running: List[Shim] = []

    def start(**overrides: str) -> RunningShim:
        ports = dict(zip(PORT_KEYS, free_ports(len(PORT_KEYS))))
        flags = {"listen.host": "127.0.0.1",
                 "storage.local.path": str(tmp_path / "spans.db")}
        flags.update({"listen." + key: str(port) for key, port in ports.items()})
        flags.update(overrides)
        shim = Shim(resolve(flags, environ={}))
        shim.start()
        running.append(shim)
        return RunningShim(shim, ports, flags["storage.local.path"])

    yield start
    for shim in running:
        shim.stop(timeout=5)


@pytest.fixture
def pick_ports():
    return free_ports


@pytest.fixture(params=["python", "c"])
def compact_backend(request, monkeypatch):
    """Runs a test against both compact decoders (the C one when it was built); a test that
    takes the ``module`` fixture inspects the Python decoders' internals and runs on Python."""
    decode = thrift_decode.COMPACT_DECODERS.get(request.param)
    if decode is None:
        pytest.skip("the C compact decoder was not built")
    if request.param == "c" and "module" in request.fixturenames:
        pytest.skip("tests the Python decoders' internals")
    monkeypatch.setattr(thrift_decode, "_compact_decode", decode)
    return request.param


@pytest.fixture(params=["python", "c"])
def store_backend(request, monkeypatch):
    """Runs a test with the store's rows prepared by the Python loop, then by the C one (when
    it was built); stores opened inside the test use that backend."""
    if request.param == "c" and store_accel._cstore is None:
        pytest.skip("the C store accelerator was not built")
    monkeypatch.setattr(store_accel, "PREPARER",
                        store_accel._cstore.Preparer if request.param == "c" else None)
    return request.param
