"""The local store's read path: the queries behind the Jaeger query API and the CLI.

Every function takes a read connection; ``LocalStore`` hands out pooled ones so reads never
wait for the writer (WAL) and never share a connection between threads.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from .model import Process, Span
from .store_codec import (
    DAY_US,
    HOUR_US,
    day_term,
    decode_body,
    decode_process,
    hour_term,
    operation_term,
    service_term,
    tag_term,
    trace_id_of,
    trace_key,
    unsigned64,
)

_CHUNK = 500
_SPAN_COLUMNS = ("trace_id, span_id, parent_id, process_id, operation, flags, start_time, "
                 "duration, body")
#: Windows up to this many hours are matched by hour terms, longer ones by day terms (plus
#: the hours of the partial days at both ends).
_MAX_HOUR_TERMS = 48
#: Longer windows are not narrowed by the index (the rows' start times still filter).
_MAX_DAY_TERMS = 800


@dataclass(frozen=True)
class TraceQuery:
    """A trace search, with the Jaeger query API's semantics.

    A trace matches when ONE of its spans is of ``service``, has ``operation`` (when given),
    starts within ``[start_min_us, start_max_us]``, lasts within
    ``[duration_min_us, duration_max_us]`` and has every tag of ``tags`` among its span tags,
    its process tags or its log fields (values compared as strings; bools are ``true`` /
    ``false``). ``limit`` counts traces; 0 or less means no limit.
    """

    service: str
    operation: Optional[str] = None
    tags: Mapping[str, str] = field(default_factory=dict)
    start_min_us: Optional[int] = None
    start_max_us: Optional[int] = None
    duration_min_us: Optional[int] = None
    duration_max_us: Optional[int] = None
    limit: int = 20


def _query_string(value: object) -> str:
    """A tag value of a query as a search string (the API sends strings; be lenient)."""
    if value is True or value is False:
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


class SpanReader:
    """Builds model spans from rows; caches processes, which never change once written."""

    def __init__(self) -> None:
        self._processes: Dict[int, Process] = {}

    def services(self, conn: sqlite3.Connection) -> List[str]:
        return [row[0] for row in conn.execute("SELECT name FROM services ORDER BY name")]

    def operations(self, conn: sqlite3.Connection, service: str,
                   span_kind: Optional[str] = None) -> List[Tuple[str, str]]:
        sql = ("SELECT o.name, o.kind FROM operations o JOIN services v ON v.id = o.service_id "
               "WHERE v.name = ?")
        params: list = [service]
        if span_kind is not None:
            sql += " AND o.kind = ?"
            params.append(span_kind)
        return [(name, kind) for name, kind in conn.execute(sql + " ORDER BY o.name, o.kind",
                                                              params)]

    def get_traces(self, conn: sqlite3.Connection,
                   trace_ids: Iterable[int]) -> Dict[int, List[Span]]:
        """The spans of each known trace id, in start-time order; unknown ids are left out.

        A trace's spans always come from one chunk's query, so each list is fully ordered.
        """
        keys = list(dict.fromkeys(trace_key(trace_id) for trace_id in trace_ids))
        rows: List[tuple] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            rows.extend(conn.execute(
                "SELECT %s FROM spans WHERE trace_id IN (%s) ORDER BY start_time, id"
                % (_SPAN_COLUMNS, ",".join("?" * len(chunk))), chunk))
        self._load_processes(conn, {row[3] for row in rows})
        traces: Dict[int, List[Span]] = {}
        for row in rows:
            span = self._span(row)
            traces.setdefault(span.trace_id, []).append(span)
        return traces

    def _span(self, row: tuple) -> Span:
        trace, span_id, parent_id, process_id, operation, flags, start, duration, body = row
        trace_id = trace_id_of(trace)
        parent_id = unsigned64(parent_id)
        tags, logs, references = decode_body(body, trace_id, parent_id)
        return Span(trace_id, unsigned64(span_id), parent_id, operation, flags, start, duration,
                    tags, logs, references, self._processes[process_id])

    def _load_processes(self, conn: sqlite3.Connection, process_ids: Iterable[int]) -> None:
        missing = [pid for pid in process_ids if pid not in self._processes]
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start:start + _CHUNK]
            for pid, service, tags in conn.execute(
                    "SELECT p.id, v.name, p.tags FROM processes p "
                    "JOIN services v ON v.id = p.service_id WHERE p.id IN (%s)"
                    % ",".join("?" * len(chunk)), chunk):
                self._processes[pid] = decode_process(service, tags)

    def find_trace_ids(self, conn: sqlite3.Connection, query: TraceQuery) -> List[int]:
        """Ids of the matching traces, the trace with the newest matching span first."""
        if _empty_range(query.start_min_us, query.start_max_us) or _empty_range(
                query.duration_min_us, query.duration_max_us):
            return []
        row = conn.execute("SELECT id FROM services WHERE name = ?", (query.service,)).fetchone()
        if row is None:
            return []
        sql, params = plan_find(row[0], query)
        newest: Dict[bytes, int] = {}
        limit = query.limit if query.limit > 0 else None
        cursor = conn.execute(sql, params)
        try:
            # Newest rows first; stop as soon as enough traces are seen.
            for trace, start in cursor:
                if trace not in newest:
                    newest[trace] = start
                    if limit is not None and len(newest) >= limit:
                        break
                elif start > newest[trace]:
                    newest[trace] = start
        finally:
            cursor.close()
        # Rows come in arrival order, which is start order only roughly.
        ordered = sorted(newest.items(), key=lambda item: item[1], reverse=True)
        return [trace_id_of(trace) for trace, _ in ordered]

    def dependencies(self, conn: sqlite3.Connection, end_us: int,
                     lookback_us: int) -> List[Tuple[str, str, int]]:
        """(parent service, child service, calls) from spans started in the window.

        An edge is a span whose parent span belongs to another service. Zipkin shared spans
        can store the client and the server side under one span id; a child whose parent id
        also names a span of its own service hangs under that local span, so it is no edge.
        """
        start_us = end_us - lookback_us
        if start_us > end_us:
            return []
        window = time_match(start_us, end_us)
        if window is None:
            source, params = "spans c WHERE", []
        else:
            source = ("span_terms f CROSS JOIN spans c ON c.id = f.rowid "
                      "WHERE span_terms MATCH ? AND")
            params = [window]
        sql = (
            "SELECT ps.name, cs.name, count(DISTINCT c.id) FROM (SELECT c.id, c.trace_id, "
            "c.parent_id, c.service_id FROM " + source + " c.start_time >= ? AND "
            "c.start_time <= ? AND c.parent_id != 0) c "
            # The planner has no statistics: pin the join order and the parent lookups.
            "CROSS JOIN spans p INDEXED BY spans_by_trace "
            "ON p.trace_id = c.trace_id AND p.span_id = c.parent_id "
            "JOIN services ps ON ps.id = p.service_id "
            "JOIN services cs ON cs.id = c.service_id "
            "WHERE p.service_id != c.service_id "
            "AND NOT EXISTS (SELECT 1 FROM spans q INDEXED BY spans_by_trace "
            "WHERE q.trace_id = c.trace_id AND q.span_id = c.parent_id "
            "AND q.service_id = c.service_id) "
            "GROUP BY ps.name, cs.name ORDER BY ps.name, cs.name")
        return [(parent, child, calls) for parent, child, calls
                in conn.execute(sql, params + [start_us, end_us])]


def _empty_range(low: Optional[int], high: Optional[int]) -> bool:
    return low is not None and high is not None and high < low


def plan_find(service_id: int, query: TraceQuery) -> Tuple[str, list]:
    """The SQL (and parameters) of a trace search: rows ``(trace_id, start_time)``, newest first.

    The FTS5 term index drives: one ``MATCH`` of the tags' and the operation's terms (or the
    service's, when there are none) AND-ed with the hour/day terms of the window finds the
    candidate spans, newest row (arrival) first; the exact window and the durations are
    filtered on the span row.
    """
    terms = [tag_term(service_id, key, _query_string(value)) for key, value in query.tags.items()]
    if query.operation is not None:
        terms.append(operation_term(service_id, query.operation))
    if not terms:
        terms.append(service_term(service_id))
    # Quoted: a term is a phrase of one token.
    match = " AND ".join('"%s"' % term for term in terms)
    window = time_match(query.start_min_us, query.start_max_us)
    if window is not None:
        match += " AND " + window
    # CROSS JOIN keeps the term index as the outer loop (SQLite never reorders it).
    sql = ("SELECT s.trace_id, s.start_time FROM span_terms f CROSS JOIN spans s "
           "ON s.id = f.rowid WHERE span_terms MATCH ? AND s.service_id = ?")
    params: list = [match, service_id]
    if query.operation is not None:
        # Exact even when a long operation name is indexed by its digest.
        sql += " AND s.operation = ?"
        params.append(query.operation)
    for condition, value in ((" AND s.start_time >= ?", query.start_min_us),
                             (" AND s.start_time <= ?", query.start_max_us),
                             (" AND s.duration >= ?", query.duration_min_us),
                             (" AND s.duration <= ?", query.duration_max_us)):
        if value is not None:
            sql += condition
            params.append(value)
    return sql + " ORDER BY f.rowid DESC", params


def time_match(start_min_us: Optional[int], start_max_us: Optional[int]) -> Optional[str]:
    """An FTS5 expression matching every span that started in the window (and some more of
    the same hours), or None when the window is open-ended or too long to enumerate."""
    if start_min_us is None or start_max_us is None or start_max_us < start_min_us:
        return None
    low, high = max(start_min_us, 0), max(start_max_us, 0)
    first_hour, last_hour = low // HOUR_US, high // HOUR_US
    if last_hour - first_hour < _MAX_HOUR_TERMS:
        terms = [hour_term(hour) for hour in range(first_hour, last_hour + 1)]
    else:
        first_day, last_day = low // DAY_US, high // DAY_US
        if last_day - first_day > _MAX_DAY_TERMS:
            return None
        terms = ([hour_term(hour) for hour in range(first_hour, (first_day + 1) * 24)]
                 + [day_term(day) for day in range(first_day + 1, last_day)]
                 + [hour_term(hour) for hour in range(last_day * 24, last_hour + 1)])
    return "(" + " OR ".join('"%s"' % term for term in terms) + ")"
