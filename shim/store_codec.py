"""How the local store packs model values into SQLite columns and back, exactly.

- Trace ids: 16-byte big-endian BLOBs (SQLite integers are signed 64-bit; blobs sort like the
  unsigned id and ``hex()`` shows the id in the sqlite3 shell).
- Span ids: the unsigned 64-bit id as the signed int64 with the same bits.
- Tags, logs and references: compact JSON ``[tags, logs, references]`` of the model's tuples.
  Tuples become arrays; binary values become base64 strings (the tag type says to decode
  them); doubles keep Python's round-tripping ``repr`` (NaN and infinities use the json
  module's extension). The references are left out when they are exactly what ``parent_id``
  implies (one CHILD_OF to the parent, or none for a root): most spans, and a 128-bit trace id
  is the costliest value to encode.
- Search strings: tag values compared as strings, formatted like Jaeger's ``KeyValue.AsString``
  (bool ``true``/``false``, int64 in decimal, float64 as Go's ``%.10g``, binary as hex).
- Index terms (``span_terms``), only [0-9a-z] so FTS5's ``ascii`` tokenizer keeps each whole:
  ``r<32 hex>`` for the trace id, ``h<hour>`` and ``s<service id>h<hour>`` for the start hour
  (8 hex digits, hours since the epoch; earlier starts count as hour 0), ``p<process id>`` for
  the process, ``s<service id>o<op>`` for the operation and ``s<service id>k<key>v<value>``
  for a span tag or log field. Names and values are the hex
  of their UTF-8, or ``z`` + an 80-bit BLAKE2b digest when longer than 40 bytes (terms stay
  short; a false match would need a hash collision).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from typing import Any, Callable, List, Sequence, Tuple

from .model import (
    BINARY,
    BOOL,
    CHILD_OF,
    DOUBLE,
    LONG,
    STRING,
    Log,
    Process,
    Reference,
    Span,
    Tag,
)

_U64 = 1 << 64
_I64 = 1 << 63


def trace_key(trace_id: int) -> bytes:
    """The BLOB form of an unsigned 128-bit trace id."""
    return trace_id.to_bytes(16, "big")


def trace_id_of(key: bytes) -> int:
    return int.from_bytes(key, "big")


def signed64(value: int) -> int:
    """An unsigned 64-bit id as the int64 with the same bits."""
    return value - _U64 if value >= _I64 else value


def unsigned64(value: int) -> int:
    return value + _U64 if value < 0 else value


def search_string(tag_type: int, value: Any) -> str:
    """A tag value as the string a tag search compares with."""
    if tag_type == STRING:
        return value if type(value) is str else str(value)
    if tag_type == BOOL:
        return "true" if value else "false"
    if tag_type == LONG:
        return str(value)
    if tag_type == DOUBLE:
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")
        return "%.10g" % value
    if tag_type == BINARY and isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


def _json_default(value: Any) -> Any:
    """Binary tag values (the only non-JSON values of the model) as base64."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError("cannot store a %s in a span" % type(value).__name__)


def _make_encoder() -> Callable[[Any], str]:
    """A compact JSON encoder; CPython's C encoder called directly when present.

    ``JSONEncoder.encode`` rebuilds the C encoder on every call, which is a fifth of the cost
    of a typical span body.
    """
    try:
        from _json import encode_basestring_ascii
        from _json import make_encoder as c_make_encoder
    except ImportError:  # pragma: no cover - interpreters without the accelerator
        return json.JSONEncoder(separators=(",", ":"), default=_json_default,
                                check_circular=False).encode
    c_encoder = c_make_encoder(None, _json_default, encode_basestring_ascii, None, ":", ",",
                               False, False, True)
    join = "".join

    def encode(value: Any) -> str:
        return join(c_encoder(value, 0))

    return encode


_encode = _make_encoder()


def encode_body(span: Span) -> str:
    """The ``spans.body`` text: ``[tags, logs]``, plus the references unless implied."""
    refs = span.references
    parent_id = span.parent_id
    if (not refs and not parent_id) or (len(refs) == 1 and parent_id
                                        and refs[0] == (CHILD_OF, span.trace_id, parent_id)):
        return _encode((span.tags, span.logs))
    for ref_type, trace_id, span_id in refs:
        # decode_body must be able to read back what is stored (a TypeError rejects the span).
        if not (type(ref_type) is int and type(trace_id) is int and type(span_id) is int):
            raise TypeError("a reference is three ints, got %r" % ((ref_type, trace_id,
                                                                    span_id),))
    return _encode((span.tags, span.logs, refs))


def encode_tags(tags: Sequence[Tag]) -> str:
    """The ``processes.tags`` text; equal tag tuples give equal text (used as a unique key)."""
    return _encode(tags)


def _tags(raw: List[List[Any]]) -> Tuple[Tag, ...]:
    out = []
    for key, tag_type, value in raw:
        if tag_type == BINARY and type(value) is str:
            value = base64.b64decode(value)
        out.append(Tag(key, tag_type, value))
    return tuple(out)


def decode_body(body: str, trace_id: int, parent_id: int
                ) -> Tuple[Tuple[Tag, ...], Tuple[Log, ...], Tuple[Reference, ...]]:
    """Tags, logs and references from ``spans.body`` (ids needed for implied references)."""
    parts = json.loads(body)
    if len(parts) == 2:
        raw_tags, raw_logs = parts
        refs: Tuple[Reference, ...] = ((Reference(CHILD_OF, trace_id, parent_id),)
                                       if parent_id else ())
    else:
        raw_tags, raw_logs, raw_refs = parts
        refs = tuple([Reference(ref_type, trace, span) for ref_type, trace, span in raw_refs])
    return _tags(raw_tags), tuple([Log(ts, _tags(fields)) for ts, fields in raw_logs]), refs


def decode_process(service: str, tags: str) -> Process:
    return Process(service, _tags(json.loads(tags)))


HOUR_US = 3_600_000_000


def trace_term(trace_id: int) -> str:
    """The term of every span of the trace (the writer builds it as ``"r" + key.hex()``)."""
    return "r%032x" % trace_id


def hour_of(start_us: int) -> int:
    """The hour bucket of a start time (hours since the epoch; 0 for earlier times)."""
    return start_us // HOUR_US if start_us > 0 else 0


def process_term(process_id: int) -> str:
    """The term of every span of the process (``processes.id``)."""
    return "p%x" % process_id


def hour_term(hour: int) -> str:
    """The term of every span that started in ``hour``."""
    return "h%08x" % hour


def service_hour_term(service_id: int, hour: int) -> str:
    """The term of the service's spans that started in ``hour``."""
    return "s%xh%08x" % (service_id, hour)


def span_time_terms(service_id: int, hour: int) -> str:
    """Both hour terms of a span of the service."""
    return "h%08x s%xh%08x" % (hour, service_id, hour)


def term_part(text: str) -> str:
    """One part of an index term: hex of the UTF-8, or ``z`` + a digest when long."""
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= 40:
        return raw.hex()
    return "z" + hashlib.blake2b(raw, digest_size=10).hexdigest()


def tag_term_prefix(service_id: int, key: str) -> str:
    """The start of the index terms of tag ``key`` on spans of the service."""
    return "s%xk%sv" % (service_id, term_part(key))


def tag_term(service_id: int, key: str, text: str) -> str:
    """The index term of tag ``key`` with search string ``text`` on a span of the service."""
    return tag_term_prefix(service_id, key) + term_part(text)


def operation_term(service_id: int, operation: str) -> str:
    """The index term of an operation of the service."""
    return "s%xo%s" % (service_id, term_part(operation))
