"""The embedded span store: model spans in one SQLite file, read by the query API and the CLI.

One writer connection (the sink's worker thread writes batches through it) and a small pool
of read connections; the file is in WAL mode, so searches run while batches commit. The
schema and the reasons for it are in ``store_schema``, the value encoding in ``store_codec``,
the write path (and how re-delivered spans are recognised) in ``store_write``, the queries in
``store_read``.

A span is identified by (trace id, span id, service, span kind). Service and kind are part of
the key because Zipkin's shared spans give the client and the server side of one call the same
span id (the Zipkin receivers give the server side its own id, but other producers may not):
both sides are kept.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .model import Span
from .store_read import SpanReader, TraceQuery, hours_in
from .store_schema import StoreError, check_path, connect, ensure_schema
from .store_stats import OperationStats, operation_stats
from .store_write import SpanWriter

__all__ = ["LocalStore", "OperationStats", "StoreError", "TraceQuery"]

#: Idle read connections kept for reuse; more may be open while many threads read at once.
_IDLE_READERS = 4


class LocalStore:
    """A span store in the SQLite file ``path``.

    ``create=False`` refuses a missing or empty file instead of creating a store (the CLI
    reads only). Raises ``StoreError`` for a file that is not a usable span store.
    """

    def __init__(self, path: str, *, create: bool = True) -> None:
        check_path(path, create)
        self.path = path
        try:
            conn = connect(path, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError("cannot open span store %s: %s" % (path, exc)) from None
        try:
            ensure_schema(conn, path, create=create)
        except BaseException:
            conn.close()
            raise
        self._writer = SpanWriter(conn)
        self._reader = SpanReader()
        self._idle: List[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._closed = False

    # -- writing ------------------------------------------------------------------------------

    def write_spans(self, spans: Sequence[Span]) -> int:
        """Store a batch in one transaction; the number of spans newly stored.

        A re-delivered span (same trace id, span id, service and kind as one of the last
        100 000 or more spans written) is skipped; malformed spans (ids or times out of range,
        unserializable tag values) are dropped. Both are counted, in ``duplicates`` and
        ``rejected``.
        """
        self._check_open()
        return self._writer.write(spans)

    @property
    def duplicates(self) -> int:
        """Re-delivered spans skipped since the store was opened."""
        return self._writer.duplicates

    @property
    def rejected(self) -> int:
        """Malformed spans dropped since the store was opened."""
        return self._writer.rejected

    def delete_before(self, start_us: int) -> int:
        """Retention: delete the spans that started before ``start_us``; the number deleted.

        Costs about as much per span as writing it. Services, operations and processes are
        kept.
        """
        self._check_open()
        return self._writer.delete_before(start_us)

    # -- reading ------------------------------------------------------------------------------

    def services(self) -> List[str]:
        """Every service name, sorted."""
        with self._reading() as conn:
            return self._reader.services(conn)

    def operations(self, service: str,
                   span_kind: Optional[str] = None) -> List[Tuple[str, str]]:
        """(operation name, span kind) of ``service``, sorted; ``span_kind`` filters.

        The kind is the ``span.kind`` tag (``server``, ``client``, ...) or ``""`` when absent.
        """
        with self._reading() as conn:
            return self._reader.operations(conn, service, span_kind)

    def get_trace(self, trace_id: int) -> List[Span]:
        """All spans of a trace in start-time order; an empty list for an unknown id."""
        return self.get_traces([trace_id]).get(trace_id, [])

    def get_traces(self, trace_ids: Iterable[int]) -> Dict[int, List[Span]]:
        """The spans of each known trace id; unknown ids are absent from the result."""
        ids = list(trace_ids)
        for trace_id in ids:
            if not 0 <= trace_id < 1 << 128:
                raise ValueError("a trace id is an unsigned 128-bit integer, got %r"
                                 % (trace_id,))
        with self._reading() as conn:
            return self._reader.get_traces(conn, ids)

    def find_trace_ids(self, query: TraceQuery) -> List[int]:
        """Ids of the traces matching ``query``, newest matching span first."""
        with self._reading() as conn:
            return self._reader.find_trace_ids(conn, query)

    def find_traces(self, query: TraceQuery) -> List[List[Span]]:
        """The full traces matching ``query``, in ``find_trace_ids`` order."""
        with self._reading() as conn:
            ids = self._reader.find_trace_ids(conn, query)
            traces = self._reader.get_traces(conn, ids)
        return [traces[trace_id] for trace_id in ids if trace_id in traces]

    def dependencies(self, end_us: int, lookback_us: int) -> List[Tuple[str, str, int]]:
        """(parent service, child service, call count) for spans started in
        ``[end_us - lookback_us, end_us]``, sorted by service names."""
        with self._reading() as conn:
            return self._reader.dependencies(conn, end_us, lookback_us)

    def operation_stats(self, service: Optional[str], start_us: int,
                        end_us: int) -> List[OperationStats]:
        """Count, errors and p50/p99/max duration per (service, operation, span kind) of the
        spans started in ``[start_us, end_us]``; every service when ``service`` is None."""
        with self._reading() as conn:
            return operation_stats(conn, service, start_us, end_us,
                                   hours_in(conn, start_us, end_us))

    def span_count(self) -> int:
        """The number of stored span rows (a span re-delivered long after it was first
        written is stored, and counted, twice)."""
        with self._reading() as conn:
            return conn.execute("SELECT count(*) FROM spans").fetchone()[0]

    # -- connections --------------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A read connection inside one read transaction (one consistent snapshot)."""
        self._check_open()
        with self._pool_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = connect(self.path, check_same_thread=False)
            # A reader must never take the write lock by accident.
            conn.execute("PRAGMA query_only = ON")
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        with self._pool_lock:
            if not self._closed and len(self._idle) < _IDLE_READERS:
                self._idle.append(conn)
                conn = None
        if conn is not None:
            conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the span store %s is closed" % self.path)

    def close(self) -> None:
        """Close every connection; idempotent. Reads still running finish on their own."""
        with self._pool_lock:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        self._writer.close()

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "LocalStore(%r)" % self.path
