"""The composite codec's fast paths give exactly what the codecs give one by one.

``CompositeCodec.extract`` reads only the headers its codecs declare (``EXTRACT_READS``) and
asks only the codecs whose headers are present; ``CompositeCodec.extract_from`` on a full
``HeaderReader`` asks every codec. ``CompositeCodec.inject`` into a plain dict formats the ids
once for every codec (``write_ids``); into anything else each codec injects on its own. The
differential tests below run both sides over random carriers and contexts.
"""

from __future__ import annotations

import random

import pytest
from opentracing import InvalidCarrierException
from werkzeug.datastructures import EnvironHeaders

from opentracing_sls.propagation import (
    DEFAULT_PROPAGATION,
    PROPAGATION_NAMES,
    B3Codec,
    CompositeCodec,
    JaegerCodec,
    TextCodec,
    W3CCodec,
    build_text_codec,
)
from opentracing_sls.propagation.carrier import HeaderPlan, HeaderReader
from opentracing_sls.span_context import SpanContext

SEED = 20240607
CARRIERS = 10_000

B3_TRACE = "463ac35c9f6413ad48485a3953bb6124"
B3_SPAN = "a2fb4a1d1a96d312"
W3C_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
W3C_SPAN = "00f067aa0ba902b7"

NAMES = [
    "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3",
    "traceparent", "tracestate", "uber-trace-id", "jaeger-debug-id", "jaeger-baggage",
    "uberctx-user", "uberctx-user_id", "uberctx-", "uberctx-a-b", "x-request-id", "host",
    "accept", "user-agent", "x-b3", "b3x", "uberctx", "traceparentx",
]
VALUES = [
    "463ac35c9f6413ad", B3_TRACE, B3_SPAN, "0000000000000000", "1", "0", "d", "true", "False",
    "", " 1 ", "1,0", f"{B3_TRACE}-{B3_SPAN}-1-{W3C_SPAN}", f"{B3_TRACE}-{B3_SPAN}",
    f"{B3_TRACE}-{B3_SPAN}-d", f"00-{W3C_TRACE}-{W3C_SPAN}-01", f"00-{W3C_TRACE}-{W3C_SPAN}-00",
    "rojo=1,congo=2", "1:2:0:1", f"{B3_TRACE}:{B3_SPAN}:0:3", "1%3A2%3A0%3A1", "k1=v1, k2=v2",
    "a%20b", "garbage", "\r\nx",
]


def random_value(rng):
    roll = rng.random()
    if roll < 0.75:
        return rng.choice(VALUES)
    if roll < 0.85:
        return [rng.choice(VALUES) for _ in range(rng.randint(0, 3))]
    if roll < 0.92:
        return rng.choice(VALUES).encode("latin-1")
    return rng.choice([None, 0, 3.5, ("1",), bytearray(b"0")])


def random_case(rng, name):
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def environ_key(name):
    return "HTTP_" + name.upper().replace("-", "_")


def random_headers(rng):
    """``(name, value)`` pairs: several formats at once, repeats in other spellings."""
    pairs = []
    if rng.random() < 0.5:  # a well-formed start, so the accepting and merging paths run
        pairs += rng.choice([
            [("x-b3-traceid", B3_TRACE), ("x-b3-spanid", B3_SPAN), ("x-b3-sampled", "1")],
            [("b3", f"{B3_TRACE}-{B3_SPAN}-0")],
            [("traceparent", f"00-{W3C_TRACE}-{W3C_SPAN}-01"), ("tracestate", "w=1")],
            [("uber-trace-id", f"{W3C_TRACE}:{W3C_SPAN}:0:1"), ("uberctx-k", "v")],
        ])
    pairs += [(rng.choice(NAMES), random_value(rng)) for _ in range(rng.randint(0, 8))]
    rng.shuffle(pairs)
    return pairs


class EnvironView:
    """A carrier that is a view of an environ, like werkzeug's EnvironHeaders."""

    def __init__(self, environ):
        self.environ = environ

    def items(self):
        for key, value in self.environ.items():
            if isinstance(key, str) and key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").lower(), value


def random_carrier(rng):
    pairs = random_headers(rng)
    shape = rng.random()
    if shape < 0.1:
        return [(name.encode() if rng.random() < 0.3 else name, value) for name, value in pairs]
    if shape < 0.5:
        carrier = {}
        for name, value in pairs:
            roll = rng.random()
            key = environ_key(name) if roll < 0.15 else (
                name.encode() if roll < 0.2 else random_case(rng, name))
            carrier.setdefault(key, value)
        if rng.random() < 0.05:
            carrier[7] = "not a str key"
        return carrier
    # A WSGI environ (keys as servers write them, a few oddly spelled), raw or behind a view.
    environ = {"wsgi.version": (1, 0), "REQUEST_METHOD": "GET", "PATH_INFO": "/x",
               "SERVER_NAME": "h", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
    for name, value in pairs:
        key = environ_key(name)
        if rng.random() < 0.05:
            key = key.replace("_", "-", 1)  # HTTP-X_B3...: not a header key of the plan
        environ.setdefault(key, value)
    if rng.random() < 0.05:
        environ[("not", "a", "str")] = "x"  # PEP 3333 forbids it; must not break us
    if rng.random() < 0.03:
        environ["weird\0HTTP_UBERCTX_X"] = "1"  # not a header, though it contains the prefix
    roll = rng.random()
    if roll < 0.4:
        return environ
    if roll < 0.7:
        return EnvironHeaders({k: v for k, v in environ.items() if isinstance(k, str)})
    return EnvironView(environ)


def composites():
    return [
        build_text_codec(DEFAULT_PROPAGATION, url_encoding=True),
        build_text_codec(DEFAULT_PROPAGATION, url_encoding=False),
        build_text_codec(list(reversed(PROPAGATION_NAMES)), url_encoding=True),
        build_text_codec(["jaeger", "b3single"], url_encoding=True),
        build_text_codec(["w3c"], url_encoding=False),
        build_text_codec(["jaeger"], url_encoding=True),
    ]


def read_everything(codec, carrier):
    """The composite's answer when every codec reads the whole carrier."""
    return codec.extract_from(HeaderReader(carrier))


def outcome(function, *args):
    try:
        return function(*args)
    except InvalidCarrierException:
        return InvalidCarrierException


def test_planned_extract_matches_reading_everything():
    rng = random.Random(SEED)
    codecs = composites()
    assert all(codec._plan is not None for codec in codecs)
    found = baggage = 0
    for _ in range(CARRIERS):
        carrier = random_carrier(rng)
        for codec in codecs:
            fast = outcome(codec.extract, carrier)
            full = outcome(read_everything, codec, carrier)
            assert fast == full, (codec, carrier)
            if isinstance(fast, SpanContext):
                found += fast.has_trace
                baggage += bool(fast.baggage)
    # The generator must reach the accepting and merging paths, not only rejections.
    assert found > CARRIERS
    assert baggage > CARRIERS // 10


def test_environ_keys_read_in_place():
    environ = {
        "wsgi.version": (1, 0), "REQUEST_METHOD": "GET",
        "HTTP_X_B3_TRACEID": B3_TRACE, "HTTP_X_B3_SPANID": B3_SPAN, "HTTP_X_B3_SAMPLED": "0",
        "HTTP_UBERCTX_USER_ID": "42", "HTTP_JAEGER_BAGGAGE": "tenant=acme",
        "HTTP_TRACEPARENT": f"00-{B3_TRACE}-{W3C_SPAN}-01", "HTTP_TRACESTATE": "w=1",
    }
    codec = build_text_codec(DEFAULT_PROPAGATION, url_encoding=True)
    for carrier in (environ, EnvironHeaders(environ), EnvironView(environ)):
        context = codec.extract(carrier)
        assert (context.trace_id, context.span_id, context.flags) == (
            int(B3_TRACE, 16), int(B3_SPAN, 16), 0)
        assert context.baggage == {"user-id": "42", "tenant": "acme"}
        assert context.trace_state == "w=1"  # same trace id in traceparent: kept


def test_environ_with_only_baggage_and_with_nothing():
    codec = build_text_codec(DEFAULT_PROPAGATION, url_encoding=True)
    environ = {"wsgi.version": (1, 0), "HTTP_HOST": "h", "HTTP_UBERCTX_A": "1"}
    context = codec.extract(environ)
    assert (context.trace_id, context.baggage, context.sampling_deferred) == (0, {"a": "1"}, True)
    assert codec.extract({"wsgi.version": (1, 0), "HTTP_HOST": "h"}) is None
    # The prefix on the environ's first key (nothing joined before it).
    assert codec.extract({"HTTP_UBERCTX_A": "1", "wsgi.version": (1, 0)}).baggage == {"a": "1"}
    # The key holds the prefix but is not a header: no baggage, and no error.
    assert codec.extract({"wsgi.version": (1, 0), "x\0HTTP_UBERCTX_A": "1"}) is None
    # A key that is not a str (PEP 3333 forbids it) does not stop the baggage scan.
    assert codec.extract({"wsgi.version": (1, 0), 1: "x", "HTTP_UBERCTX_B": "2"}).baggage == {
        "b": "2"}


@pytest.mark.parametrize("names, expected", [
    (["b3", "w3c", "jaeger"], "b3"),
    (["w3c", "b3", "jaeger"], "w3c"),
    (["jaeger", "w3c", "b3"], "jaeger"),
    (["b3single", "jaeger"], "b3"),
])
def test_precedence_with_every_format_present(names, expected):
    jaeger_trace, jaeger_span = "1" * 32, "2" * 16
    headers = {
        "b3": f"{B3_TRACE}-{B3_SPAN}-1", "X-B3-TraceId": "3" * 16, "X-B3-SpanId": "4" * 16,
        "traceparent": f"00-{W3C_TRACE}-{W3C_SPAN}-00",
        "uber-trace-id": f"{jaeger_trace}:{jaeger_span}:0:1", "uberctx-user": "alice",
    }
    ids = {"b3": (int(B3_TRACE, 16), int(B3_SPAN, 16)),  # the single header beats the multi
           "w3c": (int(W3C_TRACE, 16), int(W3C_SPAN, 16)),
           "jaeger": (int(jaeger_trace, 16), int(jaeger_span, 16))}[expected]
    environ = {"wsgi.version": (1, 0), **{"HTTP_" + k.upper().replace("-", "_"): v
                                          for k, v in headers.items()}}
    codec = build_text_codec(names, url_encoding=True)
    for carrier in (headers, environ, list(headers.items())):
        context = codec.extract(carrier)
        assert (context.trace_id, context.span_id) == ids
        assert context.baggage == {"user": "alice"}  # merged in whichever format wins
        assert context == read_everything(codec, carrier)


def test_codecs_without_declared_reads_are_always_asked():
    asked = []

    class Custom(TextCodec):
        def extract_from(self, headers):
            asked.append(headers.get("x-custom"))
            return SpanContext(0, 0, baggage={"custom": "yes"})

        def inject(self, span_context, carrier):
            carrier["x-custom"] = "1"

    class OwnB3(B3Codec):  # inherits EXTRACT_READS but reads differently
        def extract_from(self, headers):
            asked.append("own")
            return None

    codec = CompositeCodec([B3Codec(), Custom(), OwnB3()])
    assert codec._plan is None
    context = codec.extract({"X-Custom": "v"})
    assert context.baggage == {"custom": "yes"}
    assert asked == ["v", "own"]
    # A plain subclass keeps the declaration: the plan still applies.
    assert CompositeCodec([type("B3Again", (B3Codec,), {})()])._plan is not None


def test_plan_cache_is_bounded():
    plan = HeaderPlan(["x-b3-traceid"], ["uberctx-"])
    codec = build_text_codec(["b3", "jaeger"], url_encoding=False)
    for i in range(HeaderPlan.CACHE_MAX + 100):
        plan.classify("X-Unrelated-%d" % i)
    assert len(plan.relevant) == HeaderPlan.CACHE_MAX
    assert plan.classify("X-B3-TraceId") == "x-b3-traceid"  # still right once full
    assert plan.classify("HTTP_UBERCTX_A_B") == "uberctx-a-b"
    assert plan.classify(b"UberCtx-K") == "uberctx-k"
    assert plan.classify(("x",)) is None
    assert plan.classify("host") is None
    # Spellings seen once are remembered, the answer does not change with the cache.
    headers = {"X-B3-TraceId": B3_TRACE, "X-B3-SpanId": B3_SPAN, "UberCtx-K": "v"}
    for _ in range(3):
        context = codec.extract(headers)
        assert (context.trace_id, context.baggage) == (int(B3_TRACE, 16), {"k": "v"})


def random_context(rng):
    trace_id = rng.choice([rng.getrandbits(64) or 1, (rng.getrandbits(64) << 64) | 1,
                           1, 2**64, 2**64 - 1, 0])
    span_id = rng.choice([rng.getrandbits(64) or 1, 1, 2**64 - 1, 0])
    baggage = rng.choice([None, {"user": "a b"}, {"k": "v", "bad key": "x", "é": "1"}])
    return SpanContext(trace_id, span_id, rng.choice([0, 1, rng.getrandbits(64)]),
                       rng.choice([0, 1, 2, 3, 0x81]), baggage,
                       sampling_deferred=rng.random() < 0.2,
                       trace_state=rng.choice([None, "", "w=1"]))


STALE = ["x-b3-traceid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags", "b3",
         "traceparent", "tracestate", "uber-trace-id", "uberctx-user", "x-request-id"]


def test_fast_inject_matches_each_codec_injecting():
    rng = random.Random(SEED)
    configurations = [DEFAULT_PROPAGATION, PROPAGATION_NAMES, ["b3single"], ["w3c", "b3"],
                      ["jaeger"], ["b3", "b3single", "jaeger"]]
    for _ in range(2000):
        context = random_context(rng)
        carrier = {name: "stale" for name in rng.sample(STALE, rng.randint(0, len(STALE)))}
        for names in configurations:
            for url_encoding in (True, False):
                codec = build_text_codec(names, url_encoding=url_encoding)
                assert codec._writers is not None
                fast = dict(carrier)
                codec.inject(context, fast)
                one_by_one = dict(carrier)
                for each in codec.codecs:
                    each.inject(context, one_by_one)
                assert fast == one_by_one, (names, context)
                assert list(fast) == list(one_by_one)  # same header order on the wire


def test_other_carriers_and_codecs_inject_one_by_one():
    class Headers(dict):
        """A dict subclass may intercept writes: it gets every codec's own inject."""

        def __init__(self):
            super().__init__()
            self.writes = []

        def __setitem__(self, key, value):
            self.writes.append(key)
            super().__setitem__(key, value)

    context = SpanContext(int(B3_TRACE, 16), int(B3_SPAN, 16), 5, 1)
    carrier = Headers()
    build_text_codec(DEFAULT_PROPAGATION, url_encoding=True).inject(context, carrier)
    assert carrier.writes == ["x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
                              "x-b3-sampled", "traceparent", "uber-trace-id"]

    class LoudW3C(W3CCodec):
        def inject(self, span_context, carrier):
            carrier["x-loud"] = "1"

    codec = CompositeCodec([B3Codec(), LoudW3C(), JaegerCodec()])
    assert codec._writers is None
    plain = {}
    codec.inject(context, plain)
    assert plain["x-loud"] == "1" and "traceparent" not in plain
