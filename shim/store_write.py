"""The local store's write path: batches of model spans into one SQLite transaction each.

Hot loop: the store must take well over 50 000 spans/s on two cores, so the per-span work is
one pass over tags and log fields with local names, and everything that repeats (service,
process and operation rows, index terms of common tag values) is resolved once and cached.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Dict, List, Sequence, Set, Tuple

from .model import BOOL, STRING, Log, Process, Span, Tag
from .store_codec import (
    HOUR_US,
    decode_body,
    decode_process,
    encode_body,
    encode_tags,
    hour_term,
    operation_term,
    search_string,
    signed64,
    span_time_terms,
    tag_term,
    unsigned64,
)

_U64 = 1 << 64
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
#: SQLite before 3.32 allows 999 bound parameters per statement.
_CHUNK = 500
#: Bounds of the caches: a misbehaving client (a uuid in every operation name, tag value or
#: process tag) must not grow the writer's memory without limit; a cleared cache only costs
#: recomputation.
_MAX_CACHED = 100_000

_INSERT_SPAN = ("INSERT INTO spans (id, trace_id, span_id, parent_id, service_id, process_id, "
                "operation, kind, start_time, duration, flags, error, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_INSERT_TERMS = "INSERT INTO span_terms (rowid, terms) VALUES (?, ?)"
_DELETE_TERMS = "INSERT INTO span_terms (span_terms, rowid, terms) VALUES ('delete', ?, ?)"
_INSERT_OPERATION = "INSERT OR IGNORE INTO operations (service_id, name, kind) VALUES (?, ?, ?)"

SpanKey = Tuple[bytes, int, int, str]


class SpanWriter:
    """Owns the store's one write connection (any thread may call; calls are serialized)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._services: Dict[str, int] = {}
        # process -> (service id, process id, its index terms joined by spaces)
        self._processes: Dict[Process, Tuple[int, int, str]] = {}
        self._process_terms: Dict[int, str] = {}  # by process id, for deletes
        self._operations: Set[Tuple[int, str, str]] = set()
        self._terms: Dict[Tuple[int, str, str], str] = {}
        self._op_terms: Dict[Tuple[int, str], str] = {}
        self._time_terms: Dict[Tuple[int, int], str] = {}
        #: Spans refused because a field is out of range or of the wrong type.
        self.rejected = 0
        #: Spans skipped because the store already had them (re-delivery).
        self.duplicates = 0

    # -- transactions -------------------------------------------------------------------------

    def write(self, spans: Sequence[Span]) -> int:
        """Store the new spans of ``spans`` in one transaction; the number stored."""
        if not spans:
            return 0
        return self._transaction(self._write, spans)

    def delete_before(self, start_us: int) -> int:
        """Delete the spans (and their index terms) that started before ``start_us``."""
        return self._transaction(self._delete_before, start_us)

    def _transaction(self, work, arg):  # type: ignore[no-untyped-def]
        with self._lock:
            conn = self._conn
            # IMMEDIATE takes the write lock up front, so the duplicate check and the row
            # ids below cannot race another writer process on the same file.
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn, arg)
                conn.execute("COMMIT")
            except BaseException:
                # Ids cached during the failed transaction were rolled back with it.
                self._forget()
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise
            return result

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _forget(self) -> None:
        self._services.clear()
        self._processes.clear()
        self._process_terms.clear()
        self._operations.clear()

    # -- the hot path -------------------------------------------------------------------------

    def _write(self, conn: sqlite3.Connection, spans: Sequence[Span]) -> int:
        existing = self._existing_keys(conn, spans)
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spans'").fetchone()
        row_id = (row[0] if row else 0) + 1
        rows: List[tuple] = []
        docs: List[Tuple[int, str]] = []
        new_operations: List[Tuple[int, str, str]] = []
        processes = self._processes
        operations = self._operations
        op_terms = self._op_terms
        time_terms = self._time_terms
        span_terms = self._span_terms
        rejected = duplicates = 0
        last_process = known = None
        for span in spans:
            try:
                trace_id, span_id, parent_id = span.trace_id, span.span_id, span.parent_id
                start, duration = span.start_time, span.duration
                if not (0 <= span_id < _U64 and 0 <= parent_id < _U64
                        and _I64_MIN <= start <= _I64_MAX and _I64_MIN <= duration <= _I64_MAX):
                    rejected += 1
                    continue
                trace_key = trace_id.to_bytes(16, "big")
                process = span.process
                # Receivers share one Process object across a packet's spans: skip the hash.
                if process is not last_process:
                    known = processes.get(process)
                    if known is None:
                        known = self._process(conn, process)
                    last_process = process
                service_id, process_id, process_terms = known  # type: ignore[misc]
                terms, kind, error = span_terms(service_id, span.tags, span.logs)
                span_key = (trace_key, signed64(span_id), service_id, kind)
                if span_key in existing:
                    duplicates += 1
                    continue
                body = encode_body(span)
                flags = int(span.flags)
                operation = span.operation_name
                op_term = op_terms.get((service_id, operation))
                if op_term is None:
                    op_term = self._op_term(service_id, operation)
                when = time_terms.get((service_id, start // HOUR_US))
                if when is None:
                    when = self._time_term(service_id, start)
                existing.add(span_key)
                op_key = (service_id, operation, kind)
                if op_key not in operations:
                    if len(operations) >= _MAX_CACHED:
                        operations.clear()
                    operations.add(op_key)
                    new_operations.append(op_key)
                rows.append((row_id, trace_key, span_key[1], signed64(parent_id), service_id,
                             process_id, operation, kind, start, duration, flags, error, body))
                terms.append(op_term)
                terms.append(when)
                terms.append(process_terms)
                docs.append((row_id, " ".join(terms)))
                row_id += 1
            except (TypeError, ValueError, OverflowError, AttributeError, UnicodeError):
                # One malformed span must not cost the batch: drop it, count it.
                rejected += 1
                last_process = None
        if rows:
            conn.executemany(_INSERT_SPAN, rows)
            conn.executemany(_INSERT_TERMS, docs)
            if new_operations:
                conn.executemany(_INSERT_OPERATION, new_operations)
        self.rejected += rejected
        self.duplicates += duplicates
        return len(rows)

    def _span_terms(self, service_id: int, tags: Sequence[Tag],
                    logs: Sequence[Log]) -> Tuple[List[str], str, int]:
        """Index terms of the span's tags and log fields, its span.kind and error flag."""
        cache = self._terms
        terms: List[str] = []
        add = terms.append
        kind = ""
        error = 0
        for key, tag_type, value in tags:
            if tag_type == STRING and value.__class__ is str:
                text = value
                if key == "span.kind" and not kind:
                    kind = value
            elif tag_type == BOOL:
                text = "true" if value else "false"
            else:
                text = search_string(tag_type, value)
            if key == "error" and text == "true":
                error = 1
            term = cache.get((service_id, key, text))
            add(term if term is not None else self._term(service_id, key, text))
        for log in logs:
            for key, tag_type, value in log.fields:
                text = (value if tag_type == STRING and value.__class__ is str
                        else search_string(tag_type, value))
                term = cache.get((service_id, key, text))
                add(term if term is not None else self._term(service_id, key, text))
        return terms, kind, error

    def _term(self, service_id: int, key: str, text: str) -> str:
        term = tag_term(service_id, key, text)
        if len(self._terms) >= _MAX_CACHED:
            self._terms.clear()
        self._terms[(service_id, key, text)] = term
        return term

    def _time_term(self, service_id: int, start: int) -> str:
        term = span_time_terms(service_id, start)
        if len(self._time_terms) >= _MAX_CACHED:
            self._time_terms.clear()
        self._time_terms[(service_id, start // HOUR_US)] = term
        return term

    def _op_term(self, service_id: int, operation: str) -> str:
        term = operation_term(service_id, operation)
        if len(self._op_terms) >= _MAX_CACHED:
            self._op_terms.clear()
        self._op_terms[(service_id, operation)] = term
        return term

    @staticmethod
    def _existing_keys(conn: sqlite3.Connection, spans: Sequence[Span]) -> Set[SpanKey]:
        """Idempotency keys already stored for the traces of this batch."""
        trace_keys = set()
        for span in spans:
            try:
                trace_keys.add(span.trace_id.to_bytes(16, "big"))
            except (AttributeError, OverflowError, TypeError):
                pass  # rejected in the main loop
        keys: Set[SpanKey] = set()
        ordered = list(trace_keys)
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start:start + _CHUNK]
            keys.update(conn.execute(
                "SELECT trace_id, span_id, service_id, kind FROM spans WHERE trace_id IN (%s)"
                % ",".join("?" * len(chunk)), chunk))
        return keys

    def _service_id(self, conn: sqlite3.Connection, name: str) -> int:
        conn.execute("INSERT OR IGNORE INTO services (name) VALUES (?)", (name,))
        service_id = conn.execute("SELECT id FROM services WHERE name = ?", (name,)).fetchone()[0]
        if len(self._services) >= _MAX_CACHED:
            self._services.clear()
        self._services[name] = service_id
        return service_id

    def _process(self, conn: sqlite3.Connection, process: Process) -> Tuple[int, int, str]:
        service_id = self._services.get(process.service_name)
        if service_id is None:
            service_id = self._service_id(conn, process.service_name)
        tags = encode_tags(process.tags)
        row = conn.execute("SELECT id FROM processes WHERE service_id = ? AND tags = ?",
                           (service_id, tags)).fetchone()
        if row is None:
            process_id = conn.execute("INSERT INTO processes (service_id, tags) VALUES (?, ?)",
                                      (service_id, tags)).lastrowid
        else:
            process_id = row[0]
        known = (service_id, process_id, self._terms_of_process(service_id, process))
        if len(self._processes) >= _MAX_CACHED:
            self._processes.clear()
            self._process_terms.clear()
        self._processes[process] = known
        self._process_terms[process_id] = known[2]
        return known

    def _terms_of_process(self, service_id: int, process: Process) -> str:
        terms, _, _ = self._span_terms(service_id, process.tags, ())
        return " ".join(terms)

    # -- retention ----------------------------------------------------------------------------

    def _delete_before(self, conn: sqlite3.Connection, start_us: int) -> int:
        # Every hour before the cut that has spans, from the term vocabulary, then the spans
        # of each hour: memory stays at one hour's row ids however much is deleted.
        hours = [row[0] for row in conn.execute(
            "SELECT term FROM span_vocab WHERE term >= 'h' AND term <= ?",
            (hour_term(max(start_us, 0) // HOUR_US),))]
        deleted = 0
        for hour in hours:
            ids = [row[0] for row in conn.execute(
                "SELECT s.id FROM span_terms f CROSS JOIN spans s ON s.id = f.rowid "
                "WHERE span_terms MATCH ? AND s.start_time < ?", ('"%s"' % hour, start_us))]
            for first in range(0, len(ids), _CHUNK):
                chunk = ids[first:first + _CHUNK]
                rows = conn.execute(
                    "SELECT id, trace_id, parent_id, service_id, process_id, operation, "
                    "start_time, body FROM spans WHERE id IN (%s)" % ",".join("?" * len(chunk)),
                    chunk).fetchall()
                deleted += self._delete_rows(conn, rows)
        return deleted

    def _delete_rows(self, conn: sqlite3.Connection, rows: List[tuple]) -> int:
        docs = []
        for row_id, trace_key, parent_id, service_id, process_id, operation, start, body in rows:
            # FTS5 forgets a contentless document only when given its exact terms again.
            tags, logs, _ = decode_body(body, int.from_bytes(trace_key, "big"),
                                        unsigned64(parent_id))
            terms, _, _ = self._span_terms(service_id, tags, logs)
            terms.append(operation_term(service_id, operation))
            terms.append(span_time_terms(service_id, start))
            terms.append(self._terms_of_process_id(conn, process_id))
            docs.append((row_id, " ".join(terms)))
        conn.executemany(_DELETE_TERMS, docs)
        conn.executemany("DELETE FROM spans WHERE id = ?", [(doc[0],) for doc in docs])
        return len(docs)

    def _terms_of_process_id(self, conn: sqlite3.Connection, process_id: int) -> str:
        terms = self._process_terms.get(process_id)
        if terms is None:
            service_id, service, tags = conn.execute(
                "SELECT p.service_id, v.name, p.tags FROM processes p "
                "JOIN services v ON v.id = p.service_id WHERE p.id = ?", (process_id,)).fetchone()
            terms = self._terms_of_process(service_id, decode_process(service, tags))
            self._process_terms[process_id] = terms
        return terms
