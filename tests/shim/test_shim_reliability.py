"""Malformed input at volume: 100 000 bad datagrams and requests mixed with valid traffic.
The shim stays up, counts every malformed input, and stores every valid span."""

from __future__ import annotations

import json
import random
import socket
import time
import urllib.error
import urllib.request

from opentracing_sls.reporting.encoding import get_encoder
from opentracing_sls.shim.store import LocalStore
from opentracing_sls.testing import make_span_record

BAD_DATAGRAMS = 100_000


def metric_values(running, name):
    with urllib.request.urlopen(running.url("admin_port", "/metrics"), timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("opentracing_sls_shim_" + name):
            labels, value = line.rsplit(" ", 1)
            out[labels[len("opentracing_sls_shim_" + name):]] = float(value)
    return out


def valid_datagram(encoder, process, seq):
    records = [make_span_record(seq * 10 + i) for i in range(10)]
    spans = [encoder.encode_span(record) for record in records]
    return encoder.encode_emit_batch(process, spans, seq, (0, 0, 0)), records


def mutations(rng, valid):
    """Random bytes, truncations and bit flips of a valid datagram, all invalid."""
    kind = rng.randrange(3)
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 64)))
    if kind == 1:
        return valid[: rng.randrange(1, len(valid) - 1)]
    data = bytearray(valid)
    data[rng.randrange(0, 12)] ^= 1 << rng.randrange(8)  # break the message header
    return bytes(data)


def test_malformed_flood_with_valid_traffic(shim_factory):
    running = shim_factory()
    rng = random.Random(1234)
    encoder = get_encoder("compact")
    process = encoder.encode_process("flood-test", {"k": "v"})
    target = ("127.0.0.1", running.ports["compact_port"])
    sent_valid = 0
    valid_records = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        template, _ = valid_datagram(encoder, process, 0)
        for i in range(BAD_DATAGRAMS):
            sock.sendto(mutations(rng, template), target)
            if i % 1000 == 0:
                data, records = valid_datagram(encoder, process, i + 1)
                valid_records += records
                sock.sendto(data, target)
                sent_valid += 1
            if i % 2000 == 1999:
                # Pace by the shim's own progress so the kernel never has to drop.
                _wait_received(running, i + 1 + sent_valid)
    total = BAD_DATAGRAMS + sent_valid
    received = _wait_received(running, total)
    assert received == total
    assert metric_values(running, "inputs_dropped_total") .get(
        '{format="jaeger.compact",reason="socket_overflow"}', 0) == 0
    malformed = metric_values(running, "malformed_inputs_total")
    # Some truncations and flips may still parse as a valid (shorter) batch: those are
    # stored, not counted. Everything else is counted.
    decoded = metric_values(running, "spans_decoded_total")['{format="jaeger.compact"}']
    assert malformed['{format="jaeger.compact"}'] >= BAD_DATAGRAMS * 0.95
    assert decoded >= sent_valid * 10

    # HTTP: bad JSON, wrong shapes, bodies over the limit, garbage Thrift.
    bad_http = 0
    for i in range(300):
        kind = i % 3
        if kind == 0:
            url, body = running.url("zipkin_port", "/api/v2/spans"), b"[{" * rng.randrange(1, 50)
        elif kind == 1:
            url, body = running.url("zipkin_port", "/api/v1/spans"), json.dumps(
                {"not": "a list"}).encode()
        else:
            url, body = running.url("http_port", "/api/traces"), bytes(
                rng.getrandbits(8) for _ in range(100))
        status = _post(url, body)
        assert status == 400
        bad_http += 1
    huge = b"[" + b" " * (4 * 1024 * 1024 + 10) + b"]"
    assert _post(running.url("zipkin_port", "/api/v2/spans"), huge) == 413
    malformed = metric_values(running, "malformed_inputs_total")
    assert malformed['{format="zipkin.v2"}'] + malformed['{format="zipkin.v1"}'] + \
        malformed['{format="jaeger.http"}'] == bad_http

    # The shim is still up and stored every valid span.
    with urllib.request.urlopen(running.url("admin_port", "/healthz"), timeout=5) as r:
        assert json.loads(r.read())["status"] == "ok"
    # Mutations of one template that still parse repeat the template's span ids, which the
    # store keeps once; every span of the valid batches must be there.
    deadline = time.monotonic() + 20
    store = LocalStore(running.store_path)
    try:
        while time.monotonic() < deadline and running.shim.sinks[0]._queued:
            time.sleep(0.1)
        assert running.shim.sinks[0].drain(20)
        missing = [r for r in valid_records
                   if r.span_id not in {s.span_id for s in store.get_trace(r.trace_id)}]
        assert not missing
        assert "flood-test" in store.services()
    finally:
        store.close()


def _post(url, body):
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait_received(running, expected, timeout=60.0):
    deadline = time.monotonic() + timeout
    value = 0.0
    while time.monotonic() < deadline:
        value = metric_values(running, "packets_received_total").get(
            '{format="jaeger.compact"}', 0.0)
        if value >= expected:
            return value
        time.sleep(0.01)
    return value
