"""The local store's write path: batches of model spans into one SQLite transaction each.

Hot loop: the store must take well over 50 000 spans/s on two cores, so the per-span work is
one pass over tags and log fields with local names, and everything that repeats (service,
process and operation rows, index terms of common tag values) is resolved once and cached.
When built, the C ``Preparer`` (``_cstore.c``, see ``store_accel``) runs that loop for the
spans the receivers produce (about 2 us instead of 10 per span) and hands any other span to
the Python loop, which stays the reference: both give the same rows byte for byte.

Duplicates: a span is identified by (trace id, span id, service, span kind). The writer
remembers the keys of the spans it wrote most recently (``DEDUPE_WINDOW``, seeded from the
file's newest rows on the first write) and skips a span it remembers. At-least-once delivery
re-sends within seconds (a client's retry, a sink's retried batch), well inside the window; a
later re-delivery is stored twice and the read path returns it once. An exact check against
the whole file would need a B-tree index on trace ids, which costs a quarter of the
throughput (random page writes on every commit).
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Dict, List, Sequence, Set, Tuple

from . import store_accel
from .model import BOOL, STRING, Log, Process, Span, Tag
from .store_codec import (
    HOUR_US,
    decode_body,
    encode_body,
    encode_tags,
    hour_of,
    hour_term,
    operation_term,
    process_term,
    search_string,
    span_time_terms,
    tag_term_prefix,
    term_part,
    unsigned64,
)

_U64 = 1 << 64
_I64 = 1 << 63
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
#: SQLite before 3.32 allows 999 bound parameters per statement.
_CHUNK = 500
#: Bounds of the caches: a misbehaving client (a uuid in every operation name, tag value or
#: process tag) must not grow the writer's memory without limit; a cleared cache only costs
#: recomputation.
_MAX_CACHED = 100_000
#: The writer remembers between one and two generations of this many span keys (as hashes,
#: about 50 bytes each).
DEDUPE_WINDOW = 100_000
#: WAL pages between automatic checkpoints on the writer (SQLite's default is 1000): a
#: checkpoint copies pages back and syncs the file, and rarer ones measured 5-10% faster
#: writes. The WAL file grows to about this many 4 KiB pages (32 MiB) before it is reused.
WAL_AUTOCHECKPOINT_PAGES = 8192

_INSERT_SPAN = ("INSERT INTO spans (id, trace_id, span_id, parent_id, service_id, process_id, "
                "operation, kind, start_time, duration, flags, error, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
#: Rows per multi-row INSERT into spans: 76 x 13 values stay under the 999 bound parameters
#: of SQLite before 3.32. One statement per row cost a third more (each execution also
#: rewrites the AUTOINCREMENT counter and releases the GIL around its step).
_ROWS_PER_INSERT = 76
_SPAN_COLUMNS = 13
_INSERT_SPANS = _INSERT_SPAN + ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" * (_ROWS_PER_INSERT - 1)
_INSERT_TERMS = "INSERT INTO span_terms (rowid, terms) VALUES (?, ?)"
_DELETE_TERMS = "INSERT INTO span_terms (span_terms, rowid, terms) VALUES ('delete', ?, ?)"
_INSERT_OPERATION = "INSERT OR IGNORE INTO operations (service_id, name, kind) VALUES (?, ?, ?)"
_KEY_COLUMNS = "trace_id, span_id, service_id, kind"


class _Batch:
    """What one transaction inserts, filled by the C and the Python loop in turn."""

    __slots__ = ("row_id", "rows", "docs", "keys", "batch_keys", "hours", "new_operations",
                 "rejected", "duplicates")

    def __init__(self, row_id: int) -> None:
        self.row_id = row_id
        self.rows: List[object] = []  # the spans rows' values, 13 per row, flat
        self.docs: List[Tuple[int, str]] = []
        self.keys: List[int] = []  # dedupe keys of the rows, in order
        self.batch_keys: Set[int] = set()
        self.hours: Set[int] = set()
        self.new_operations: List[Tuple[int, str, str]] = []
        self.rejected = 0
        self.duplicates = 0


class SpanWriter:
    """Owns the store's one write connection (any thread may call; calls are serialized)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        conn.execute("PRAGMA wal_autocheckpoint = %d" % WAL_AUTOCHECKPOINT_PAGES)
        self._lock = threading.Lock()
        self._services: Dict[str, int] = {}
        # process -> (service id, process id, its index term)
        self._processes: Dict[Process, Tuple[int, int, str]] = {}
        self._operations: Set[Tuple[int, str, str]] = set()
        self._terms: Dict[Tuple[int, str, str], str] = {}
        self._prefixes: Dict[Tuple[int, str], str] = {}
        self._op_terms: Dict[Tuple[int, str], str] = {}
        self._time_terms: Dict[Tuple[int, int], str] = {}
        # hash((trace_key, signed span id, service id, kind)) of recently written spans
        self._recent: Set[int] = set()
        self._older: Set[int] = set()
        self._seeded = False
        #: Spans refused because a field is out of range or of the wrong type.
        self.rejected = 0
        #: Spans skipped because they were written moments ago (re-delivery).
        self.duplicates = 0
        preparer = store_accel.PREPARER
        # The C loop shares the process cache and the operation set with the Python one.
        self._run = (preparer(self._processes, self._resolve_process, self._operations,
                              term_part, _MAX_CACHED).run if preparer is not None else None)

    # -- transactions -------------------------------------------------------------------------

    def write(self, spans: Sequence[Span]) -> int:
        """Store the new spans of ``spans`` in one transaction; the number stored."""
        if not spans:
            return 0
        with self._lock:
            conn = self._conn
            if not self._seeded:
                self._seed(conn)
            # IMMEDIATE takes the write lock up front: the row ids read below stay ours.
            conn.execute("BEGIN IMMEDIATE")
            try:
                keys = self._write(conn, spans)
                conn.execute("COMMIT")
            except BaseException:
                self._rolled_back(conn)
                raise
            # Only committed spans count as written (a retried batch must not be skipped).
            self._remember(keys)
            return len(keys)

    def delete_before(self, start_us: int) -> int:
        """Delete the spans (and their index terms) that started before ``start_us``."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                deleted = self._delete_before(conn, start_us)
                conn.execute("COMMIT")
            except BaseException:
                self._rolled_back(conn)
                raise
            if deleted:
                # Deleted spans must be writable again: remember only what is left.
                self._recent, self._older, self._seeded = set(), set(), False
            return deleted

    def _rolled_back(self, conn: sqlite3.Connection) -> None:
        # Ids cached during the failed transaction were rolled back with it.
        self._services.clear()
        self._processes.clear()
        self._operations.clear()
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _seed(self, conn: sqlite3.Connection) -> None:
        """Remember the newest rows of the file, so a restart does not forget them."""
        rows = conn.execute("SELECT %s FROM spans ORDER BY id DESC LIMIT ?" % _KEY_COLUMNS,
                            (DEDUPE_WINDOW,))
        # Rows are plain tuples equal to the writer's keys, so their hashes are too.
        self._recent = {hash(row) for row in rows}
        self._seeded = True

    def _remember(self, keys: List[int]) -> None:
        self._recent.update(keys)
        if len(self._recent) >= DEDUPE_WINDOW:
            self._older, self._recent = self._recent, set()

    # -- the hot path -------------------------------------------------------------------------

    def _write(self, conn: sqlite3.Connection, spans: Sequence[Span]) -> List[int]:
        """Insert the new spans; the dedupe keys of those inserted."""
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spans'").fetchone()
        batch = self._prepare(spans, (row[0] if row else 0) + 1)
        rows = batch.rows
        if rows:
            step = _ROWS_PER_INSERT * _SPAN_COLUMNS
            full = len(rows) - len(rows) % step
            if full:
                conn.executemany(_INSERT_SPANS, [rows[i:i + step] for i in range(0, full, step)])
            if full < len(rows):
                conn.executemany(_INSERT_SPAN, [rows[i:i + _SPAN_COLUMNS]
                                                for i in range(full, len(rows), _SPAN_COLUMNS)])
            conn.executemany(_INSERT_TERMS, batch.docs)
            if batch.new_operations:
                conn.executemany(_INSERT_OPERATION, batch.new_operations)
            # Every batch, not cached: retention (perhaps by another process) removes hours.
            conn.executemany("INSERT OR IGNORE INTO span_hours (hour) VALUES (?)",
                             [(hour,) for hour in batch.hours])
        self.rejected += batch.rejected
        self.duplicates += batch.duplicates
        return batch.keys

    def _prepare(self, spans: Sequence[Span], row_id: int) -> _Batch:
        """The rows, index documents and keys of the new spans, numbered from ``row_id``
        (new processes are stored on the way: call inside the write transaction)."""
        batch = _Batch(row_id)
        run = self._run
        if run is None:
            self._add(batch, spans)
        else:
            if type(spans) is not list and type(spans) is not tuple:
                spans = list(spans)
            index, total = 0, len(spans)
            while True:
                # The C loop stops at a span it leaves to the Python one (odd types, values
                # out of range: the Python code decides what happens to those).
                index, batch.row_id, duplicates = run(
                    spans, index, batch.row_id, self._recent, self._older, batch.batch_keys,
                    batch.rows, batch.docs, batch.keys, batch.hours, batch.new_operations)
                batch.duplicates += duplicates
                if index >= total:
                    break
                self._add(batch, spans[index:index + 1])
                index += 1
        return batch

    def _add(self, batch: _Batch, spans: Sequence[Span]) -> None:
        """The reference loop (pure Python; the C Preparer gives the same for usual spans)."""
        row_id = batch.row_id
        rows, docs, keys = batch.rows, batch.docs, batch.keys
        batch_keys, hours, new_operations = batch.batch_keys, batch.hours, batch.new_operations
        recent, older = self._recent, self._older
        processes = self._processes
        operations = self._operations
        span_doc = self._span_doc
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
                        known = self._resolve_process(process)
                    last_process = process
                service_id, process_id, process_term = known  # type: ignore[misc]
                operation = span.operation_name
                hour = start // HOUR_US if start > 0 else 0  # hour_of, inlined
                doc, kind, error = span_doc(service_id, trace_key, operation, hour, span.tags,
                                            span.logs, process_term)
                if not (operation.isascii() and kind.isascii()):
                    # Lone surrogates (a Zipkin JSON "\ud800") cannot be bound as TEXT: the
                    # span is rejected here rather than the whole batch failing.
                    operation.encode()
                    kind.encode()
                signed_id = span_id - _U64 if span_id >= _I64 else span_id  # signed64
                key = hash((trace_key, signed_id, service_id, kind))
                if key in recent or key in older or key in batch_keys:
                    duplicates += 1
                    continue
                row_values = (row_id, trace_key, signed_id,
                              parent_id - _U64 if parent_id >= _I64 else parent_id, service_id,
                              process_id, operation, kind, start, duration, int(span.flags),
                              error, encode_body(span))
            except (TypeError, ValueError, OverflowError, AttributeError, UnicodeError):
                # One malformed span must not cost the batch: drop it, count it.
                rejected += 1
                last_process = None
                continue
            rows.extend(row_values)
            docs.append((row_id, doc))
            hours.add(hour)
            keys.append(key)
            batch_keys.add(key)
            row_id += 1
            op_key = (service_id, operation, kind)
            if op_key not in operations:
                if len(operations) >= _MAX_CACHED:
                    operations.clear()
                operations.add(op_key)
                new_operations.append(op_key)
        batch.row_id = row_id
        batch.rejected += rejected
        batch.duplicates += duplicates

    def _span_doc(self, service_id: int, trace_key: bytes, operation: str, hour: int,
                  tags: Sequence[Tag], logs: Sequence[Log],
                  process_term: str) -> Tuple[str, str, int]:
        """The span's index document, its span.kind and error flag.

        The one place that builds a document: FTS5 deletes a contentless document only when
        given exactly the terms it was inserted with.
        """
        cache = self._terms
        terms = [process_term]
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
        term = self._op_terms.get((service_id, operation))
        add(term if term is not None else self._op_term(service_id, operation))
        term = self._time_terms.get((service_id, hour))
        add(term if term is not None else self._time_term(service_id, hour))
        add("r" + trace_key.hex())
        return " ".join(terms), kind, error

    def _term(self, service_id: int, key: str, text: str) -> str:
        """A tag term not in the cache: the (service, key) prefix is cached on its own, as
        high-cardinality values (URLs, ids) would only churn the term cache."""
        prefix = self._prefixes.get((service_id, key))
        if prefix is None:
            prefix = tag_term_prefix(service_id, key)
            if len(self._prefixes) >= _MAX_CACHED:
                self._prefixes.clear()
            self._prefixes[(service_id, key)] = prefix
        term = prefix + term_part(text)
        if len(self._terms) >= _MAX_CACHED:
            self._terms.clear()
        self._terms[(service_id, key, text)] = term
        return term

    def _time_term(self, service_id: int, hour: int) -> str:
        term = span_time_terms(service_id, hour)
        if len(self._time_terms) >= _MAX_CACHED:
            self._time_terms.clear()
        self._time_terms[(service_id, hour)] = term
        return term

    def _op_term(self, service_id: int, operation: str) -> str:
        term = operation_term(service_id, operation)
        if len(self._op_terms) >= _MAX_CACHED:
            self._op_terms.clear()
        self._op_terms[(service_id, operation)] = term
        return term

    def _service_id(self, conn: sqlite3.Connection, name: str) -> int:
        conn.execute("INSERT OR IGNORE INTO services (name) VALUES (?)", (name,))
        service_id = conn.execute("SELECT id FROM services WHERE name = ?", (name,)).fetchone()[0]
        if len(self._services) >= _MAX_CACHED:
            self._services.clear()
        self._services[name] = service_id
        return service_id

    def _resolve_process(self, process: Process) -> Tuple[int, int, str]:
        """(service id, process id, index term) of a process not in the cache; stores it
        when new (inside the write transaction)."""
        conn = self._conn
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
        # Spans carry their process's term, not its tags: the reader turns a process tag
        # condition into the terms of the processes that have the tag.
        known = (service_id, process_id, process_term(process_id))
        if len(self._processes) >= _MAX_CACHED:
            self._processes.clear()
        self._processes[process] = known
        return known

    # -- retention ----------------------------------------------------------------------------

    def _delete_before(self, conn: sqlite3.Connection, start_us: int) -> int:
        # Hour by hour: memory stays at one hour's row ids however much is deleted.
        cut_hour = hour_of(start_us)
        hours = [row[0] for row in conn.execute(
            "SELECT hour FROM span_hours WHERE hour <= ? ORDER BY hour", (cut_hour,))]
        deleted = 0
        for hour in hours:
            ids = [row[0] for row in conn.execute(
                "SELECT s.id FROM span_terms f CROSS JOIN spans s ON s.id = f.rowid "
                "WHERE span_terms MATCH ? AND s.start_time < ?",
                ('"%s"' % hour_term(hour), start_us))]
            for first in range(0, len(ids), _CHUNK):
                chunk = ids[first:first + _CHUNK]
                rows = conn.execute(
                    "SELECT id, trace_id, parent_id, service_id, process_id, operation, "
                    "start_time, body FROM spans WHERE id IN (%s)" % ",".join("?" * len(chunk)),
                    chunk).fetchall()
                deleted += self._delete_rows(conn, rows)
        # Hours before the cut's hour are empty now; the cut's hour may keep later spans.
        conn.execute("DELETE FROM span_hours WHERE hour < ?", (cut_hour,))
        return deleted

    def _delete_rows(self, conn: sqlite3.Connection, rows: List[tuple]) -> int:
        docs = []
        for row_id, trace_key, parent_id, service_id, process_id, operation, start, body in rows:
            tags, logs, _ = decode_body(body, int.from_bytes(trace_key, "big"),
                                        unsigned64(parent_id))
            doc, _, _ = self._span_doc(service_id, trace_key, operation, hour_of(start), tags,
                                       logs, process_term(process_id))
            docs.append((row_id, doc))
        conn.executemany(_DELETE_TERMS, docs)
        conn.executemany("DELETE FROM spans WHERE id = ?", [(doc[0],) for doc in docs])
        return len(docs)
