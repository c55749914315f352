"""Query parameters of the Jaeger query API, parsed and checked (``query_parser.go`` rules).

Every function takes the request's multi-valued query (anything with ``get`` and
``getall``) and raises :class:`ParamError` with the message the client sees in the 400
response. Times: ``/api/traces`` ``start``/``end`` are epoch µs, ``/api/dependencies``
``endTs``/``lookback`` are ms, durations are Go durations (``1.2s``, ``100ms``, ``500us``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Protocol, Sequence, Tuple

from .jaeger_json import parse_trace_id
from .store_read import TraceQuery

#: Jaeger's defaults (``default_params.go``): 100 traces, a 48 h search window, 24 h of
#: dependencies.
DEFAULT_LIMIT = 100
DEFAULT_SEARCH_WINDOW_US = 48 * 3600 * 1_000_000
DEFAULT_DEPENDENCY_LOOKBACK_MS = 24 * 3600 * 1000
#: The span kinds an operation can have (the ``span.kind`` tag); "" is "no kind".
SPAN_KINDS = ("", "server", "client", "producer", "consumer", "internal")

_GO_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS_US = {"ns": 0.001, "us": 1, "µs": 1, "μs": 1, "ms": 1000, "s": 1_000_000,
                "m": 60_000_000, "h": 3_600_000_000}
# The UI's lookback choices include days ("2d"), which Go durations lack.
_LOOKBACK = re.compile(r"^([0-9]+(?:\.[0-9]*)?)d$")


class Params(Protocol):
    def get(self, key: str, default: Optional[str] = None) -> Optional[str]: ...

    def getall(self, key: str, default: List[str] = ...) -> List[str]: ...


class ParamError(ValueError):
    """A bad query parameter: the API answers 400 with this message."""


@dataclass(frozen=True)
class TraceSearch:
    """What ``GET /api/traces`` asks: the traces of ``trace_ids`` (multi-get) when any are
    given, else the search ``query``."""

    trace_ids: Tuple[int, ...]
    query: Optional[TraceQuery]


@dataclass(frozen=True)
class StatsQuery:
    """``GET /api/stats``: per-operation figures of ``service`` (None: every service)."""

    service: Optional[str]
    start_us: int
    end_us: int


def go_duration_us(text: str) -> int:
    """µs of a Go duration (``time.ParseDuration``: ``1h2m``, ``1.5s``, ``300ms``, ``0``);
    ValueError when malformed or negative."""
    value = text.strip()
    if value in ("0", "+0", "-0"):
        return 0
    body = value[1:] if value[:1] in "+-" else value
    total = 0.0
    pos = 0
    for match in _GO_DURATION.finditer(body):
        number = match.group(1)
        if match.start() != pos or number in ("", "."):
            break
        total += float(number) * _GO_UNITS_US[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ValueError("not a duration (examples: 1.2s, 100ms, 500us, 1h30m): %r" % text)
    if value.startswith("-") and total:
        raise ValueError("a duration must not be negative: %r" % text)
    return round(total)


def _int(params: Params, name: str, minimum: Optional[int] = None) -> Optional[int]:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise ParamError("unable to parse param '%s': not an integer: %r" % (name, raw)) from None
    if minimum is not None and value < minimum:
        raise ParamError("unable to parse param '%s': must be at least %d, got %d"
                         % (name, minimum, value))
    return value


def _duration(params: Params, name: str) -> Optional[int]:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return go_duration_us(raw)
    except ValueError as exc:
        raise ParamError("unable to parse param '%s': %s" % (name, exc)) from None


def lookback_us(text: str) -> Optional[int]:
    """µs of a search form lookback (a Go duration or ``<n>d``); None for ``custom``."""
    value = text.strip()
    if value == "custom":
        return None
    days = _LOOKBACK.match(value)
    if days:
        return round(float(days.group(1)) * 86_400_000_000)
    return go_duration_us(value)


def parse_tags(params: Params) -> Dict[str, str]:
    """``tags`` (a JSON object) and repeated ``tag=key:value``, merged; values as strings."""
    tags: Dict[str, str] = {}
    for raw in params.getall("tags", []):
        if not raw.strip():
            continue
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise ParamError("malformed 'tags' parameter: not a JSON object such as "
                             '{"error":"true"}: %r' % raw) from None
        if not isinstance(parsed, dict):
            raise ParamError("malformed 'tags' parameter: expected a JSON object of "
                             "strings, got %r" % raw)
        for key, value in parsed.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, (int, float)):
                value = json.dumps(value)
            elif not isinstance(value, str):
                raise ParamError("malformed 'tags' parameter: the value of %r must be a "
                                 "string, got %s" % (key, json.dumps(value)))
            tags[key] = value
    for raw in params.getall("tag", []):
        key, sep, value = raw.partition(":")
        if not sep or not key:
            raise ParamError("malformed 'tag' parameter, expecting key:value, received: %s"
                             % raw)
        tags[key] = value
    return tags


def parse_trace_ids(values: Sequence[str]) -> Tuple[int, ...]:
    ids = []
    for raw in values:
        try:
            ids.append(parse_trace_id(raw))
        except ValueError as exc:
            raise ParamError("unable to parse param 'traceID': %s" % exc) from None
    return tuple(dict.fromkeys(ids))


def _window(params: Params, now_us: int) -> Tuple[int, int]:
    """``start``/``end`` µs; a missing ``start`` is ``end`` minus ``lookback`` (when it is a
    duration) or minus 48 h, Jaeger's default."""
    end = _int(params, "end", 0)
    end = now_us if end is None else end
    start = _int(params, "start", 0)
    if start is None:
        window = DEFAULT_SEARCH_WINDOW_US
        raw = params.get("lookback")
        if raw:
            try:
                window = lookback_us(raw) or window
            except ValueError as exc:
                raise ParamError("unable to parse param 'lookback': %s" % exc) from None
        start = max(0, end - window)
    if end < start:
        raise ParamError("'end' (%d) is before 'start' (%d)" % (end, start))
    return start, end


def parse_trace_search(params: Params, now_us: int) -> TraceSearch:
    """``GET /api/traces``: a multi-get when ``traceID`` is given, else a search that needs
    ``service``."""
    trace_ids = parse_trace_ids(params.getall("traceID", []))
    if trace_ids:
        return TraceSearch(trace_ids, None)
    service = params.get("service")
    if not service:
        raise ParamError("parameter 'service' is required")
    start, end = _window(params, now_us)
    min_duration = _duration(params, "minDuration")
    max_duration = _duration(params, "maxDuration")
    if min_duration is not None and max_duration is not None and max_duration < min_duration:
        raise ParamError("'maxDuration' should be greater than 'minDuration'")
    limit = _int(params, "limit", 0)
    query = TraceQuery(service=service, operation=params.get("operation") or None,
                       tags=parse_tags(params), start_min_us=start, start_max_us=end,
                       duration_min_us=min_duration, duration_max_us=max_duration,
                       limit=limit or DEFAULT_LIMIT)
    return TraceSearch((), query)


def parse_span_kind(params: Params) -> Optional[str]:
    """``spanKind`` of ``/api/operations``: None when absent (every kind)."""
    kind = params.get("spanKind")
    if kind is None:
        return None
    kind = kind.strip().lower()
    if kind not in SPAN_KINDS:
        raise ParamError("unable to parse param 'spanKind': expected one of %s, got %r"
                         % (", ".join(k for k in SPAN_KINDS if k), kind))
    return kind


def parse_dependencies(params: Params, now_ms: int) -> Tuple[int, int]:
    """(end µs, lookback µs) of ``GET /api/dependencies?endTs=<ms>&lookback=<ms>``."""
    end_ms = _int(params, "endTs", 0)
    lookback_ms = _int(params, "lookback", 1)
    end_ms = now_ms if end_ms is None else end_ms
    lookback_ms = DEFAULT_DEPENDENCY_LOOKBACK_MS if lookback_ms is None else lookback_ms
    return end_ms * 1000, lookback_ms * 1000


def parse_stats(params: Params, now_us: int) -> StatsQuery:
    """``GET /api/stats?service=&start=&end=&lookback=`` (same window rules as searches)."""
    start, end = _window(params, now_us)
    return StatsQuery(params.get("service") or None, start, end)
