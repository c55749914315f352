"""What the Zipkin v1 and v2 JSON decoders share field by field: ids, times, endpoints, the
process, tags, logs, and the id of the server half of a shared span.

The mapping decisions are documented once, in :mod:`opentracing_sls.shim.zipkin`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from .model import (
    BOOL,
    CHILD_OF,
    DEBUG_FLAG,
    LONG,
    SAMPLED_FLAG,
    STRING,
    Log,
    Process,
    Reference,
    Span,
    Tag,
)
from .zipkin_body import MalformedSpan, clean_text, json_type

#: Jaeger's name (``to_domain.go``) for a Zipkin span whose endpoints carry no service name.
UNKNOWN_SERVICE_NAME = "unknown-service-name"

MAX_INT64 = (1 << 63) - 1
_MASK64 = (1 << 64) - 1

#: ``new_tuple(Tag, (key, type, value))``: skips NamedTuple.__new__'s argument handling, about
#: half the cost of ``Tag(...)`` in a loop that builds a dozen tags per span.
new_tuple = tuple.__new__

#: Flags of a span that reached a collector (it was sampled) and of a debug one (X-B3-Flags: 1).
FLAGS_SAMPLED = SAMPLED_FLAG
FLAGS_DEBUG = SAMPLED_FLAG | DEBUG_FLAG

KIND_TAGS: Dict[str, Tag] = {
    kind: Tag("span.kind", STRING, kind.lower())
    for kind in ("CLIENT", "SERVER", "PRODUCER", "CONSUMER")
}
SHARED_TAG = Tag("shared", BOOL, True)
ERROR_TAG = Tag("error", BOOL, True)

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")

# Tag keys that need more than ``Tag(key, STRING, value)``; one dict lookup per tag finds them.
# Jaeger moves the first three from the span to the process, renamed (to_domain.go).
PROCESS_TAG_KEYS = {"jaegerClient": "jaeger.version", "jaeger.hostname": "hostname",
                    "jaeger.version": "jaeger.version"}
SPECIAL_TAG_KEYS = frozenset(("error", "lc", "span.kind", *PROCESS_TAG_KEYS))


class Endpoint(NamedTuple):
    """A validated Zipkin endpoint; empty strings and 0 mean absent."""

    service_name: str
    ipv4: str
    ipv6: str
    port: int


# ---------------------------------------------------------------------------------------------
# Fields


def _hex_value(value: Any, field: str) -> int:
    # int(x, 16) alone would accept "0x1f", "1_f", " 1f" and "-1f": check the characters first.
    if type(value) is not str or not 0 < len(value) <= 32 or not _HEX_DIGITS.issuperset(value):
        raise MalformedSpan("%s must be 1 to 32 hex digits, got %.40r" % (field, value))
    return int(value, 16)


def trace_id_of(value: Any) -> int:
    """``traceId``: 16 or 32 hex digits (shorter ones are left-padded), not zero."""
    trace_id = _hex_value(value, "traceId")
    if not trace_id:
        raise MalformedSpan("traceId is zero")
    return trace_id


def span_id_of(value: Any) -> int:
    """``id``: 16 hex digits (shorter ones left-padded, longer ones only with leading zeros)."""
    span_id = _hex_value(value, "id")
    if not span_id:
        raise MalformedSpan("id is zero")
    if span_id > _MASK64:
        raise MalformedSpan("id exceeds 64 bits: %.40r" % (value,))
    return span_id


def parent_id_of(value: Any, span_id: int) -> int:
    """``parentId``: 0 for a root (absent, empty, zero, or the span's own id)."""
    if value is None or value == "":
        return 0
    parent_id = _hex_value(value, "parentId")
    if parent_id > _MASK64:
        raise MalformedSpan("parentId exceeds 64 bits: %.40r" % (value,))
    # A span that is its own parent would make a cycle in every tree view.
    return 0 if parent_id == span_id else parent_id


def micros_of(value: Any, field: str) -> int:
    """An epoch-µs timestamp or µs duration; 0 when absent. Floats are truncated."""
    kind = type(value)
    if kind is int:
        if 0 <= value <= MAX_INT64:
            return value
    elif value is None:
        return 0
    elif kind is float and math.isfinite(value):
        if 0 <= value <= MAX_INT64:
            return int(value)
    else:
        raise MalformedSpan("%s must be a number, got %s" % (field, json_type(value)))
    raise MalformedSpan("%s out of range: %r" % (field, value))


def name_of(value: Any) -> str:
    """``name``; ``""`` when absent."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    raise MalformedSpan("name must be a string, got %s" % json_type(value))


def flag_of(value: Any, field: str) -> bool:
    """``debug`` and ``shared``: true, false or absent."""
    if value is True:
        return True
    if value is None or value is False:
        return False
    raise MalformedSpan("%s must be a boolean, got %s" % (field, json_type(value)))


def list_of(value: Any, field: str) -> List[Any]:
    if type(value) is list:
        return value
    if value is None:
        return []
    raise MalformedSpan("%s must be an array, got %s" % (field, json_type(value)))


def _text_field(value: Any, field: str) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    raise MalformedSpan("endpoint %s must be a string, got %s" % (field, json_type(value)))


def endpoint_of(value: Any) -> Optional[Endpoint]:
    """An endpoint object ``{serviceName, ipv4, ipv6, port}``; ``None`` when absent.

    Addresses are kept as the text the tracer sent (the agent does not resolve them).
    """
    if value is None:
        return None
    if type(value) is not dict:
        raise MalformedSpan("endpoint must be an object, got %s" % json_type(value))
    get = value.get
    port = get("port")
    if port is None:
        port = 0
    elif type(port) is not int or not -32768 <= port <= 65535:
        raise MalformedSpan("endpoint port must be 0 to 65535, got %.40r" % (port,))
    elif port < 0:
        port += 65536  # Thrift-era tracers wrote ports above 32767 as a negative i16.
    return Endpoint(_text_field(get("serviceName"), "serviceName"),
                    _text_field(get("ipv4"), "ipv4"), _text_field(get("ipv6"), "ipv6"), port)


def process_of(endpoint: Optional[Endpoint], extra: Tuple[Tag, ...],
               processes: Dict[Any, Process]) -> Process:
    """The Process of a local endpoint, interned per body (Envoy repeats one endpoint per span)."""
    key = (endpoint, extra)
    process = processes.get(key)
    if process is None:
        tags: List[Tag] = []
        service = ""
        if endpoint is not None:
            service, ipv4, ipv6, port = endpoint
            if ipv4:
                tags.append(Tag("ip", STRING, ipv4))
            if ipv6:
                tags.append(Tag("ipv6" if ipv4 else "ip", STRING, ipv6))
            if port:
                tags.append(Tag("port", LONG, port))
        tags.extend(extra)
        process = processes[key] = Process(service or UNKNOWN_SERVICE_NAME, tuple(tags))
    return process


def add_peer_tags(endpoint: Optional[Endpoint], tags: List[Tag]) -> None:
    """The remote endpoint as OpenTracing ``peer.*`` tags."""
    if endpoint is None:
        return
    service, ipv4, ipv6, port = endpoint
    if service:
        tags.append(new_tuple(Tag, ("peer.service", STRING, service)))
    if ipv4:
        tags.append(new_tuple(Tag, ("peer.ipv4", STRING, ipv4)))
    if ipv6:
        tags.append(new_tuple(Tag, ("peer.ipv6", STRING, ipv6)))
    if port:
        tags.append(new_tuple(Tag, ("peer.port", LONG, port)))


def tag_text(value: Any) -> Optional[str]:
    """A v2 tag value as the string Zipkin defines it to be; ``None`` (tag dropped) for null.

    Non-string scalars are a protocol slip some tracers make; they keep their JSON spelling.
    """
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value)
    if value is None:
        return None
    raise MalformedSpan("tag values must be strings, got %s" % json_type(value))


def add_special_tag(key: str, value: Any, tags: List[Tag], process_tags: List[Tag],
                    has_kind: bool) -> None:
    """A tag whose key is in SPECIAL_TAG_KEYS (``value`` is a str, or a bool/number in v1)."""
    if key == "error":
        text = value.lower() if type(value) is str else value
        if text is False or text == "false":
            tags.append(Tag("error", BOOL if value is False else STRING, value))
            return
        # Zipkin: the tag's presence marks a failure; its value is "" / "true" or the message.
        tags.append(ERROR_TAG)
        if text not in (True, "", "true"):
            tags.append(Tag("error.message", STRING, str(value)))
    elif key == "lc":
        if value != "":
            tags.append(Tag("component", STRING, value if type(value) is str else str(value)))
    elif key == "span.kind":
        if not has_kind:  # the span's own kind wins over a tag saying otherwise
            tags.append(Tag(key, STRING, value if type(value) is str else str(value)))
    else:
        process_tags.append(Tag(PROCESS_TAG_KEYS[key], STRING,
                                value if type(value) is str else str(value)))


def log_of(timestamp: int, value: str) -> Optional[Log]:
    """An annotation as a log: ``event=<value>``, or the fields of a JSON object of strings
    (how tracers bridging OpenTracing key/value logs into Zipkin encode them)."""
    if not value:
        return None
    if value[0] == "{" and value[-1] == "}":
        try:
            fields = json.loads(value)
        except (ValueError, RecursionError):
            fields = None
        if type(fields) is dict and fields and all(type(v) is str for v in fields.values()):
            return Log(timestamp, tuple(Tag(clean_text(k), STRING, clean_text(v))
                                        for k, v in fields.items()))
    return new_tuple(Log, (timestamp, (new_tuple(Tag, ("event", STRING, value)),)))


def shared_server_span_id(trace_id: int, span_id: int) -> int:
    """The span id given to the server half of a shared span (same Zipkin id as its client).

    Deterministic, so a retried body or a half arriving in another body maps the same way; for a
    given trace a bijection of ``span_id`` (splitmix64's finalizer), except that the results 0 and
    ``span_id`` itself, which a span id cannot be, are stepped away from.
    """
    x = (span_id ^ (trace_id & _MASK64) ^ (trace_id >> 64) ^ 0x5A17ED5BA7E5A1D0) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    x ^= x >> 31
    while x == 0 or x == span_id:
        x = (x + 0x9E3779B97F4A7C15) & _MASK64
    return x


def make_span(trace_id: int, span_id: int, parent_id: int, name: str, flags: int, start: int,
              duration: int, tags: List[Tag], logs: List[Log], process: Process,
              shared: bool) -> Span:
    """The model Span; the server half of a shared span gets its own id under its client."""
    if shared:
        parent_id = span_id
        span_id = shared_server_span_id(trace_id, span_id)
        tags.append(SHARED_TAG)
    refs = (new_tuple(Reference, (CHILD_OF, trace_id, parent_id)),) if parent_id else ()
    return new_tuple(Span, (trace_id, span_id, parent_id, name, flags, start, duration,
                            tuple(tags), tuple(logs), refs, process))
