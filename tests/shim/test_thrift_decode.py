"""Jaeger Thrift decoding: what our encoders, jaeger-client (Apache Thrift) and thriftpy2
write decodes into the shim's span model, in both protocols and both framings."""

from __future__ import annotations

import random

import pytest
from jaeger_client import ConstSampler, Tracer
from jaeger_client import thrift as jc_thrift
from jaeger_client.reporter import InMemoryReporter
from jaeger_client.thrift_gen.agent import Agent
from jaeger_client.thrift_gen.jaeger import ttypes
from opentracing import follows_from
from thrift.protocol import TBinaryProtocol, TCompactProtocol
from thrift.transport import TTransport

from opentracing_sls.record import CHILD_OF, FOLLOWS_FROM, SpanRecord
from opentracing_sls.reporting.encoding import get_encoder
from opentracing_sls.shim import thrift_binary, thrift_compact, thrift_model
from opentracing_sls.shim.model import (
    BINARY,
    BOOL,
    DOUBLE,
    LONG,
    STRING,
    Log,
    Process,
    Reference,
    Span,
    Tag,
    tag_of,
)
from opentracing_sls.shim.thrift_decode import (
    BatchInfo,
    decode_batch_binary,
    decode_batch_binary_with_info,
    decode_batch_compact,
    decode_batch_compact_with_info,
    decode_emit_batch_binary,
    decode_emit_batch_binary_with_info,
    decode_emit_batch_compact,
    decode_emit_batch_compact_with_info,
)

M64 = (1 << 64) - 1
NOW_US = 1_700_000_000_123_456


# Every test here runs against both compact decoders (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("compact_backend")


#: protocol -> (emitBatch message decoder, bare Batch decoder)
DECODERS = {
    "compact": (decode_emit_batch_compact_with_info, decode_batch_compact_with_info),
    "binary": (decode_emit_batch_binary_with_info, decode_batch_binary_with_info),
}
BOUNDARY_IDS = [0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, (1 << 55) - 1, 1 << 55, (1 << 56) - 1,
                1 << 56, (1 << 63) - 1, 1 << 63, (1 << 63) + 1, M64 - (1 << 55), M64 - 1, M64]
TIMES = [0, 1, 0x3F, 0x40, 0x1FFF, 0x2000, 0xFFFFF, 0x100000, (1 << 41) - 1, 1 << 41,
         NOW_US, (1 << 52) - 1, 1 << 52, (1 << 62), (1 << 63) - 1, -1, -(1 << 63)]


def records():
    """Span records covering every field, value type and varint/fast-path boundary."""
    rnd = random.Random(7)
    yield SpanRecord(0x1234, 0x5678, 0, "root", 1, NOW_US, 5, {}, [], [])
    yield SpanRecord(
        rnd.getrandbits(64), rnd.getrandbits(64), rnd.getrandbits(64), "GET /api/user", 1,
        NOW_US, 1234, {"http.url": "http://x/y", "http.status_code": 200, "error": False},
        [(NOW_US + 5, {"event": "x", "value": 42})], [])
    yield SpanRecord(
        (M64 << 64) | (1 << 63), M64, 1 << 63, "ünïcødé ✓" * 20, 3, -7, -1,
        {"s": "é" * 300, "d": -2.5, "t": True, "f": False, "l": -(1 << 63), "L": (1 << 63) - 1,
         "n": 1 << 40, "b": b"\x00bin\xff", "empty": "", "nan-ish": 1e308},
        [(0, {}), (1 << 53, {"k": 1.5e300, "bin": b""})] * 8,
        [(CHILD_OF, 1 << 64, 2), (FOLLOWS_FROM, M64, 1 << 63)])
    yield SpanRecord(1, 2, 3, "many", 0, NOW_US, 1 << 40,
                     {f"k{i}": i * 1000 for i in range(40)},
                     [(NOW_US, {f"f{i}": f"v{i}" for i in range(16)})],
                     [(i % 2, i << 70 | i, i) for i in range(16)])
    yield SpanRecord(5, 6, 7, "k" * 200, 1, NOW_US, 100, {"key" * 60: "v" * 130}, [], [])
    for value in BOUNDARY_IDS:
        yield SpanRecord((value << 64) | value, value, value, "b", 1, value >> 1,
                         value >> 30, {"v": value >> 1}, [(value >> 9, {"v": value >> 1})],
                         [(CHILD_OF, value, value)])
    for t in TIMES:
        yield SpanRecord(1, 2, 3, "t", 1, t, t, {"t": t}, [(t, {}), (~t, {"t": ~t})], [])
    for i in range(60):
        yield SpanRecord(
            rnd.getrandbits(rnd.choice((64, 128, 30))), rnd.getrandbits(64),
            rnd.getrandbits(rnd.choice((64, 0, 55))), "op%d" % (i % 3), rnd.choice((0, 1, 3)),
            NOW_US + rnd.getrandbits(40), rnd.getrandbits(rnd.choice((5, 14, 21, 28, 40))),
            {"i": rnd.getrandbits(62) - (1 << 61), "s": "x" * rnd.randrange(300),
             "kind": rnd.choice(("server", "client")), "ok": rnd.random() < 0.5},
            [(NOW_US + rnd.getrandbits(30), {"event": "e", "n": rnd.randrange(2000)})], [])


def expected(record: SpanRecord, process: Process) -> Span:
    """The Span the shim should produce for ``record`` (tag typing as the encoder's)."""
    return Span(
        record.trace_id, record.span_id, record.parent_id, record.operation_name, record.flags,
        record.start_time, record.duration,
        tuple(tag_of(k, v) for k, v in record.tags.items()),
        tuple(Log(ts, tuple(tag_of(k, v) for k, v in f.items())) for ts, f in record.logs),
        tuple(Reference(*r) for r in record.references), process)


PROCESS_TAGS = {"hostname": "web-1", "ip": "10.0.0.1", "client-uuid": "c-42", "pid": 7,
                "ratio": 0.5, "up": True, "raw": b"\x01"}
PROCESS = Process("svc-ü", tuple(tag_of(k, v) for k, v in PROCESS_TAGS.items()))


@pytest.mark.parametrize("protocol", ["compact", "binary"])
@pytest.mark.parametrize("framing", ["message", "batch"])
def test_round_trip_of_our_encoders(protocol, framing):
    encoder = get_encoder(protocol)
    recs = list(records())
    process = encoder.encode_process(PROCESS.service_name, PROCESS_TAGS)
    spans = [encoder.encode_span(r) for r in recs]
    stats = ((1 << 63) - 1, 0, 12)
    if framing == "message":
        data = encoder.encode_emit_batch(process, spans, 42, stats)
        decode = DECODERS[protocol][0]
    else:
        data = encoder.encode_batch(process, spans, -3, stats)
        decode = DECODERS[protocol][1]
    for _ in range(2):  # the second time every cache is warm
        decoded, info = decode(data)
        assert decoded == [expected(r, PROCESS) for r in recs]
        assert info == BatchInfo(42 if framing == "message" else -3, stats, "c-42")
        # one Process object per batch, shared by every span
        assert all(s.process is decoded[0].process for s in decoded)
        assert all(type(s) is Span for s in decoded)
        assert all(type(t) is Tag for s in decoded for t in s.tags)


def test_plain_and_info_variants_agree():
    for protocol, plain in (("compact", (decode_emit_batch_compact, decode_batch_compact)),
                            ("binary", (decode_emit_batch_binary, decode_batch_binary))):
        encoder = get_encoder(protocol)
        process = encoder.encode_process("s", {})
        spans = [encoder.encode_span(r) for r in list(records())[:5]]
        message = encoder.encode_emit_batch(process, spans, 1, (0, 0, 0))
        batch = encoder.encode_batch(process, spans, 1, (0, 0, 0))
        assert plain[0](message) == DECODERS[protocol][0](message)[0]
        assert plain[1](batch) == DECODERS[protocol][1](batch)[0]
        info = DECODERS[protocol][0](message)[1]
        assert info == BatchInfo(1, (0, 0, 0), None)  # no client-uuid tag


def test_values_and_types_in_detail():
    rec = SpanRecord((7 << 64) | M64, 1 << 63, M64, "op", 3, NOW_US, 99,
                     {"s": "v", "d": 0.25, "b": True, "l": -5, "x": b"\x00\xff"},
                     [(NOW_US + 1, {"event": "error"})],
                     [(CHILD_OF, 9, 10), (FOLLOWS_FROM, (1 << 127) | 1, M64)])
    for protocol in ("compact", "binary"):
        encoder = get_encoder(protocol)
        data = encoder.encode_emit_batch(encoder.encode_process("svc", {}),
                                         [encoder.encode_span(rec)], 1, (0, 0, 0))
        [span] = DECODERS[protocol][0](data)[0]
        assert span.trace_id == (7 << 64) | M64 and span.span_id == 1 << 63
        assert span.parent_id == M64 and span.flags == 3
        assert span.tags == (Tag("s", STRING, "v"), Tag("d", DOUBLE, 0.25), Tag("b", BOOL, True),
                             Tag("l", LONG, -5), Tag("x", BINARY, b"\x00\xff"))
        assert type(span.tags[4].value) is bytes and type(span.tags[2].value) is bool
        assert span.logs == (Log(NOW_US + 1, (Tag("event", STRING, "error"),)),)
        assert span.references == (Reference(CHILD_OF, 9, 10),
                                   Reference(FOLLOWS_FROM, (1 << 127) | 1, M64))
        assert span.process == Process("svc", ())


def test_bytes_like_inputs():
    encoder = get_encoder("compact")
    data = encoder.encode_emit_batch(encoder.encode_process("s", {}),
                                     [encoder.encode_span(list(records())[1])], 1, (0, 0, 0))
    spans = decode_emit_batch_compact(data)
    assert decode_emit_batch_compact(bytearray(data)) == spans
    assert decode_emit_batch_compact(memoryview(data)) == spans


def test_empty_span_list():
    for protocol in ("compact", "binary"):
        encoder = get_encoder(protocol)
        data = encoder.encode_emit_batch(encoder.encode_process("s", {}), [], 5, (1, 2, 3))
        assert DECODERS[protocol][0](data) == ([], BatchInfo(5, (1, 2, 3), None))


# --- what a real jaeger-client sends ------------------------------------------------------


class _MemoryTransport(TTransport.TMemoryBuffer):
    """Agent.Client's transport: it spawns its (unused) reply reader on ``io_loop``."""

    class io_loop:  # noqa: N801 (the attribute name Agent.Client uses)
        @staticmethod
        def spawn_callback(callback):
            pass


class _ProtocolFactory:
    def __init__(self, protocol_class):
        self.protocol_class = protocol_class

    def getProtocol(self, transport):  # noqa: N802 (Apache Thrift's name)
        return self.protocol_class(transport)


def jaeger_client_datagram(batch, protocol_class) -> bytes:
    """The bytes jaeger-client's reporter writes: ``Agent.Client.emitBatch``."""
    transport = _MemoryTransport()
    Agent.Client(transport, _ProtocolFactory(protocol_class)).emitBatch(batch)
    return transport.getvalue()


def jaeger_client_spans(generate_128bit_trace_id):
    reporter = InMemoryReporter()
    tracer = Tracer("jc-svc", reporter=reporter, sampler=ConstSampler(True),
                    generate_128bit_trace_id=generate_128bit_trace_id,
                    tags={"client-uuid": "uuid-1"})
    with tracer.start_span("root") as root:
        root.set_tag("s", "v")
        root.set_tag("i", 7)
        root.set_tag("f", 2.5)
        root.set_tag("b", False)
        root.log_kv({"event": "e", "n": 1})
        with tracer.start_span("child", child_of=root) as child:
            child.set_tag("span.kind", "client")
        with tracer.start_span("next", references=[follows_from(root.context)]):
            pass
    return tracer, reporter.get_spans()


@pytest.mark.parametrize("protocol_class, decode", [
    (TCompactProtocol.TCompactProtocol, decode_emit_batch_compact_with_info),
    (TCompactProtocol.TCompactProtocolAccelerated, decode_emit_batch_compact_with_info),
    (TBinaryProtocol.TBinaryProtocol, decode_emit_batch_binary_with_info),
])
@pytest.mark.parametrize("wide", [False, True])
def test_jaeger_client_datagrams(protocol_class, decode, wide):
    tracer, jc_spans = jaeger_client_spans(wide)
    process = jc_thrift.make_process("jc-svc", tracer.tags, 1024)
    batch = jc_thrift.make_jaeger_batch(jc_spans, process)
    data = jaeger_client_datagram(batch, protocol_class)
    if protocol_class is TCompactProtocol.TCompactProtocol:
        assert data.startswith(b"\x82\x81\x01\x09emitBatch")  # jaeger-wire.md section 3
    spans, info = decode(data)
    assert info == BatchInfo(None, None, "uuid-1")  # jaeger-client sends no seqNo/stats
    assert spans[0].process.service_name == "jc-svc"
    assert {t.key for t in spans[0].process.tags} >= {"hostname", "ip", "jaeger.version"}
    by_name = {s.operation_name: s for s in spans}
    root, child, nxt = by_name["root"], by_name["child"], by_name["next"]
    for jc_span in jc_spans:
        span = by_name[jc_span.operation_name]
        assert span.trace_id == jc_span.trace_id and span.span_id == jc_span.span_id
        assert span.parent_id == (jc_span.parent_id or 0)
        assert span.flags == jc_span.context.flags
        assert span.start_time == int(jc_span.start_time * 1e6)
    assert root.trace_id == child.trace_id == nxt.trace_id
    assert (root.trace_id >> 64 != 0) == wide
    assert child.parent_id == root.span_id and root.parent_id == 0
    assert nxt.references == (Reference(FOLLOWS_FROM, root.trace_id, root.span_id),)
    assert child.tags == (Tag("span.kind", STRING, "client"),)
    assert root.tags == (Tag("sampler.type", STRING, "const"), Tag("sampler.param", BOOL, True),
                         Tag("s", STRING, "v"), Tag("i", LONG, 7), Tag("f", DOUBLE, 2.5),
                         Tag("b", BOOL, False))
    [log] = root.logs
    assert log.fields == (Tag("event", STRING, "e"), Tag("n", LONG, 1))
    assert child.logs == () and child.references == ()


def test_jaeger_client_empty_lists_and_binary_tag():
    """Apache's generated code writes empty tags/logs lists (jaeger-client passes []) and
    vBinary through writeString."""
    span = ttypes.Span(traceIdLow=-1, traceIdHigh=0, spanId=-(1 << 63), parentSpanId=0,
                       operationName="op", flags=1, startTime=NOW_US, duration=3, tags=[],
                       logs=[], references=[])
    span.tags.append(ttypes.Tag(key="bin", vType=ttypes.TagType.BINARY, vBinary="ab"))
    batch = ttypes.Batch(process=ttypes.Process(serviceName="s", tags=[]), spans=[span])
    for protocol_class, decode in ((TCompactProtocol.TCompactProtocol, decode_emit_batch_compact),
                                   (TBinaryProtocol.TBinaryProtocol, decode_emit_batch_binary)):
        [decoded] = decode(jaeger_client_datagram(batch, protocol_class))
        assert decoded == Span(M64, 1 << 63, 0, "op", 1, NOW_US, 3, (Tag("bin", BINARY, b"ab"),),
                               (), (), Process("s", ()))


def test_collector_http_body_written_by_apache_thrift():
    """``POST /api/traces``: a bare binary Batch (jaeger-client-go's HTTP transport)."""
    batch = ttypes.Batch(
        process=ttypes.Process(serviceName="go-svc"),
        spans=[ttypes.Span(traceIdLow=5, traceIdHigh=-2, spanId=6, parentSpanId=-7,
                           operationName="x", flags=2, startTime=1, duration=2)])
    buf = TTransport.TMemoryBuffer()
    batch.write(TBinaryProtocol.TBinaryProtocol(buf))
    spans, info = decode_batch_binary_with_info(buf.getvalue())
    assert spans == [Span((M64 - 1) << 64 | 5, 6, M64 - 6, "x", 2, 1, 2, (), (), (),
                          Process("go-svc", ()))]
    assert info == BatchInfo(None, None, None)  # jaeger-client's IDL predates seqNo/stats


# --- cache behaviour ---------------------------------------------------------------------


@pytest.mark.parametrize("module", [thrift_compact, thrift_binary])
def test_caches_stay_bounded_and_correct(module, monkeypatch):
    monkeypatch.setattr(module, "_KEYS_LIMIT", 8)
    monkeypatch.setattr(module, "_CACHE_LIMIT", 8)
    monkeypatch.setattr(module, "_KEYS", {})
    monkeypatch.setattr(module, "_NAMES", {})
    monkeypatch.setattr(module, "_HEADS", {})
    protocol = "compact" if module is thrift_compact else "binary"
    encoder = get_encoder(protocol)
    recs = [SpanRecord(i + 1, i + 2, 0, "op%d" % (i % 20), 1, NOW_US, i,
                       {"k%d" % (i % 30): "v%d" % (i % 40), "n": i, "c": i % 3}, [], [])
            for i in range(300)]
    data = encoder.encode_batch(encoder.encode_process("s", {}),
                                [encoder.encode_span(r) for r in recs], 0, (0, 0, 0))
    for _ in range(3):
        assert DECODERS[protocol][1](data)[0] == [expected(r, Process("s", ())) for r in recs]
    assert len(module._KEYS) <= 8 and len(module._NAMES) <= 8 and len(module._HEADS) <= 8
    for entry in module._KEYS.values():
        assert entry[2] is None or len(entry[2]) <= thrift_model.VALUES_PER_KEY


# --- fast path and generic reader --------------------------------------------------------


def _generic_only(module, monkeypatch):
    """Makes ``module`` read every span and tag with its generic, table-driven reader."""
    def spans(buf, pos, n, end, process):
        out = []
        for _ in range(n):
            span, pos = module._read_span(buf, pos, end, process)
            out.append(span)
        return out, pos

    def tags(buf, pos, n, end):
        out = []
        for _ in range(n):
            tag, pos = module._read_tag(buf, pos, end)
            out.append(tag)
        return tuple(out), pos

    monkeypatch.setattr(module, "_spans", spans)
    monkeypatch.setattr(module, "_tags", tags)


@pytest.mark.parametrize("module", [thrift_compact, thrift_binary])
def test_generic_reader_agrees_with_the_fast_path(module, monkeypatch):
    protocol = "compact" if module is thrift_compact else "binary"
    encoder = get_encoder(protocol)
    recs = list(records())
    data = encoder.encode_emit_batch(encoder.encode_process("svc-ü", PROCESS_TAGS),
                                     [encoder.encode_span(r) for r in recs], 1, (0, 0, 0))
    fast = DECODERS[protocol][0](data)
    _generic_only(module, monkeypatch)
    assert DECODERS[protocol][0](data) == fast
    assert fast[0] == [expected(r, PROCESS) for r in recs]


@pytest.mark.parametrize("module", [thrift_compact, thrift_binary])
def test_usual_layouts_take_the_fast_path(module, monkeypatch):
    """Spans from our encoder and from jaeger-client never need the generic span or log
    reader, and once the caches are warm neither do their tags (a performance guard)."""
    protocol = "compact" if module is thrift_compact else "binary"
    encoder = get_encoder(protocol)
    # (a tag key of 128+ bytes, whose length is a 2-byte varint, is never cached)
    recs = [r for r in records() if all(len(k) < 128 for k in r.tags)]
    ours = encoder.encode_batch(encoder.encode_process("s", {}),
                                [encoder.encode_span(r) for r in recs], 0, (0, 0, 0))
    protocol_class = (TCompactProtocol.TCompactProtocol if protocol == "compact"
                      else TBinaryProtocol.TBinaryProtocol)
    tracer, jc_spans = jaeger_client_spans(True)
    theirs = jaeger_client_datagram(jc_thrift.make_jaeger_batch(
        jc_spans, jc_thrift.make_process("jc", tracer.tags, 1024)), protocol_class)
    DECODERS[protocol][1](ours)  # warm the caches
    DECODERS[protocol][0](theirs)
    calls = []

    def counting(name):
        original = getattr(module, name)

        def wrapper(*args):
            calls.append(name)
            return original(*args)
        return wrapper

    monkeypatch.setattr(module, "_read_span", counting("_read_span"))
    monkeypatch.setattr(module, "_read_tag", counting("_read_tag"))
    monkeypatch.setattr(module, "_read_log", counting("_read_log"))
    assert len(DECODERS[protocol][1](ours)[0]) == len(recs)
    assert len(DECODERS[protocol][0](theirs)[0]) == 3
    assert calls == []
