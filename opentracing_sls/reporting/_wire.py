"""Protocol-independent pieces of the Jaeger Thrift encoders: tag typing and text hygiene.

The mapping of Python values to Jaeger ``TagType`` (jaeger-wire.md section 2, and the
typing rules of jaeger-client's ``thrift.make_tag``, minus its bugs):

=====================  ==========================================
Python value           Thrift tag
=====================  ==========================================
``bool``               BOOL (checked before ``int``: bool is an int)
``int`` in i64 range   LONG
``int`` outside it     STRING of ``str(v)`` (i64 cannot hold it)
``float``              DOUBLE
``bytes``/``bytearray`` BINARY
``str``                STRING
anything else          STRING of ``str(v)``
=====================  ==========================================
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from ..record import SpanRecord

TAG_STRING = 0
TAG_DOUBLE = 1
TAG_BOOL = 2
TAG_LONG = 3
TAG_BINARY = 4

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1

#: Upper bound on the entries of each per-encoder bytes cache (tag keys, operation names).
#: Keys and names are low-cardinality in sane instrumentation; a runaway producer only
#: makes the cache restart, never grow without bound.
CACHE_LIMIT = 4096


def to_str(value: Any) -> str:
    """``str(value)``, but never raises (a broken ``__str__`` must not lose the span)."""
    try:
        return str(value)
    except Exception as exc:  # any failure of a user-defined __str__
        return f"<unprintable {type(value).__name__}: {exc!r}>"


def utf8(text: str) -> bytes:
    """UTF-8 bytes of ``text``; lone surrogates become ``?`` instead of raising, since
    decoders (Apache Thrift, thriftpy2, the Go agent's consumers) reject invalid UTF-8."""
    return text.encode("utf-8", "replace")


def classify(value: Any) -> Tuple[int, Any]:
    """Returns ``(tag_type, value)`` with the value normalised for that Thrift type."""
    if isinstance(value, bool):
        return TAG_BOOL, bool(value)
    if isinstance(value, int):
        as_int = int(value)
        if I64_MIN <= as_int <= I64_MAX:
            return TAG_LONG, as_int
        return TAG_STRING, str(as_int)
    if isinstance(value, float):
        return TAG_DOUBLE, float(value)
    if isinstance(value, (bytes, bytearray)):
        return TAG_BINARY, bytes(value)
    if isinstance(value, str):
        return TAG_STRING, str(value)
    return TAG_STRING, to_str(value)


def _clean(text: Any) -> Any:
    if isinstance(text, str):
        return utf8(text).decode("utf-8")
    return text


def _clean_fields(fields: Dict[Any, Any]) -> Dict[Any, Any]:
    return {_clean(key): _clean(value) for key, value in fields.items()}


def sanitize(record: SpanRecord) -> SpanRecord:
    """A copy of ``record`` whose strings all encode as UTF-8.

    The encoders' fast paths use strict ``str.encode()``; on the rare ``UnicodeEncodeError``
    (a lone surrogate, e.g. from ``os.fsdecode``) they re-encode this copy instead.
    """
    return record._replace(
        operation_name=_clean(record.operation_name),
        tags=_clean_fields(record.tags or {}),
        logs=[(ts, _clean_fields(fields)) for ts, fields in (record.logs or ())],
    )
