"""Fixtures that run a real shim on loopback with free ports (0 means "disabled" to the shim,
so free ports are chosen first) and a store in tmp_path."""

from __future__ import annotations

import socket
from typing import Dict, Iterator, List

import pytest

from opentracing_sls.shim.config import resolve
from opentracing_sls.shim.server import Shim

PORT_KEYS = ("compact_port", "binary_port", "http_port", "zipkin_port", "sampling_port",
             "admin_port")


def free_ports(count: int) -> List[int]:
    """Ports free for both TCP and UDP on 127.0.0.1 (held open together, then released)."""
    held = []
    ports: List[int] = []
    try:
        while len(ports) < count:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                tcp.close()
                udp.close()
                continue
            held += [tcp, udp]
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


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
