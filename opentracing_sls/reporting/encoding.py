"""Jaeger Thrift span encoders: ``SpanRecord`` -> bytes, one encoder per Thrift protocol.

Pure functions (their only state is bounded caches of encoded tag keys and operation
names), hand-written for speed because they run once per sampled span::

    encoder = get_encoder("compact")            # UDP 6831; "binary" for UDP 6832 / HTTP
    process = encoder.encode_process("svc", {"hostname": "web-1"})
    spans = [encoder.encode_span(r) for r in records]
    datagram = encoder.encode_emit_batch(process, spans, seq_no, (0, 0, 0))

Each span is a complete, context-free struct, so the reporter can size it once, decide
which packet it goes into (``emit_batch_overhead(process) + sum(len(s)) <= 65000``), and
concatenate it into the message as is.

Wire rules (jaeger-wire.md sections 2 and 3): ids are signed i64 (unsigned ids >= 2^63
are sent negative; a 128-bit trace id is split into traceIdHigh / traceIdLow);
``parentSpanId`` is always written (0 for a root span); references, tags and logs only
when non-empty; tag types follow the Python value type (see :mod:`._wire`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Protocol, Sequence, Tuple

from .._accel import load
from ..record import SpanRecord
from .binary import BinarySpanEncoder
from .compact import CompactSpanEncoder

__all__ = [
    "BinarySpanEncoder",
    "ClientStatsTuple",
    "CompactSpanEncoder",
    "PROTOCOLS",
    "SpanEncoder",
    "get_encoder",
    "pack_spans",
]

#: ``(fullQueueDroppedSpans, tooLargeDroppedSpans, failedToEmitSpans)``, cumulative.
ClientStatsTuple = Tuple[int, int, int]


class SpanEncoder(Protocol):
    """What the reporter needs from an encoder of one Thrift protocol."""

    #: ``"compact"`` or ``"binary"``
    protocol: str

    def encode_process(self, service_name: str, tags: Mapping[str, Any]) -> bytes:
        """A complete ``Process`` struct (fields and STOP)."""

    def encode_span(self, record: SpanRecord) -> bytes:
        """One complete ``Span`` struct that can be concatenated into a list<Span>."""

    def emit_batch_overhead(self, process: bytes) -> int:
        """Upper bound of the bytes of an emitBatch message other than the span bytes."""

    def encode_emit_batch(
        self, process: bytes, spans: Sequence[bytes], seq_no: int, stats: ClientStatsTuple
    ) -> bytes:
        """A complete ``Agent.emitBatch`` oneway message: exactly one UDP datagram."""

    def encode_batch(
        self, process: bytes, spans: Sequence[bytes], seq_no: int, stats: ClientStatsTuple
    ) -> bytes:
        """A bare ``Batch`` struct (seqNo and stats included)."""


_ENCODERS: Dict[str, SpanEncoder] = {
    "compact": CompactSpanEncoder(),
    "binary": BinarySpanEncoder(),
}

#: The protocol names :func:`get_encoder` accepts.
PROTOCOLS = tuple(_ENCODERS)


def get_encoder(protocol: str) -> SpanEncoder:
    """The encoder of ``protocol`` (``"compact"`` or ``"binary"``).

    Raises ``ValueError`` naming the allowed values for anything else.
    """
    try:
        return _ENCODERS[protocol]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown Thrift protocol {protocol!r}; expected one of: {', '.join(PROTOCOLS)}"
        ) from None


Groups = List[Tuple[List[bytes], int]]


def pack_spans(spans: Sequence[bytes], budget: int,
               used: int = 0) -> Tuple[Groups, List[int]]:
    """Groups encoded spans into runs of at most ``budget`` bytes, in order.

    Returns ``(groups, too_large)``. Each group is ``(spans, size)``; the first continues a
    payload that already holds ``used`` bytes (its size includes them), each later one starts
    a new payload. ``too_large`` has the size of every span bigger than ``budget`` (left out).
    The reporter's per-span loop: ``pack_spans_fast`` is its C twin.
    """
    groups: Groups = []
    too_large: List[int] = []
    run: List[bytes] = []
    total = used
    for data in spans:
        size = len(data)
        if size > budget:
            too_large.append(size)
            continue
        if total + size > budget:
            groups.append((run, total))
            run, total = [], 0
        run.append(data)
        total += size
    groups.append((run, total))
    return groups, too_large


_speedups = load("_speedups")
#: ``pack_spans`` of the backend in use (C when built).
pack_spans_fast = _speedups.pack_spans if _speedups is not None else pack_spans
