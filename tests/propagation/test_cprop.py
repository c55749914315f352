"""The C fast path of ``CompositeCodec.extract`` / ``inject`` (``_cprop``) against the Python one.

``_cprop`` handles a WSGI environ with only B3 headers (or none) and a context with ids
injected into a fresh dict, and answers ``NOT_HANDLED`` for the rest. The differential tests
run both paths over random environs and contexts, malformed ones included, and require the
same contexts field by field, the same dict items in the same order, the same exceptions.
The Python path is a twin composite whose C hooks are switched off.
"""

from __future__ import annotations

import copy
import itertools
import pickle
import random
import sys
from typing import Any, List

import pytest
from opentracing import Format

from opentracing_sls._accel import pure_python
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
from opentracing_sls.propagation import composite as composite_module
from opentracing_sls.reporting import InMemoryReporter
from opentracing_sls.sampling import ConstSampler
from opentracing_sls.span import Span
from opentracing_sls.span_context import SpanContext
from opentracing_sls.tracer import Tracer

cprop = pytest.importorskip("opentracing_sls._cprop", reason="C accelerator not built")
pytestmark = pytest.mark.skipif(
    pure_python(), reason="compares the C fast path with the Python one; C is switched off")

NOT_HANDLED = cprop.NOT_HANDLED
SEED = 20240611
ENVIRONS = 8_000
CONTEXTS = 4_000

T32 = "463ac35c9f6413ad48485a3953bb6124"
T16 = "463ac35c9f6413ad"
S16 = "a2fb4a1d1a96d312"
P16 = "0020000000000001"
Z16 = "0" * 16

#: Every order of every non-empty subset of the propagation names.
ALL_CONFIGURATIONS = [list(order) for k in range(1, len(PROPAGATION_NAMES) + 1)
                      for order in itertools.permutations(PROPAGATION_NAMES, k)]
CONFIGURATIONS = [list(DEFAULT_PROPAGATION), ["b3"], ["b3single"], ["b3", "b3single"],
                  ["w3c", "b3"], ["jaeger", "b3"], ["b3", "jaeger"], ["b3single", "w3c"],
                  ["w3c"], ["jaeger"], list(reversed(PROPAGATION_NAMES))]


def pair(names, url_encoding=True):
    """(composite with the C hooks, the same composite in pure Python)."""
    fast = build_text_codec(names, url_encoding=url_encoding)
    slow = build_text_codec(names, url_encoding=url_encoding)
    slow._cextract = slow._cinject = None
    return fast, slow


def fields(context: Any) -> Any:
    if not isinstance(context, SpanContext):
        return context
    return (type(context), context.trace_id, type(context.trace_id), context.span_id,
            type(context.span_id), context.parent_id, type(context.parent_id), context.flags,
            type(context.flags), dict(context._baggage), context.debug_id,
            context.sampling_deferred, context.trace_state)


def outcome(function, *args):
    try:
        return fields(function(*args))
    except Exception as exc:  # noqa: BLE001 - both paths must raise alike
        return type(exc)


# ---------------------------------------------------------------------------- extraction

def hex_id(rng, digits):
    roll = rng.random()
    if roll < 0.04:
        return "0" * digits
    if roll < 0.08:
        return "0" * (digits - 1) + "1"
    text = "".join(rng.choice("0123456789abcdef") for _ in range(digits))
    if roll < 0.2:
        return text.upper()
    if roll < 0.3:
        return "".join(c.upper() if rng.random() < 0.5 else c for c in text)
    return text


def mangle(rng, text):
    """``text`` as peers and proxies may send it, well or badly."""
    roll = rng.random()
    if roll < 0.6:
        return text
    if roll < 0.66:
        return rng.choice([" ", "\t", "\x0b", "\x1c", "  "]) + text + rng.choice(["", " ", "\r"])
    if roll < 0.7:
        return text + "," + rng.choice(["", text, "x", " 0"])
    if roll < 0.73:
        return rng.choice([" ,", ",", ""]) + text
    if roll < 0.76 and text:
        i = rng.randrange(len(text))
        return text[:i] + rng.choice("gG-xz \x11\x10:é") + text[i + 1:]
    if roll < 0.79 and text:
        i = rng.randrange(len(text) + 1)
        return text[:i] + text[i:i + 1] + text[i:]  # one more character
    if roll < 0.82 and text:
        return text[:-1]
    if roll < 0.84:
        return "\xa0" + text  # non-ASCII whitespace: str.strip() removes it
    if roll < 0.86:
        return text + "\u2003"
    if roll < 0.88:
        return text.encode("latin-1", "replace")
    if roll < 0.9:
        return [text, "0" * 16]
    if roll < 0.91:
        return (text,)
    if roll < 0.92:
        return bytearray(text.encode("latin-1", "replace"))
    if roll < 0.93:
        return None
    if roll < 0.94:
        return 1
    if roll < 0.95:
        return type("Text", (str,), {})(text)
    if roll < 0.96:
        return "١" * len(text)  # digits that are not ASCII
    return rng.choice(["", " ", ",", "-", "null", "\x00"])


def trace_text(rng):
    return hex_id(rng, rng.choice([16, 32, 32, 32, 15, 17, 31, 33]))


def span_text(rng):
    return hex_id(rng, rng.choice([16, 16, 16, 16, 15, 17]))


def sampled_text(rng):
    return rng.choice(["1", "0", "1", "0", "true", "false", "TRUE", "False", "tRuE", "2", "d",
                       "", "yes", "01", "\x11", "\x10", "1,0", "0,1", " 1", "0 "])


def single_text(rng):
    roll = rng.random()
    if roll < 0.2:
        return rng.choice(["0", "1", "d", "D", "x", "2", "", "-", "00", "11"])
    parts = [trace_text(rng), span_text(rng)]
    if rng.random() < 0.7:
        parts.append(rng.choice(["1", "0", "d", "D", "1", "0", "2", "x", "", "11"]))
        if rng.random() < 0.5:
            parts.append(span_text(rng))
    if rng.random() < 0.05:
        parts.append(rng.choice(["", "1", S16]))
    sep = "-" if rng.random() < 0.95 else rng.choice(["_", ":", "--"])
    return sep.join(parts)


B3_HEADERS = {
    "HTTP_X_B3_TRACEID": trace_text,
    "HTTP_X_B3_SPANID": span_text,
    "HTTP_X_B3_PARENTSPANID": span_text,
    "HTTP_X_B3_SAMPLED": sampled_text,
    "HTTP_X_B3_FLAGS": lambda rng: rng.choice(["1", "0", "1", "2", "", "1,1", " 1 ", "true"]),
    "HTTP_B3": single_text,
}
OTHER_HEADERS = {
    "HTTP_TRACEPARENT": lambda rng: f"00-{hex_id(rng, 32)}-{hex_id(rng, 16)}-01",
    "HTTP_TRACESTATE": lambda rng: "rojo=00f067aa0ba902b7",
    "HTTP_UBER_TRACE_ID": lambda rng: f"{hex_id(rng, 32)}:{hex_id(rng, 16)}:0:1",
    "HTTP_JAEGER_DEBUG_ID": lambda rng: "debug-1",
    "HTTP_JAEGER_BAGGAGE": lambda rng: "k1=v1, k2=v2",
    "HTTP_UBERCTX_USER_ID": lambda rng: "42",
    "HTTP_UBERCTX_": lambda rng: "empty key",
}
ODD_KEYS = [
    "HTTP_X_B3_TRACEIDX", "HTTP_X_B3_TRACEI", "http_x_b3_traceid", "HTTP-X-B3-TRACEID",
    "HTTP_B", "HTTP_", "HTTP_B3_", "X_B3_TRACEID", "HTTP_UBERCTX", "HTTP_UBERCTXX_A",
    "HTTP_TRACEPARENTS", "HTTP_X_B3_FLAGZ", "weird\0HTTP_UBERCTX_X", "HTTP_X_B3_SPANÍD",
    "HTTP_Ā", "wsgi.versio", "HTTP_JAEGER_BAGGAGF",
]


def istio_environ(rng):
    environ = {
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/v1/products/1", "QUERY_STRING": "", "SERVER_NAME": "productpage",
        "SERVER_PORT": "9080", "REMOTE_ADDR": "10.0.0.7", "HTTP_HOST": "productpage:9080",
        "HTTP_USER_AGENT": "curl/8.4.0", "HTTP_ACCEPT": "*/*",
        "HTTP_X_REQUEST_ID": "6a6b2c3e-1b1f-9c4e-8f0e-3c1e2e0b1a44",
        "HTTP_X_FORWARDED_PROTO": "http",
    }
    keys = list(environ)
    rng.shuffle(keys)  # wsgi.version anywhere, before or after the headers
    return {key: environ[key] for key in keys}


def random_environ(rng):
    environ = istio_environ(rng)
    shape = rng.random()
    if shape < 0.35:  # the Istio request, well formed
        environ["HTTP_X_B3_TRACEID"] = hex_id(rng, rng.choice([32, 32, 16]))
        environ["HTTP_X_B3_SPANID"] = hex_id(rng, 16)
        if rng.random() < 0.7:
            environ["HTTP_X_B3_PARENTSPANID"] = hex_id(rng, 16)
        if rng.random() < 0.8:
            environ["HTTP_X_B3_SAMPLED"] = rng.choice(["1", "0"])
    for key, make in B3_HEADERS.items():
        if rng.random() < 0.3:
            environ[key] = mangle(rng, make(rng))
    if shape > 0.85:
        for key in rng.sample(list(OTHER_HEADERS), rng.randint(1, 2)):
            environ[key] = OTHER_HEADERS[key](rng)
    if rng.random() < 0.1:
        environ[rng.choice(ODD_KEYS)] = mangle(rng, rng.choice([T32, S16, "1"]))
    roll = rng.random()
    if roll < 0.02:
        del environ["wsgi.version"]  # a plain dict of WSGI-spelled keys: not an environ
    elif roll < 0.03:
        environ[7] = "a key that is not a str"
    elif roll < 0.04:
        environ = type("Environ", (dict,), {})(environ)
    elif roll < 0.05:
        environ = {k[5:].lower().replace("_", "-") if k.startswith("HTTP_") else k: v
                   for k, v in environ.items()}  # header names, as a plain dict
    return environ


def test_extract_matches_python_on_random_environs():
    rng = random.Random(SEED)
    codecs = [pair(names, url) for names in CONFIGURATIONS for url in (True, False)]
    assert all(fast._cextract is not None for fast, _ in codecs)
    handled = contexts = traces = nones = 0
    for _ in range(ENVIRONS):
        environ = random_environ(rng)
        snapshot = list(environ.items())
        for fast, slow in codecs:
            expected = outcome(slow.extract, environ)
            assert outcome(fast.extract, environ) == expected, (fast, environ)
            direct = fast._cextract(environ)
            if direct is not NOT_HANDLED:
                handled += 1
                assert fields(direct) == expected, (fast, environ)
                if direct is None:
                    nones += 1
                else:
                    contexts += 1
                    traces += bool(direct.trace_id)
        assert list(environ.items()) == snapshot  # read only
    # The generator reaches every kind of answer the C path gives, and it gives many (about
    # half the configurations do not have B3 first: only "no header at all" is taken there).
    total = ENVIRONS * len(codecs)
    assert handled > total // 2
    assert nones > total // 4
    assert traces > total // 20
    assert contexts - traces > total // 50  # bare decisions


def b3_case(trace=T32, span=S16, parent=None, sampled=None, flags=None, single=None):
    environ = istio_environ(random.Random(1))
    for key, value in (("HTTP_X_B3_TRACEID", trace), ("HTTP_X_B3_SPANID", span),
                       ("HTTP_X_B3_PARENTSPANID", parent), ("HTTP_X_B3_SAMPLED", sampled),
                       ("HTTP_X_B3_FLAGS", flags), ("HTTP_B3", single)):
        if value is not None:
            environ[key] = value
    return environ


@pytest.mark.parametrize("environ", [
    b3_case(sampled="1", parent=P16), b3_case(sampled="0"), b3_case(), b3_case(trace=T16),
    b3_case(trace=Z16 + S16, sampled="1"), b3_case(trace=Z16), b3_case(span=Z16),
    b3_case(parent=Z16, sampled="1"), b3_case(parent="", sampled="1"), b3_case(sampled=""),
    b3_case(sampled="\x11"), b3_case(sampled="\x10"), b3_case(sampled=" TRUE "),
    b3_case(sampled="False,1"), b3_case(flags="1"), b3_case(flags="1", sampled="0"),
    b3_case(trace=None, sampled="0"), b3_case(trace=None, flags="1"),
    b3_case(trace=None, span=None), b3_case(trace=T32.upper(), span=S16.upper()),
    b3_case(trace=" " + T32 + "\t"), b3_case(trace=T32 + "," + T16), b3_case(span=S16[:-1]),
    b3_case(trace=T32[:-1] + "g"), b3_case(single="0"), b3_case(single="d", sampled="0"),
    b3_case(single=f"{T32}-{S16}"), b3_case(single=f"{T32}-{S16}-1-{P16}"),
    b3_case(single=f"{T16}-{S16}-D"), b3_case(single=f"{Z16}-{S16}-1", sampled="0"),
    b3_case(single=f"{T32}-{S16}-2"), b3_case(single=f"{T32}-{S16}-1-"),
    b3_case(single=f" {T32}-{S16}-0 ,x"), b3_case(single="garbage", sampled="1"),
    b3_case(trace=None, span=None, single=f"{T32}-{S16}-1"),
])
def test_extract_edge_cases_are_handled_in_c_like_python(environ):
    fast, slow = pair(DEFAULT_PROPAGATION)
    result = fast._cextract(environ)
    assert result is not NOT_HANDLED
    assert fields(result) == fields(slow.extract(environ))


@pytest.mark.parametrize("extra", [
    {"HTTP_X_B3_TRACEID": T32.encode()}, {"HTTP_X_B3_SAMPLED": ["1"]},
    {"HTTP_X_B3_SPANID": "é" * 16}, {"HTTP_TRACEPARENT": f"00-{T32}-{S16}-01"},
    {"HTTP_UBERCTX_K": "v"}, {"HTTP_UBERCTX_": "v"}, {"HTTP_JAEGER_DEBUG_ID": "x"},
    {"HTTP_UBERCTXĀ": "v"}, {1: "x"},
])
def test_extract_declines_what_python_reads_its_own_way(extra):
    fast, slow = pair(DEFAULT_PROPAGATION)
    environ = b3_case(sampled="1")
    environ.update(extra)
    assert fast._cextract(environ) is NOT_HANDLED
    assert fields(fast.extract(environ)) == fields(slow.extract(environ))


def test_extract_without_any_propagation_header_is_none_in_c():
    for names in ALL_CONFIGURATIONS:
        fast, _ = pair(names)
        environ = istio_environ(random.Random(2))
        environ["HTTP_UBERCTX_K"] = "v"  # baggage only matters when jaeger is configured
        if "jaeger" in names:
            assert fast._cextract(environ) is NOT_HANDLED
            del environ["HTTP_UBERCTX_K"]
        assert fast._cextract(environ) is None
        assert fast._cextract({"HTTP_X_B3_TRACEID": T32}) is NOT_HANDLED  # no environ
        assert fast._cextract([("x-b3-traceid", T32)]) is NOT_HANDLED


def test_codecs_c_does_not_know_keep_the_python_path():
    class Custom(TextCodec):
        EXTRACT_READS = (("x-custom",), ())

        def extract_from(self, headers):
            return SpanContext(0, 0, baggage={"custom": headers.get("x-custom")})

        def inject(self, span_context, carrier):
            carrier["x-custom"] = "1"

    codec = CompositeCodec([B3Codec(), Custom()])
    assert codec._plan is not None
    assert codec._cextract is None and codec._cinject is None
    assert codec.extract({"wsgi.version": (1, 0), "HTTP_X_CUSTOM": "v"}).baggage == {
        "custom": "v"}
    with pytest.raises(ValueError):
        cprop.Extractor((), ("x-custom",), ())
    with pytest.raises(ValueError):
        cprop.Extractor((), (), ("x-",))
    with pytest.raises(ValueError):
        cprop.Extractor(("traceparent",), ("traceparent",), ())  # C reads only B3
    # The same codec type twice, or a subclass: no C inject.
    assert CompositeCodec([B3Codec(), B3Codec(single_header=True)])._cinject is None
    assert CompositeCodec([type("MyW3C", (W3CCodec,), {})()])._cinject is None
    with pytest.raises(ValueError):
        cprop.Injector((B3Codec(), B3Codec()))
    # A subclass of B3 first: no B3 read in C, but "no header at all" still is.
    codec = CompositeCodec([type("MyB3", (B3Codec,), {})(), JaegerCodec()])
    assert codec._cextract is not None
    assert codec._cextract(istio_environ(random.Random(3))) is None
    assert codec._cextract(b3_case(sampled="1")) is NOT_HANDLED


# ----------------------------------------------------------------------------- injection

class OtherContext(SpanContext):
    __slots__ = ()


def random_id(rng, bits):
    return rng.choice([rng.getrandbits(bits) or 1, rng.getrandbits(64) or 1, 1, 0xF,
                       2**63, 2**64 - 1, 2**64, 2**64 + 1, 2**128 - 1, 2**128, 0, -1,
                       rng.getrandbits(bits) or 1, (rng.getrandbits(64) << 64) | 1])


def random_context(rng):
    roll = rng.random()
    trace_id = rng.choice([rng.getrandbits(128) or 1, rng.getrandbits(64) or 1]) \
        if roll < 0.6 else random_id(rng, 128)
    span_id = rng.getrandbits(64) or 1 if roll < 0.6 else random_id(rng, 64)
    parent_id = rng.choice([0, 0, rng.getrandbits(64) or 1, 1, 0x10, 2**64 - 1])
    flags = rng.choice([0, 1, 2, 3, 0, 1, 0x81, 0xFF, 0x100, -1, -2, 2**70])
    deferred = rng.random() < 0.25
    baggage = None if rng.random() < 0.85 else {"user": "a b", "bad key": "x"}
    trace_state = rng.choice([None] * 8 + ["", "rojo=00f067aa0ba902b7"])
    if rng.random() < 0.05:  # types the Python code formats its own way (or fails on)
        which = rng.randrange(6)
        trace_id = True if which == 0 else trace_id
        span_id = 2.0 if which == 1 else span_id
        parent_id = None if which == 2 else parent_id
        flags = True if which == 3 else flags
        deferred = 1 if which == 4 else deferred
        trace_state = b"x" if which == 5 else trace_state
    cls = OtherContext if rng.random() < 0.03 else SpanContext
    return cls(trace_id, span_id, parent_id, flags, baggage, None, deferred, trace_state)


def random_carrier(rng):
    roll = rng.random()
    if roll < 0.9:
        return {}
    if roll < 0.95:
        return {"x-b3-sampled": "stale", "x-request-id": "1"}
    return type("Headers", (dict,), {})()


def injected(codec, context, carrier):
    try:
        codec.inject(context, carrier)
    except Exception as exc:  # noqa: BLE001 - both paths must raise alike
        return type(exc), list(carrier.items())
    return list(carrier.items())  # the order too: it is the order on the wire


def test_inject_matches_python_on_random_contexts():
    rng = random.Random(SEED)
    codecs = [pair(names, url) for names in CONFIGURATIONS for url in (True, False)]
    assert all(fast._cinject is not None for fast, _ in codecs)
    handled = 0
    for _ in range(CONTEXTS):
        context = random_context(rng)
        carrier = random_carrier(rng)
        for fast, slow in codecs:
            expected = injected(slow, context, type(carrier)(carrier))
            assert injected(fast, context, type(carrier)(carrier)) == expected, (fast, context)
            direct = type(carrier)(carrier)
            if fast._cinject(context, direct) is None:
                handled += 1
                assert list(direct.items()) == expected, (fast, context)
            else:
                assert direct == carrier  # untouched when declined
    assert handled > CONTEXTS * len(codecs) // 2


@pytest.mark.parametrize("names", ALL_CONFIGURATIONS, ids="+".join)
def test_every_configuration_injects_alike(names):
    rng = random.Random("+".join(names))
    for url_encoding in (True, False):
        fast, slow = pair(names, url_encoding)
        assert fast._cinject is not None
        for _ in range(150):
            context = random_context(rng)
            assert injected(fast, context, {}) == injected(slow, context, {}), context


def test_injector_reads_the_b3_modes_at_each_call():
    fast, slow = pair(["b3", "w3c"])
    context = SpanContext(int(T32, 16), int(S16, 16), int(P16, 16), 1)
    for multi, single in ((True, False), (False, True), (True, True), (False, False)):
        fast.codecs[0].multi_header = slow.codecs[0].multi_header = multi
        fast.codecs[0].single_header = slow.codecs[0].single_header = single
        carrier: dict = {}
        assert fast._cinject(context, carrier) is None
        assert list(carrier.items()) == injected(slow, context, {})
    fast.codecs[0].multi_header = 1  # not a bool: Python's truthiness rules
    assert fast._cinject(context, {}) is NOT_HANDLED


def test_inject_examples():
    codec = build_text_codec(DEFAULT_PROPAGATION, url_encoding=True)
    carrier: dict = {}
    assert codec._cinject(SpanContext(int(T32, 16), int(S16, 16), 0x20, 3), carrier) is None
    assert carrier == {
        "x-b3-traceid": T32, "x-b3-spanid": S16, "x-b3-parentspanid": "0000000000000020",
        "x-b3-flags": "1", "traceparent": f"00-{T32}-{S16}-01",
        "uber-trace-id": f"{T32}:{S16}:20:3"}
    carrier = {}
    deferred = SpanContext(0xABC, 1, 0, 1, sampling_deferred=True, trace_state="k=v")
    assert build_text_codec(["b3single", "w3c", "jaeger"], True)._cinject(
        deferred, carrier) is None
    assert carrier == {"b3": "0000000000000abc-0000000000000001",
                       "traceparent": "00-00000000000000000000000000000abc-0000000000000001-00",
                       "tracestate": "k=v", "uber-trace-id": "0000000000000abc:1:0:1"}


# -------------------------------------------------------------------------------- tracer

@pytest.fixture
def tracer():
    tracer = Tracer("cprop", InMemoryReporter(), ConstSampler(True))
    yield tracer
    tracer.close()


def test_tracer_uses_the_c_paths_and_agrees_with_python(tracer):
    codec = tracer.codecs[Format.HTTP_HEADERS]
    assert type(codec) is CompositeCodec and codec._cextract is not None
    _, slow = pair(DEFAULT_PROPAGATION)
    rng = random.Random(SEED + 1)
    for _ in range(500):
        environ = random_environ(rng)
        assert outcome(tracer.extract, Format.HTTP_HEADERS, environ) == outcome(
            slow.extract, environ)
    parent = tracer.extract(Format.HTTP_HEADERS, b3_case(sampled="1", parent=P16))
    span = tracer.start_span("child", child_of=parent)
    for subject in (span, span.context, span.context.with_baggage_item("k", "v")):
        carrier: dict = {}
        tracer.inject(subject, Format.HTTP_HEADERS, carrier)
        context = subject.context if isinstance(subject, Span) else subject
        assert carrier == dict(injected(slow, context, {}))
        assert tracer.extract(Format.HTTP_HEADERS, {"wsgi.version": (1, 0), **{
            "HTTP_" + k.upper().replace("-", "_"): v for k, v in carrier.items()}}
        ).span_id == span.context.span_id


def test_tracer_inject_keeps_its_rules_for_other_subjects(tracer):
    for subject in (None, object(), "x", SpanContext(0, 0, flags=1)):
        carrier: dict = {}
        tracer.inject(subject, Format.HTTP_HEADERS, carrier)
        expected: dict = {}
        if isinstance(subject, SpanContext):
            pair(DEFAULT_PROPAGATION)[1].inject(subject, expected)
        assert carrier == expected


def test_no_reference_leaks():
    """Counts of the objects the C code touches stay put over many calls."""
    fast, _ = pair(DEFAULT_PROPAGATION)
    environ = b3_case(sampled="1", parent=P16)
    declined = b3_case(sampled="1")
    declined["HTTP_UBERCTX_K"] = "v"
    bare = b3_case(trace=None, sampled="0")
    context = SpanContext(int(T32, 16), int(S16, 16), int(P16, 16), 1, trace_state="k=v")
    watched: List[Any] = [NOT_HANDLED, None, True, False, context, context.trace_id,
                          context.trace_state, fast.codecs, *environ.values()]
    for _ in range(100):  # warm up caches
        fast._cextract(environ), fast._cextract(declined), fast._cextract(bare)
        fast._cinject(context, {})
    before = [sys.getrefcount(obj) for obj in watched]
    for _ in range(1000):
        fast._cextract(environ), fast._cextract(declined), fast._cextract(bare)
        fast._cinject(context, {}), fast._cinject(context, {"x": "y"})
    assert [sys.getrefcount(obj) for obj in watched] == before


def test_extracted_contexts_are_built_like_calling_the_class():
    """_cspan fills the fields of an extracted context directly (``_context_api``) while
    SpanContext keeps ContextCore's __init__; a replaced __init__ is called instead."""
    fast, slow = pair(DEFAULT_PROPAGATION)
    cases = [b3_case(sampled="1", parent=P16), b3_case(), b3_case(trace=None, sampled="0")]
    expected = [outcome(slow.extract, environ) for environ in cases]
    for environ, want in zip(cases, expected):
        context = fast._cextract(environ)
        assert type(context) is SpanContext and fields(context) == want
        assert context.baggage == {} and context.debug_id is None
    assert fast._cextract(cases[1]).sampling_deferred is True
    assert "__init__" not in vars(SpanContext)
    calls = []

    def init(self, *args, **kwargs):
        calls.append(args)
        ContextCore.__init__(self, *args, **kwargs)

    ContextCore = SpanContext.__mro__[1]
    SpanContext.__init__ = init
    try:
        assert [fields(fast._cextract(environ)) for environ in cases] == expected
        assert [len(args) for args in calls] == [4, 7, 4]  # deferred: by position, as b3.py
    finally:
        del SpanContext.__init__
    calls.clear()
    assert [fields(fast._cextract(environ)) for environ in cases] == expected
    assert calls == []


def test_configure_checks_the_context_api():
    classes = dict(context_type=SpanContext, b3_type=B3Codec, w3c_type=W3CCodec,
                   jaeger_type=JaegerCodec)
    with pytest.raises(ValueError):  # not a capsule
        cprop.configure(**classes, context_api=object())
    from opentracing_sls import _accel
    report_api = getattr(_accel.load("_speedups"), "_report_api", None)
    if report_api is not None:
        with pytest.raises(ValueError):  # a capsule of another name
            cprop.configure(**classes, context_api=report_api)
    # A failed configure() changed nothing.
    fast, slow = pair(DEFAULT_PROPAGATION)
    environ = b3_case(sampled="1", parent=P16)
    assert fields(fast._cextract(environ)) == outcome(slow.extract, environ)


def test_composites_pickle_and_copy_with_hooks_of_their_own():
    environ = b3_case(sampled="1", parent=P16)
    context = SpanContext(int(T32, 16), int(S16, 16), int(P16, 16), 1)
    for names in CONFIGURATIONS:
        codec = build_text_codec(names, url_encoding=True)
        expected_extract = fields(codec.extract(environ))
        expected_inject = injected(codec, context, {})
        for twin in (pickle.loads(pickle.dumps(codec)), copy.copy(codec), copy.deepcopy(codec)):
            assert (twin._cextract is None) == (codec._cextract is None)
            assert (twin._cinject is None) == (codec._cinject is None)
            assert fields(twin.extract(environ)) == expected_extract
            assert injected(twin, context, {}) == expected_inject
            assert twin._plan.names == codec._plan.names


def test_the_module_hooks_follow_the_accelerator_switch():
    assert composite_module._cprop is cprop
    assert composite_module._NOT_HANDLED is NOT_HANDLED
