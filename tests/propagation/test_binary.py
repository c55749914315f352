"""The Go/jaeger-client compatible binary codec."""

from __future__ import annotations

import struct

import pytest
from opentracing import InvalidCarrierException

from opentracing_sls.propagation import BinaryCodec
from opentracing_sls.span_context import SpanContext

T128 = 0x063AC35C9F6413AD48485A3953BB6124


def test_layout_is_big_endian_go_format():
    carrier = bytearray()
    BinaryCodec().inject(SpanContext(T128, 0xA2, 0xB3, 3, baggage={"k": "vé"}), carrier)
    expected = struct.pack(">QQQQBI", T128 >> 64, T128 & (2**64 - 1), 0xA2, 0xB3, 3, 1)
    expected += struct.pack(">I", 1) + b"k" + struct.pack(">I", 3) + "vé".encode()
    assert bytes(carrier) == expected


def test_inject_appends():
    carrier = bytearray(b"prefix")
    BinaryCodec().inject(SpanContext(1, 2), carrier)
    assert carrier.startswith(b"prefix") and len(carrier) == 6 + 37


@pytest.mark.parametrize("context", [
    SpanContext(1, 2),
    SpanContext(0x463AC35C9F6413AD, 0xA2FB4A1D1A96D312, 0x20, 1),
    SpanContext(T128, 2**64 - 1, 2**64 - 1, 3, baggage={"a": "1", "ü": "ß", "": ""}),
])
@pytest.mark.parametrize("wrap", [bytearray, bytes, memoryview])
def test_round_trip(context, wrap):
    carrier = bytearray()
    BinaryCodec().inject(context, carrier)
    assert BinaryCodec().extract(wrap(carrier)) == context


def test_trailing_bytes_ignored():
    carrier = bytearray()
    BinaryCodec().inject(SpanContext(1, 2, 0, 1), carrier)
    assert BinaryCodec().extract(bytes(carrier) + b"junk") == SpanContext(1, 2, 0, 1)


def test_truncated_input_gives_none():
    carrier = bytearray()
    BinaryCodec().inject(SpanContext(T128, 2, 3, 1, baggage={"key": "value", "k2": "v2"}),
                         carrier)
    for size in range(len(carrier)):
        assert BinaryCodec().extract(bytes(carrier[:size])) is None, size


def test_garbage_gives_none():
    header = struct.pack(">QQQQBI", 0, 1, 2, 0, 1, 1)
    codec = BinaryCodec()
    assert codec.extract(b"") is None
    assert codec.extract(header[:-1]) is None
    # a baggage count no input of this size can hold
    assert codec.extract(struct.pack(">QQQQBI", 0, 1, 2, 0, 1, 2**32 - 1)) is None
    # a length that points past the end
    assert codec.extract(header + struct.pack(">I", 2**31) + b"k") is None
    # invalid UTF-8
    bad = header + struct.pack(">I", 1) + b"\xff" + struct.pack(">I", 0)
    assert codec.extract(bad) is None


def test_zero_ids():
    codec = BinaryCodec()
    assert codec.extract(struct.pack(">QQQQBI", 0, 0, 2, 0, 1, 0)) is None
    assert codec.extract(struct.pack(">QQQQBI", 0, 1, 0, 0, 1, 0)) is None
    carrier = bytearray()
    codec.inject(SpanContext(0, 0, baggage={"k": "v"}), carrier)
    context = codec.extract(carrier)
    assert (context.trace_id, context.baggage) == (0, {"k": "v"})


@pytest.mark.parametrize("carrier", [b"", bytes(37), {}, None, "abc", memoryview(b"")])
def test_inject_needs_bytearray(carrier):
    with pytest.raises(InvalidCarrierException):
        BinaryCodec().inject(SpanContext(1, 2), carrier)


@pytest.mark.parametrize("carrier", [None, "x" * 40, 5, [0] * 40, {}])
def test_extract_rejects_other_types(carrier):
    with pytest.raises(InvalidCarrierException):
        BinaryCodec().extract(carrier)
