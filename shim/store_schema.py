"""The local span store's SQLite schema: DDL, version checks and connection settings.

The layout follows the queries of the Jaeger query API (``shared/reference/query-api-and-zipkin.md``
sections 1 and 3) and the write budget (well over 50 000 spans/s from one Python thread):

- ``spans``: one row per span, in arrival order: the columns searches filter on, plus ``body``
  (tags, logs, references as compact JSON) from which the exact model span is rebuilt.
- ``span_terms``: an FTS5 inverted index with one document per span (rowid = ``spans.id``).
  Its terms say "trace T", "started in hour H", "service S started it in hour H", "process
  P", "service S has operation O" and "service S, key K, value V" for every span tag and log
  field (the encoding is in ``store_codec``); a process tag condition becomes "process P1 or
  P2 ..." over the processes that have the tag. A search is one ``MATCH`` of AND-ed terms per
  hour of the window, newest hour first, so "ONE span of S, in this hour, with all the tags"
  is answered by the index itself and the search stops at the hour that completes its limit.

  Why not B-tree indexes: their keys (trace ids, tag values) are random, so every batch
  dirties one page per distinct key and a commit writes them all to the WAL. FTS5 writes each
  transaction's terms as one small sorted segment and merges segments incrementally (an LSM).
  Measured on 2 cores with 500-span batches: one row per tag in a ``(key, value, ...)`` table
  capped the store at 16 000-23 000 spans/s; a B-tree index on ``trace_id`` alone cost a
  quarter of the throughput of the final layout.
- ``span_hours``: the hours that have spans, so a search visits only those.
- ``processes``: a process (service name and tags) is stored once; spans point at it.
- ``services`` / ``operations``: kept on write so the service and operation lists are instant.
"""

from __future__ import annotations

import os
import sqlite3
from typing import List, Optional, Tuple

#: Bumped on every incompatible layout change; stored in ``PRAGMA user_version``.
# 2: FTS5 term index with per-hour partitions (version 1 was a pre-release layout).
SCHEMA_VERSION = 2
#: ``PRAGMA application_id`` of a span store ("OTSL"), so a foreign SQLite file is refused.
APPLICATION_ID = 0x4F54534C
#: How long a connection waits for another connection's lock before "database is locked".
BUSY_TIMEOUT_MS = 10_000

SCHEMA = """
CREATE TABLE services (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE operations (
    service_id INTEGER NOT NULL,
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,            -- the span.kind tag, '' when absent
    PRIMARY KEY (service_id, name, kind)
) WITHOUT ROWID;
CREATE TABLE processes (
    id         INTEGER PRIMARY KEY,
    service_id INTEGER NOT NULL,
    tags       TEXT NOT NULL,            -- JSON [[key, type, value], ...], binary as base64
    UNIQUE (service_id, tags)
);
CREATE TABLE spans (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: span_terms rows name it
    trace_id   BLOB NOT NULL,            -- 16 bytes, big-endian: hex(trace_id) is the id
    span_id    INTEGER NOT NULL,         -- the unsigned 64-bit id as a signed int64
    parent_id  INTEGER NOT NULL,         -- likewise; 0 for a root
    service_id INTEGER NOT NULL,
    process_id INTEGER NOT NULL,
    operation  TEXT NOT NULL,
    kind       TEXT NOT NULL,            -- the span.kind tag, '' when absent
    start_time INTEGER NOT NULL,         -- µs since the epoch
    duration   INTEGER NOT NULL,         -- µs
    flags      INTEGER NOT NULL,
    error      INTEGER NOT NULL,         -- 1 when the span has the tag error=true
    body       TEXT NOT NULL             -- JSON [tags, logs(, references)], see store_codec
);
-- Contentless (the terms are not stored twice), no positions (terms are matched whole).
CREATE VIRTUAL TABLE span_terms USING fts5 (
    terms, content='', columnsize=0, detail=none, tokenize='ascii'
);
CREATE TABLE span_hours (
    hour INTEGER PRIMARY KEY             -- start_time // 3600e6 (0 for earlier starts)
);
-- For people exploring the file with the sqlite3 shell.
CREATE VIEW span_view AS
SELECT lower(hex(s.trace_id)) AS trace_id, printf('%016x', s.span_id) AS span_id,
       printf('%016x', s.parent_id) AS parent_id, v.name AS service, s.operation, s.kind,
       s.start_time, s.duration, s.flags, s.error, s.body
FROM spans s JOIN services v ON v.id = s.service_id;
"""


class StoreError(Exception):
    """The file cannot be used as a span store (missing, foreign, newer schema, corrupt)."""


def connect(path: str, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with the store's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute("PRAGMA busy_timeout = %d" % BUSY_TIMEOUT_MS)
        # NORMAL is durable across application crashes in WAL mode; only a power loss can
        # drop the last transactions, which an at-least-once span pipeline tolerates.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA temp_store = MEMORY")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError("%s is not a span store: %s" % (path, exc)) from None
    return conn


def ensure_schema(conn: sqlite3.Connection, path: str, *, create: bool) -> None:
    """Check the file's schema version; create the schema in an empty file when ``create``.

    Idempotent and safe when two processes open a new file at once: the check and the creation
    run in one write transaction.
    """
    try:
        version, app_id = _versions(conn)
        if version == SCHEMA_VERSION and app_id == APPLICATION_ID:
            _enable_wal(conn)
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version, app_id = _versions(conn)
            problem = _check(conn, version, app_id, path, create)
            if problem is None and version == 0:
                for statement in _statements(SCHEMA):
                    conn.execute(statement)
                conn.execute("PRAGMA application_id = %d" % APPLICATION_ID)
                conn.execute("PRAGMA user_version = %d" % SCHEMA_VERSION)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if problem is not None:
            raise StoreError(problem)
        _enable_wal(conn)
    except sqlite3.OperationalError as exc:
        if "fts5" in str(exc):
            raise StoreError("the SQLite library of this Python has no FTS5 module, which the "
                             "span store needs (%s)" % exc) from None
        raise StoreError("%s is not a span store: %s" % (path, exc)) from None
    except sqlite3.DatabaseError as exc:
        raise StoreError("%s is not a span store: %s" % (path, exc)) from None


def _versions(conn: sqlite3.Connection) -> Tuple[int, int]:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    return version, app_id


def _check(conn: sqlite3.Connection, version: int, app_id: int, path: str,
           create: bool) -> Optional[str]:
    """Why the file cannot be used, or None."""
    if version == 0 and app_id == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            return "%s is an SQLite file but not a span store (it has other tables)" % path
        if not create:
            return "%s is not a span store (the file is empty)" % path
        return None
    if app_id != APPLICATION_ID:
        return "%s is an SQLite file of another application (application_id %#x)" % (path,
                                                                                       app_id)
    if version > SCHEMA_VERSION:
        return ("%s has span store schema version %d; this version of opentracing-sls reads "
                "up to %d: upgrade opentracing-sls" % (path, version, SCHEMA_VERSION))
    return ("%s has span store schema version %d, an older layout this version cannot read; "
            "move the file away to start a new store" % (path, version))


def _enable_wal(conn: sqlite3.Connection) -> None:
    # WAL lets readers run while the single writer commits; the mode is stored in the file.
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if mode.lower() != "wal":
        conn.execute("PRAGMA journal_mode = WAL")


def _statements(script: str) -> List[str]:
    """The DDL as single statements (``executescript`` would commit our transaction)."""
    statements = []
    current: List[str] = []
    for line in script.splitlines():
        code = line.split("--", 1)[0].rstrip()
        if not code:
            continue
        current.append(code)
        if code.endswith(";"):
            statements.append("\n".join(current))
            current = []
    return statements


def check_path(path: str, create: bool) -> None:
    """Raise StoreError for a path that cannot hold a store before SQLite invents one."""
    if path == ":memory:" or path.startswith("file:"):
        # Readers use their own connections: a private in-memory database would be invisible
        # to them, and URIs would bypass the checks below.
        raise StoreError("the span store needs a file path, got %r" % path)
    if not create and not os.path.exists(path):
        raise StoreError("no span store at %s (the file does not exist)" % path)
    if os.path.isdir(path):
        raise StoreError("%s is a directory, not a span store file" % path)
