"""Public test doubles: a tracer that keeps finished spans in memory.

Example::

    tracer = make_test_tracer()
    with tracer.start_active_span("work"):
        ...
    [record] = tracer.reporter.get_spans()
"""

from __future__ import annotations

import socket
from typing import Any, Dict, List, Optional

from opentracing import ScopeManager

from ..ids import new_id
from ..record import SpanRecord
from ..reporting import InMemoryReporter
from ..sampling import ConstSampler, Sampler
from ..tracer import Tracer

__all__ = ["InMemoryReporter", "SlsServer", "free_ports", "make_span_record",
           "make_test_tracer"]


def __getattr__(name: str) -> Any:
    # The SLS test server needs the shim extra (the SLS SDK): imported on first use only.
    if name == "SlsServer":
        from .sls_server import SlsServer

        return SlsServer
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def make_test_tracer(service_name: str = "test-service", sampler: Optional[Sampler] = None,
                     scope_manager: Optional[ScopeManager] = None, **kwargs: Any) -> Tracer:
    """A tracer that samples everything and records finished spans in ``tracer.reporter``.

    Extra keyword arguments go to :class:`~opentracing_sls.Tracer` (``propagation``,
    ``generate_128bit_trace_id``, ``max_tag_value_length`` ...).
    """
    return Tracer(service_name, InMemoryReporter(), sampler or ConstSampler(True),
                  scope_manager=scope_manager, **kwargs)


def make_span_record(i: int = 0, **fields: Any) -> SpanRecord:
    """A finished, sampled span record with fresh ids, for testing reporters and encoders.

    ``i`` numbers the operation name (``op-<i>``), start time and duration; keyword
    arguments override any :class:`~opentracing_sls.SpanRecord` field.
    """
    values: Dict[str, Any] = dict(
        trace_id=new_id(),
        span_id=new_id(),
        parent_id=0,
        operation_name="op-%d" % i,
        flags=1,
        start_time=1_700_000_000_000_000 + i,
        duration=100 + i,
        tags={"i": i},
        logs=[],
        references=[],
    )
    values.update(fields)
    return SpanRecord(**values)


def free_ports(count: int) -> List[int]:
    """``count`` ports free for both TCP and UDP on 127.0.0.1, for starting a shim in tests
    (where a port of 0 means "disabled", not "any"). They are held together while chosen,
    then released, so another process could still take one in between."""
    held: List[socket.socket] = []
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
