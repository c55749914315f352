"""The local store's read path: the queries behind the Jaeger query API and the CLI.

Every function takes a read connection; ``LocalStore`` hands out pooled ones so reads never
wait for the writer (WAL) and never share a connection between threads.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from typing import (
    Callable,
    Dict,
    FrozenSet,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from .model import Process, Span
from .store_codec import (
    decode_body,
    decode_process,
    hour_of,
    hour_term,
    operation_term,
    process_term,
    search_string,
    service_hour_term,
    tag_term,
    trace_id_of,
    trace_term,
    unsigned64,
)

_CHUNK = 500
_SPAN_COLUMNS = ("s.trace_id, s.span_id, s.parent_id, s.process_id, s.operation, s.flags, "
                 "s.start_time, s.duration, s.body, s.service_id, s.kind, s.id")


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
    """Builds model spans from rows and runs the searches (any thread; state is a cache)."""

    def __init__(self) -> None:
        # Processes never change once written, and their ids ascend: load each once.
        self._lock = threading.Lock()
        self._processes: Dict[int, Process] = {}
        self._tags_by_service: Dict[int, List[Tuple[int, FrozenSet[Tuple[str, str]]]]] = {}
        self._last_process = 0

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

        A span stored twice (re-delivered after the writer's dedupe window) is returned once.
        """
        terms = list(dict.fromkeys(trace_term(trace_id) for trace_id in trace_ids))
        rows: List[tuple] = []
        for start in range(0, len(terms), _CHUNK):
            match = " OR ".join('"%s"' % term for term in terms[start:start + _CHUNK])
            rows.extend(conn.execute(
                "SELECT %s FROM span_terms f CROSS JOIN spans s ON s.id = f.rowid "
                "WHERE span_terms MATCH ?" % _SPAN_COLUMNS, (match,)))
        # Stored order first, so of two copies of a span the first stored is kept.
        rows.sort(key=lambda row: (row[6], row[11]))
        self._load_processes(conn, {row[3] for row in rows})
        traces: Dict[int, List[Span]] = {}
        seen = set()
        for row in rows:
            key = (row[0], row[1], row[9], row[10])
            if key in seen:
                continue
            seen.add(key)
            span = self._span(row)
            traces.setdefault(span.trace_id, []).append(span)
        return traces

    def _span(self, row: tuple) -> Span:
        trace, span_id, parent_id, process_id, operation, flags, start, duration, body = row[:9]
        trace_id = trace_id_of(trace)
        parent_id = unsigned64(parent_id)
        tags, logs, references = decode_body(body, trace_id, parent_id)
        return Span(trace_id, unsigned64(span_id), parent_id, operation, flags, start, duration,
                    tags, logs, references, self._processes[process_id])

    def _load_processes(self, conn: sqlite3.Connection, process_ids: Iterable[int]) -> None:
        if any(pid not in self._processes for pid in process_ids):
            self._refresh_processes(conn)

    def _refresh_processes(self, conn: sqlite3.Connection) -> None:
        """Load the processes written since the last call."""
        with self._lock:
            for pid, service_id, service, tags in conn.execute(
                    "SELECT p.id, p.service_id, v.name, p.tags FROM processes p "
                    "JOIN services v ON v.id = p.service_id WHERE p.id > ? ORDER BY p.id",
                    (self._last_process,)):
                process = decode_process(service, tags)
                self._processes[pid] = process
                self._tags_by_service.setdefault(service_id, []).append(
                    (pid, frozenset((key, search_string(tag_type, value))
                                    for key, tag_type, value in process.tags)))
                self._last_process = pid

    def processes_with(self, conn: sqlite3.Connection, service_id: int, key: str,
                       text: str) -> List[int]:
        """Ids of the service's processes that have the tag ``key`` with search string
        ``text``."""
        self._refresh_processes(conn)
        return [pid for pid, tags in self._tags_by_service.get(service_id, ())
                if (key, text) in tags]

    def find_trace_ids(self, conn: sqlite3.Connection, query: TraceQuery) -> List[int]:
        """Ids of the matching traces, the trace with the newest matching span first.

        Hour by hour, newest first; within an hour the matching spans come sorted by start
        time, so the stream is in exact start order and stops at the ``limit``-th trace.
        """
        if _empty_range(query.start_min_us, query.start_max_us) or _empty_range(
                query.duration_min_us, query.duration_max_us):
            return []
        row = conn.execute("SELECT id FROM services WHERE name = ?", (query.service,)).fetchone()
        if row is None:
            return []
        service_id = row[0]
        conditions = match_conditions(service_id, query, lambda key, text: [
            process_term(pid) for pid in self.processes_with(conn, service_id, key, text)])
        sql, params = plan_find(service_id, query)
        limit = query.limit if query.limit > 0 else None
        found: Dict[bytes, None] = {}
        for hour in hours_in(conn, query.start_min_us, query.start_max_us):
            params[0] = match_in_hour(conditions, service_id, hour)
            cursor = conn.execute(sql, params)
            try:
                for (trace,) in cursor:
                    if trace not in found:
                        found[trace] = None
                        if limit is not None and len(found) >= limit:
                            return [trace_id_of(key) for key in found]
            finally:
                cursor.close()
        return [trace_id_of(key) for key in found]

    def dependencies(self, conn: sqlite3.Connection, end_us: int,
                     lookback_us: int) -> List[Tuple[str, str, int]]:
        """(parent service, child service, calls) from the spans started in the window.

        An edge is a span whose parent span (also in the window) belongs to another service.
        Zipkin shared spans can store the client and the server side under one span id; a
        child whose parent id also names a span of its own service hangs under that local
        span, so it is no edge.
        """
        start_us = end_us - lookback_us
        if start_us > end_us:
            return []
        rows: List[tuple] = []
        for hour in hours_in(conn, start_us, end_us):
            rows += conn.execute(
                "SELECT s.trace_id, s.span_id, s.parent_id, s.service_id FROM span_terms f "
                "CROSS JOIN spans s ON s.id = f.rowid WHERE span_terms MATCH ? "
                "AND s.start_time >= ? AND s.start_time <= ?",
                ('"%s"' % hour_term(hour), start_us, end_us)).fetchall()
        services_of: Dict[Tuple[bytes, int], Set[int]] = {}
        for trace, span_id, _, service_id in rows:
            services_of.setdefault((trace, span_id), set()).add(service_id)
        calls: Dict[Tuple[int, int], Set[Tuple[bytes, int, int]]] = {}
        for trace, span_id, parent_id, service_id in rows:
            parents = services_of.get((trace, parent_id)) if parent_id else None
            if not parents or service_id in parents:
                continue
            for parent_service in parents:
                # A set of child spans: a span stored twice is one call.
                calls.setdefault((parent_service, service_id), set()).add(
                    (trace, span_id, service_id))
        names = dict(conn.execute("SELECT id, name FROM services"))
        return sorted((names[parent], names[child], len(children))
                      for (parent, child), children in calls.items())


def _empty_range(low: Optional[int], high: Optional[int]) -> bool:
    return low is not None and high is not None and high < low


def plan_find(service_id: int, query: TraceQuery) -> Tuple[str, list]:
    """The SQL and parameters of one hour of a trace search: rows ``(trace_id,)``, newest first.

    ``params[0]`` is the ``MATCH`` expression, set per hour by ``match_in_hour`` (here: the
    newest hour of the window, process tags not expanded). FTS5 finds the spans with every
    term, so the index itself answers "ONE span with all the tags"; the spans rows are read
    by primary key for the exact window, the durations and the order within the hour.
    """
    # CROSS JOIN keeps the term index as the outer loop (SQLite never reorders it).
    sql = ("SELECT s.trace_id FROM span_terms f CROSS JOIN spans s ON s.id = f.rowid "
           "WHERE span_terms MATCH ? AND s.service_id = ?")
    params: list = [match_in_hour(match_conditions(service_id, query), service_id,
                                  hour_of(query.start_max_us or 0)), service_id]
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
    return sql + " ORDER BY s.start_time DESC, s.id DESC", params


def match_conditions(service_id: int, query: TraceQuery,
                     processes_with: Callable[[str, str], List[str]] = lambda key, text: []
                     ) -> List[str]:
    """The FTS5 sub-expressions a matching span satisfies, one per tag and the operation.

    A tag matches the span's own tag or log field term, or the term of a process having the
    tag (``processes_with(key, text)`` gives those terms).
    """
    conditions = []
    for key, value in query.tags.items():
        text = _query_string(value)
        # Quoted: each term is a phrase of one token.
        quoted = ['"%s"' % term for term in [tag_term(service_id, key, text)]
                  + list(processes_with(key, text))]
        conditions.append(quoted[0] if len(quoted) == 1 else "(%s)" % " OR ".join(quoted))
    if query.operation is not None:
        conditions.append('"%s"' % operation_term(service_id, query.operation))
    return conditions


def match_in_hour(conditions: Sequence[str], service_id: int, hour: int) -> str:
    """The ``MATCH`` expression of the spans meeting ``conditions`` that started in ``hour``
    (the service's hour term alone when no condition names the service)."""
    if conditions:
        return " AND ".join(list(conditions) + ['"%s"' % hour_term(hour)])
    return '"%s"' % service_hour_term(service_id, hour)


def hours_in(conn: sqlite3.Connection, start_min_us: Optional[int],
             start_max_us: Optional[int]) -> List[int]:
    """The hours that have spans within the window (open ends allowed), newest first."""
    low = hour_of(start_min_us) if start_min_us is not None else 0
    if start_max_us is None:
        rows = conn.execute("SELECT hour FROM span_hours WHERE hour >= ? ORDER BY hour DESC",
                            (low,))
    else:
        rows = conn.execute("SELECT hour FROM span_hours WHERE hour >= ? AND hour <= ? "
                            "ORDER BY hour DESC", (low, hour_of(start_max_us)))
    return [row[0] for row in rows]
