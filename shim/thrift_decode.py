"""Jaeger Thrift decoders: what the shim's receivers turn into the one span model.

=================================  ==============================================  ==========
input                              function                                        protocol
=================================  ==============================================  ==========
UDP 6831 datagram                  :func:`decode_emit_batch_compact`               compact
UDP 6832 datagram                  :func:`decode_emit_batch_binary`                binary
HTTP ``POST /api/traces`` body     :func:`decode_batch_binary`                     binary
a bare compact ``Batch``           :func:`decode_batch_compact`                    compact
=================================  ==============================================  ==========

A datagram is one ``Agent.emitBatch`` oneway message (jaeger-wire.md section 3): header with
the name ``emitBatch`` (type ONEWAY; CALL is tolerated), then ``emitBatch_args`` whose
field 1 is the ``Batch``. Each ``*_with_info`` variant also returns :class:`BatchInfo`
(seqNo, ClientStats, the process's ``client-uuid``) for jaeger-agent style client stats.

Mapping (jaeger-wire.md section 2; :mod:`.model`):

- every span of a batch shares the batch's one :class:`~.model.Process` object;
- ids are unsigned (signed i64 & 0xFFFFFFFFFFFFFFFF); ``trace_id = high << 64 | low``;
- a tag is ``Tag(key, vType, value of the field vType selects)``; BINARY values are bytes;
  a missing value field gives the type's zero value (as the Go collector does); an unknown
  vType gives a STRING tag ``"unknown vType <n>"`` rather than dropping the batch;
- missing optional lists (references, tags, logs, process tags) are empty tuples;
- invalid UTF-8 in any string is replaced with U+FFFD (``errors="replace"``): the Go
  collector keeps such bytes too, and one bad tag should not cost a whole batch.

Malformed input of any kind (truncated, corrupt, wrong message name or type, missing
required fields, sizes beyond the data, bytes after the end, nesting deeper than 32) raises
:class:`~.model.DecodeError` with a short reason, and nothing else. Unknown fields of any
type are skipped, so newer IDL versions decode. Sizes are checked against the bytes left
before anything is allocated; work is linear in the input.

Both decoders are pure Python and fast (see ``tests/benchmarks/bench_decode.py``): the
usual field layout takes a specialised path, anything else a generic reader. Their only
state is bounded caches of tag keys, operation names and repeated tag values.

The compact decoder, the one UDP 6831 needs at full speed, also exists in C
(``_ccompact.c``, about 10x faster, built by ``pip install`` when a compiler is there):
the same results and errors for every input. It is used when it was built, unless
``OPENTRACING_SLS_PURE_PYTHON=1`` (the switch of the tracer's C encoder too);
:data:`COMPACT_BACKEND` says which one runs.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from . import thrift_binary, thrift_compact
from .model import STRING, DecodeError, Process, Span

try:
    from ._ccompact import decode as _c_decode
except ImportError:  # not built (no compiler): the pure-Python decoder does everything
    _c_decode = None

__all__ = [
    "COMPACT_BACKEND",
    "BatchInfo",
    "DecodeError",
    "decode_batch_binary",
    "decode_batch_binary_with_info",
    "decode_batch_compact",
    "decode_batch_compact_with_info",
    "decode_emit_batch_binary",
    "decode_emit_batch_binary_with_info",
    "decode_emit_batch_compact",
    "decode_emit_batch_compact_with_info",
]

#: Process tag by which jaeger-agent tells clients apart for its client_stats metrics.
CLIENT_UUID_TAG = "client-uuid"

_CompactDecode = Callable[[Any, bool], Tuple[List[Span], Process, Optional[int],
                                             Optional[Tuple[int, int, int]]]]
#: The compact decoders this process has, by backend name (tests run each of them).
COMPACT_DECODERS: Dict[str, _CompactDecode] = {"python": thrift_compact.decode}
if _c_decode is not None:
    COMPACT_DECODERS["c"] = _c_decode


def _compact_backend() -> str:
    if os.environ.get("OPENTRACING_SLS_PURE_PYTHON", "") not in ("", "0"):
        return "python"
    return "c" if "c" in COMPACT_DECODERS else "python"


#: ``"c"`` or ``"python"``: which compact decoder the functions below use.
COMPACT_BACKEND = _compact_backend()
_compact_decode = COMPACT_DECODERS[COMPACT_BACKEND]


class BatchInfo(NamedTuple):
    """What a batch says about its sender besides the spans (all optional on the wire)."""

    #: ``Batch.seqNo``: increments per batch, so gaps show lost packets
    seq_no: Optional[int]
    #: ``Batch.stats``: cumulative (fullQueueDroppedSpans, tooLargeDroppedSpans,
    #: failedToEmitSpans)
    stats: Optional[Tuple[int, int, int]]
    #: the process's ``client-uuid`` STRING tag
    client_uuid: Optional[str]


def _info(process: Process, seq_no: Optional[int],
          stats: Optional[Tuple[int, int, int]]) -> BatchInfo:
    client_uuid = None
    for tag in process.tags:
        if tag.key == CLIENT_UUID_TAG and tag.type == STRING:
            client_uuid = tag.value
    return BatchInfo(seq_no, stats, client_uuid)


def decode_emit_batch_compact(data: Any) -> List[Span]:
    """Spans of one UDP datagram from port 6831: an ``emitBatch`` message, compact protocol.

    ``data`` is any bytes-like object. Raises :class:`DecodeError` for malformed input.
    """
    return _compact_decode(data, True)[0]


def decode_emit_batch_compact_with_info(data: Any) -> Tuple[List[Span], BatchInfo]:
    """:func:`decode_emit_batch_compact` plus the batch's :class:`BatchInfo`."""
    spans, process, seq_no, stats = _compact_decode(data, True)
    return spans, _info(process, seq_no, stats)


def decode_emit_batch_binary(data: Any) -> List[Span]:
    """Spans of one UDP datagram from port 6832: an ``emitBatch`` message, binary protocol
    (strict header ``80 01 00 04``, or the old non-strict form).

    Raises :class:`DecodeError` for malformed input.
    """
    return thrift_binary.decode(data, True)[0]


def decode_emit_batch_binary_with_info(data: Any) -> Tuple[List[Span], BatchInfo]:
    """:func:`decode_emit_batch_binary` plus the batch's :class:`BatchInfo`."""
    spans, process, seq_no, stats = thrift_binary.decode(data, True)
    return spans, _info(process, seq_no, stats)


def decode_batch_binary(data: Any) -> List[Span]:
    """Spans of a bare binary ``Batch`` struct: the body of the collector's
    ``POST /api/traces`` (Content-Type ``application/x-thrift``).

    Raises :class:`DecodeError` for malformed input.
    """
    return thrift_binary.decode(data, False)[0]


def decode_batch_binary_with_info(data: Any) -> Tuple[List[Span], BatchInfo]:
    """:func:`decode_batch_binary` plus the batch's :class:`BatchInfo`."""
    spans, process, seq_no, stats = thrift_binary.decode(data, False)
    return spans, _info(process, seq_no, stats)


def decode_batch_compact(data: Any) -> List[Span]:
    """Spans of a bare compact ``Batch`` struct.

    Raises :class:`DecodeError` for malformed input.
    """
    return _compact_decode(data, False)[0]


def decode_batch_compact_with_info(data: Any) -> Tuple[List[Span], BatchInfo]:
    """:func:`decode_batch_compact` plus the batch's :class:`BatchInfo`."""
    spans, process, seq_no, stats = _compact_decode(data, False)
    return spans, _info(process, seq_no, stats)
