"""The protocol-independent half of the Thrift decoders: turning a struct's decoded fields
(a ``{field id: value}`` dict from either protocol's generic reader) into model objects, and
the tag cache policy both fast paths share."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from .model import (
    BINARY,
    BOOL,
    DOUBLE,
    LONG,
    STRING,
    DecodeError,
    Log,
    Process,
    Reference,
    Span,
    Tag,
)

new = tuple.__new__

#: Tags cached per key while the key has few distinct values (span.kind, status codes...);
#: a key with more (URLs, ids) stops caching.
VALUES_PER_KEY = 16
VALUE_BYTES = 64
#: fast-path code -> TagType; codes 2/3 are BOOL true/false
CODE_TYPE = (STRING, DOUBLE, BOOL, BOOL, LONG, BINARY)


def required(values: Dict[int, Any], fids: Tuple[int, ...], what: str) -> None:
    for fid in fids:
        if fid not in values:
            raise DecodeError("%s without its required field %d" % (what, fid))


def value_tag(entry: List[Any], values: Dict[Any, Tag], raw: Any, value: Any) -> Tag:
    """A new Tag for ``entry``'s key, cached by its raw value while the key has few."""
    tag = Tag(entry[1], CODE_TYPE[entry[0]], value)
    if len(values) < VALUES_PER_KEY and (type(raw) is int or len(raw) <= VALUE_BYTES):
        values[raw] = tag
    else:  # a high-cardinality key: stop caching (and looking up) its values
        entry[2] = None
    return tag


def log_of(v: Dict[int, Any]) -> Log:
    required(v, (1, 2), "log")
    return new(Log, (v[1], v[2]))


def reference_of(v: Dict[int, Any]) -> Reference:
    required(v, (1, 2, 3, 4), "span reference")
    return new(Reference, (v[1], v[3] << 64 | v[2], v[4]))


def span_of(v: Dict[int, Any], process: Any) -> Span:
    required(v, (1, 2, 3, 4, 5, 7, 8, 9), "span")
    return new(Span, (v[2] << 64 | v[1], v[3], v[4], v[5], v[7], v[8], v[9], v.get(10, ()),
                      v.get(11, ()), v.get(6, ()), process))


def process_of(v: Dict[int, Any]) -> Process:
    required(v, (1,), "process")
    return Process(v[1], v.get(2, ()))


def stats_of(v: Dict[int, Any]) -> Tuple[int, int, int]:
    required(v, (1, 2, 3), "client stats")
    return (v[1], v[2], v[3])
