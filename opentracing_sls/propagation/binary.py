"""``Format.BINARY``: the layout of jaeger-client-go and jaeger-client-python's ``BinaryCodec``.

Big-endian: ``trace id high u64, trace id low u64, span id u64, parent id u64, flags u8,
baggage count u32``, then per baggage item ``u32 length, key, u32 length, value`` (UTF-8).

Inject appends to a ``bytearray`` (the carrier may already hold other data). Extract reads
``bytes``, ``bytearray`` or ``memoryview`` from the start, ignores trailing bytes (Go reads from a
stream and stops there too) and returns None for truncated input, invalid UTF-8 or zero ids
without baggage; zero ids with baggage give a baggage-only ``SpanContext(0, 0, ...)``. The
binary form carries neither a deferred decision nor a debug id or ``tracestate``.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, Optional

from opentracing import InvalidCarrierException

from ..constants import MASK_64
from ..span_context import SpanContext
from .base import Codec

_HEADER = struct.Struct(">QQQQBI")
_LENGTH = struct.Struct(">I")
_ITEM_MIN = 2 * _LENGTH.size  # an item with an empty key and value


class BinaryCodec(Codec):
    """The Jaeger binary codec for ``Format.BINARY``."""

    __slots__ = ()

    def inject(self, span_context: SpanContext, carrier: Any) -> None:
        if not isinstance(carrier, bytearray):
            raise InvalidCarrierException(
                f"binary carrier must be a bytearray, got {type(carrier).__name__}")
        trace_id = span_context.trace_id
        baggage = span_context.baggage
        data = bytearray(_HEADER.pack(
            (trace_id >> 64) & MASK_64, trace_id & MASK_64, span_context.span_id & MASK_64,
            span_context.parent_id & MASK_64, span_context.flags & 0xFF, len(baggage)))
        for key, value in baggage.items():
            for text in (key, value):
                raw = text.encode("utf-8")
                data += _LENGTH.pack(len(raw))
                data += raw
        # One append at the end so a failure above leaves the caller's buffer untouched.
        carrier += data

    def extract(self, carrier: Any) -> Optional[SpanContext]:
        if isinstance(carrier, memoryview):
            try:
                carrier = carrier.tobytes()
            except Exception:
                return None
        elif not isinstance(carrier, (bytes, bytearray)):
            raise InvalidCarrierException(
                "binary carrier must be bytes, bytearray or memoryview, got "
                f"{type(carrier).__name__}")
        size = len(carrier)
        if size < _HEADER.size:
            return None
        high, low, span_id, parent_id, flags, count = _HEADER.unpack_from(carrier)
        offset = _HEADER.size
        if count * _ITEM_MIN > size - offset:
            return None  # cannot hold that many items: truncated or garbage
        baggage: Dict[str, str] = {}
        try:
            for _ in range(count):
                (length,) = _LENGTH.unpack_from(carrier, offset)
                offset += 4
                end = offset + length
                if end > size:
                    return None
                key = carrier[offset:end].decode("utf-8")
                (length,) = _LENGTH.unpack_from(carrier, end)
                offset = end + 4
                end = offset + length
                if end > size:
                    return None
                baggage[key] = carrier[offset:end].decode("utf-8")
                offset = end
        except (struct.error, UnicodeDecodeError):
            return None
        trace_id = (high << 64) | low
        if trace_id and span_id:
            return SpanContext(trace_id, span_id, parent_id, flags, baggage)
        if baggage:
            return SpanContext(0, 0, baggage=baggage, sampling_deferred=True)
        return None

    def __repr__(self) -> str:
        return "BinaryCodec()"
