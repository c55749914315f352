"""Extraction is total: random and malformed carriers never raise, and results are sane."""

from __future__ import annotations

import random
import re
import struct

from opentracing_sls.propagation import (
    DEFAULT_PROPAGATION,
    PROPAGATION_NAMES,
    B3Codec,
    BinaryCodec,
    JaegerCodec,
    W3CCodec,
    build_text_codec,
)
from opentracing_sls.span_context import SpanContext

HEADER_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
SEED = 20240601
CARRIERS = 10_000

HEADER_NAMES = [
    "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3",
    "traceparent", "tracestate", "uber-trace-id", "jaeger-debug-id", "jaeger-baggage",
    "uberctx-user", "uberctx-", "uberctx-ÄÖ", "content-type", "x-request-id",
]

VALID_VALUES = [
    "463ac35c9f6413ad", "463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312",
    "0000000000000000", "1", "0", "d", "true", "false",
    "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1-0020000000000001",
    "463ac35c9f6413ad-a2fb4a1d1a96d312", "463ac35c9f6413ad-a2fb4a1d1a96d312-d",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",
    "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    "463ac35c9f6413ad:a2fb4a1d1a96d312:0:1", "1:2:3:3", "1%3A2%3A0%3A1",
    "k1=v1, k2=v2", "a%20b", "%ZZ%", "%",
]

ALPHABET = "0123456789abcdefABCDEF-:,=%; \t\r\nxyzé漢\x00\x7f"


def random_case(rng, name):
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def random_key(rng):
    roll = rng.random()
    if roll < 0.7:
        return random_case(rng, rng.choice(HEADER_NAMES))
    if roll < 0.8:
        return "HTTP_" + rng.choice(HEADER_NAMES).upper().replace("-", "_")
    if roll < 0.85:
        return rng.choice(HEADER_NAMES).encode("utf-8")
    if roll < 0.9:
        return rng.choice([None, 1, 2.5, ("a",), b"\xff\xfe"])
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12)))


def mutate(rng, value):
    chars = list(value)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        position = rng.randint(0, len(chars))
        if op < 0.3 and chars:
            del chars[min(position, len(chars) - 1)]
        elif op < 0.6:
            chars.insert(position, rng.choice(ALPHABET))
        elif chars:
            chars[min(position, len(chars) - 1)] = rng.choice(ALPHABET)
    return "".join(chars)


def random_text(rng):
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(VALID_VALUES)
    if roll < 0.65:
        return mutate(rng, rng.choice(VALID_VALUES))
    if roll < 0.7:
        return ""
    if roll < 0.73:
        return rng.choice(VALID_VALUES) * rng.randint(100, 2000)  # huge
    if roll < 0.8:
        return "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(1, 40)))
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 80)))


def random_value(rng):
    roll = rng.random()
    if roll < 0.7:
        return random_text(rng)
    if roll < 0.8:
        return [random_value(rng) for _ in range(rng.randint(0, 3))]
    if roll < 0.85:
        return tuple(random_text(rng) for _ in range(rng.randint(0, 2)))
    if roll < 0.93:
        return random_text(rng).encode("utf-8", "surrogatepass")
    return rng.choice([None, 0, 1, 3.14, object(), {"nested": "dict"}, bytearray(b"1")])


VALID_CARRIERS = [
    {"X-B3-TraceId": "463ac35c9f6413ad", "X-B3-SpanId": "a2fb4a1d1a96d312", "X-B3-Sampled": "1"},
    {"b3": "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-d"},
    {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
     "tracestate": "a=1"},
    {"uber-trace-id": "1:2:0:1", "uberctx-k": "v", "jaeger-baggage": "a=b"},
]


def random_carrier(rng):
    pairs = []
    if rng.random() < 0.3:
        # Start from a well-formed carrier so the accepting and merging paths get fuzzed too.
        for valid in rng.sample(VALID_CARRIERS, rng.randint(1, len(VALID_CARRIERS))):
            for key, value in valid.items():
                if rng.random() < 0.2:
                    value = mutate(rng, value)
                pairs.append((random_case(rng, key), value))
    pairs += [(random_key(rng), random_value(rng)) for _ in range(rng.randint(0, 10))]
    rng.shuffle(pairs)
    if rng.random() < 0.1:
        return pairs  # list-of-pairs carrier
    carrier = {}
    if rng.random() < 0.1:
        carrier["wsgi.version"] = (1, 0)  # read as a WSGI environ, by HTTP_* keys
    for key, value in pairs:
        try:
            carrier[key] = value
        except TypeError:
            pass  # unhashable key
    return carrier


def text_codecs():
    codecs = [
        B3Codec(), B3Codec(multi_header=False, single_header=True), W3CCodec(),
        JaegerCodec(url_encoding=False), JaegerCodec(url_encoding=True),
        build_text_codec(DEFAULT_PROPAGATION, url_encoding=True),
        build_text_codec(reversed(PROPAGATION_NAMES), url_encoding=False),
    ]
    return codecs


def check_sane(context):
    if context is None:
        return
    assert isinstance(context, SpanContext)
    assert 0 <= context.trace_id < 2**128
    assert 0 <= context.span_id < 2**64
    assert 0 <= context.parent_id < 2**64
    assert 0 <= context.flags <= 0xFF
    assert bool(context.trace_id) == bool(context.span_id)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in context.baggage.items())
    if context.trace_state is not None:
        assert context.trace_state.isascii() and context.trace_state.isprintable()


def test_random_header_carriers_never_raise():
    rng = random.Random(SEED)
    codecs = text_codecs()
    default = codecs[5]
    found_ids = 0
    for _ in range(CARRIERS):
        carrier = random_carrier(rng)
        for codec in codecs:
            context = codec.extract(carrier)
            check_sane(context)
        context = default.extract(carrier)
        if context is not None and context.has_trace:
            found_ids += 1
            # What we extracted, we can inject and read back unchanged.
            out = {}
            default.inject(context, out)
            again = default.extract(out)
            assert (again.trace_id, again.span_id) == (context.trace_id, context.span_id)
            # Header names are case-insensitive, and keys that are not header tokens stay home.
            sent = {(key.lower(), value) for key, value in context.baggage.items()}
            assert set(again.baggage.items()) <= sent
            assert len(again.baggage) >= len(
                {k.lower() for k in context.baggage if HEADER_TOKEN.fullmatch(k)})
    # The generator must actually reach the parsers' accepting paths, not only reject.
    assert found_ids > CARRIERS // 5


def test_random_bytes_never_raise_binary():
    rng = random.Random(SEED)
    codec = BinaryCodec()
    valid = bytearray()
    codec.inject(SpanContext(0x463AC35C9F6413AD, 0xA2, 1, 1, {"k": "v", "key2": "value2"}),
                 valid)
    decoded = 0
    for i in range(CARRIERS):
        roll = rng.random()
        if roll < 0.4:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 120)))
        elif roll < 0.8:
            data = bytearray(valid)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.getrandbits(8)
            data = bytes(data[:rng.randint(0, len(data))]) if rng.random() < 0.3 else data
        else:
            count = rng.choice([0, 1, 2, 2**31, 2**32 - 1])
            data = struct.pack(">QQQQBI", rng.getrandbits(64), rng.getrandbits(64),
                               rng.getrandbits(64), rng.getrandbits(64), rng.getrandbits(8),
                               count)
            data += bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
        wrapped = (bytes, bytearray, memoryview)[i % 3](data)
        context = codec.extract(wrapped)
        check_sane(context)
        decoded += context is not None
    assert decoded > CARRIERS // 10
