"""What the sinks' counters say must match what happened to each span: a re-delivered span
is not "written" twice, it is a drop with the reason ``duplicate``."""

from __future__ import annotations

import socket
import time

from opentracing_sls.reporting.encoding import get_encoder
from opentracing_sls.shim.store import LocalStore
from opentracing_sls.testing import make_span_record


def _counter(running, name, **labels):
    value = running.shim.metrics.registry.get_sample_value(
        "opentracing_sls_shim_" + name + "_total", labels)
    return value or 0.0


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_redelivered_spans_count_as_duplicates_not_written(shim_factory):
    running = shim_factory()
    encoder = get_encoder("compact")
    process = encoder.encode_process("accounting", {})
    spans = [encoder.encode_span(make_span_record(i + 1)) for i in range(20)]
    datagram = encoder.encode_emit_batch(process, spans, 1, (0, 0, 0))
    target = ("127.0.0.1", running.ports["compact_port"])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(datagram, target)
        assert _wait_for(lambda: _counter(running, "spans_written", sink="local") == 20)
        sock.sendto(datagram, target)  # the client retried: the same 20 spans again
        assert _wait_for(lambda: _counter(running, "spans_dropped", sink="local",
                                          reason="duplicate") == 20)
    assert _counter(running, "spans_written", sink="local") == 20
    assert _counter(running, "spans_decoded", format="jaeger.compact") == 40
    with LocalStore(running.store_path, create=False) as store:
        assert store.span_count() == 20
