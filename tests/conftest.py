"""Shared fixtures: every test starts with a clean global tracer and JAEGER_* environment."""

from __future__ import annotations

import os

import opentracing
import pytest

from opentracing_sls.config import Config


@pytest.fixture(autouse=True)
def _clean_tracing_state(monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.startswith("JAEGER_"):
            monkeypatch.delenv(name)
    previous = opentracing.global_tracer()
    Config._reset_for_tests()
    yield
    Config._reset_for_tests()
    opentracing.set_global_tracer(previous)


class UdpSink:
    """A loopback UDP socket on a free port that collects datagrams."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def receive(self, count: int = 1, timeout: float = 5.0) -> list:
        """At least ``count`` datagrams (fewer if ``timeout`` runs out), plus any already queued."""
        import socket
        import time

        out = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if len(out) >= count:
                remaining = 0.05
            if remaining <= 0:
                return out
            self.sock.settimeout(remaining)
            try:
                out.append(self.sock.recv(70000))
            except socket.timeout:
                if len(out) >= count:
                    return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def udp_sink():
    sink = UdpSink()
    yield sink
    sink.close()


def decode_with_jaeger_client(data: bytes, protocol: str = "compact"):
    """Decodes an emitBatch datagram with jaeger-client's own generated Thrift classes."""
    from jaeger_client.thrift_gen.agent import Agent
    from thrift.protocol import TBinaryProtocol, TCompactProtocol
    from thrift.transport import TTransport

    transport = TTransport.TMemoryBuffer(data)
    proto = (TCompactProtocol.TCompactProtocol(transport) if protocol == "compact"
             else TBinaryProtocol.TBinaryProtocol(transport))
    name, _, _ = proto.readMessageBegin()
    assert name == "emitBatch"
    args = Agent.emitBatch_args()
    args.read(proto)
    proto.readMessageEnd()
    return args.batch


@pytest.fixture
def jaeger_client_decode():
    return decode_with_jaeger_client


def decode_with_our_idl(data: bytes, protocol: str = "compact"):
    """Decodes an emitBatch datagram with thriftpy2 and our IDL (which has seqNo/stats;
    jaeger-client's generated classes predate those fields)."""
    from thriftpy2.protocol import TBinaryProtocol, TCompactProtocol
    from thriftpy2.transport import TMemoryBuffer

    from opentracing_sls.reporting.idl import agent

    transport = TMemoryBuffer(data)
    proto = (TCompactProtocol(transport) if protocol == "compact"
             else TBinaryProtocol(transport))
    name, _, _ = proto.read_message_begin()
    assert name == "emitBatch"
    args = agent.Agent.emitBatch_args()
    args.read(proto)
    return args.batch


@pytest.fixture
def idl_decode():
    return decode_with_our_idl
