"""The local span store: exact round trips, idempotent writes, lists, retention, file checks."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Sequence

import pytest

from opentracing_sls.shim.model import (
    BINARY,
    BOOL,
    CHILD_OF,
    DOUBLE,
    FOLLOWS_FROM,
    LONG,
    STRING,
    Log,
    Process,
    Reference,
    Span,
    Tag,
)
from opentracing_sls.shim.store import LocalStore, StoreError, TraceQuery
from opentracing_sls.shim.store_schema import APPLICATION_ID, SCHEMA_VERSION

# Every test twice: rows prepared by the Python loop and by the C one.
pytestmark = pytest.mark.usefixtures("store_backend")

T0 = 1_700_000_000_000_000
FRONTEND = Process("frontend", (Tag("hostname", STRING, "web-1"), Tag("ip", LONG, 167772161)))
BACKEND = Process("backend", ())


def make_span(trace_id: int, span_id: int, parent_id: int = 0, operation: str = "op",
              start: int = T0, duration: int = 1000, tags: Sequence[Tag] = (),
              logs: Sequence[Log] = (), process: Process = FRONTEND,
              references: Sequence[Reference] = None, flags: int = 1) -> Span:
    """A model span; references default to the CHILD_OF its parent implies."""
    if references is None:
        references = (Reference(CHILD_OF, trace_id, parent_id),) if parent_id else ()
    return Span(trace_id, span_id, parent_id, operation, flags, start, duration, tuple(tags),
                tuple(logs), tuple(references), process)


@pytest.fixture()
def store(tmp_path: Path):
    with LocalStore(str(tmp_path / "spans.db")) as opened:
        yield opened


def value_types(spans: Sequence[Span]) -> list:
    """The Python type of every tag, log field and process tag value (== ignores bool/int)."""
    out = []
    for span in spans:
        out += [type(tag.value) for tag in span.tags + span.process.tags]
        out += [type(field.value) for log in span.logs for field in log.fields]
    return out


def test_every_field_round_trips_exactly(store: LocalStore) -> None:
    trace = (0xFEDC_BA98_7654_3210 << 64) | 0x0123_4567_89AB_CDEF  # 128 bits, high bit set
    root_id = (1 << 64) - 1  # >= 2**63: negative as an int64 in SQLite
    child_id = 1 << 63
    process = Process("frontend ü", (Tag("hostname", STRING, "web-1"), Tag("ip", LONG, -1),
                                     Tag("up", BOOL, True), Tag("blob", BINARY, b"\x00\xff"),
                                     Tag("load", DOUBLE, 0.25)))
    root = make_span(trace, root_id, 0, "GET /items/{id}", start=T0, duration=12_345, tags=(
        Tag("span.kind", STRING, "server"), Tag("http.status_code", LONG, 200),
        Tag("big", LONG, (1 << 63) - 1), Tag("small", LONG, -(1 << 63)),
        Tag("error", BOOL, False), Tag("ratio", DOUBLE, -0.0), Tag("huge", DOUBLE, 1e300),
        Tag("bytes", BINARY, bytes(range(256))), Tag("empty", STRING, ""),
        Tag("unicode", STRING, "日本\n\"quoted\"")), logs=(
        Log(T0 + 5, (Tag("event", STRING, "cache miss"), Tag("size", LONG, 3))),
        Log(T0 + 9, (Tag("ok", BOOL, True), Tag("blob", BINARY, b""))),
        Log(T0 + 11, ())), process=process, flags=3)
    child = make_span(trace, child_id, root_id, "SELECT", start=T0 + 100, tags=(
        Tag("span.kind", STRING, "client"),), references=(
        Reference(CHILD_OF, trace, root_id), Reference(FOLLOWS_FROM, 42, 7)), process=BACKEND,
        flags=0)
    # A parent without a reference, and a reference without a parent: kept as given.
    odd = make_span(trace, 5, root_id, "no refs", start=T0 + 200, references=(),
                    process=BACKEND)
    link = make_span(trace, 6, 0, "linked root", start=T0 + 300,
                     references=(Reference(FOLLOWS_FROM, trace, root_id),))
    spans = [root, child, odd, link]
    assert store.write_spans(spans) == 4
    got = store.get_trace(trace)
    assert got == spans
    assert value_types(got) == value_types(spans)
    assert [type(span.trace_id) for span in got] == [int] * 4


def test_special_doubles_round_trip(store: LocalStore) -> None:
    span = make_span(9, 1, tags=(Tag("nan", DOUBLE, math.nan), Tag("inf", DOUBLE, math.inf),
                                 Tag("ninf", DOUBLE, -math.inf)))
    store.write_spans([span])
    (got,) = store.get_trace(9)
    assert math.isnan(got.tags[0].value)
    assert got.tags[1:] == span.tags[1:]


def test_store_reopens_with_everything(tmp_path: Path) -> None:
    path = str(tmp_path / "spans.db")
    spans = [make_span(1, 1, operation="a"), make_span(1, 2, 1, operation="b", process=BACKEND)]
    with LocalStore(path) as store:
        store.write_spans(spans)
    with LocalStore(path, create=False) as store:
        assert store.get_trace(1) == spans
        assert store.services() == ["backend", "frontend"]
        assert store.span_count() == 2


def test_rewriting_a_batch_is_idempotent(tmp_path: Path) -> None:
    path = str(tmp_path / "spans.db")
    batch = [make_span(7, i, 1 if i > 1 else 0, start=T0 + i) for i in range(1, 6)]
    with LocalStore(path) as store:
        assert store.write_spans(batch) == 5
        assert store.write_spans(batch) == 0
        assert store.duplicates == 5
        # Overlapping re-delivery: only the new span is stored.
        assert store.write_spans(batch[3:] + [make_span(7, 99, 1, start=T0 + 99)]) == 1
        # The same span twice in one batch is stored once.
        assert store.write_spans([make_span(8, 1), make_span(8, 1)]) == 1
    with LocalStore(path) as store:  # a restarted writer still knows the newest spans
        assert store.write_spans(batch) == 0
        assert store.span_count() == 7
        assert [span.span_id for span in store.get_trace(7)] == [1, 2, 3, 4, 5, 99]


def test_late_redelivery_is_stored_but_read_once(store: LocalStore, monkeypatch) -> None:
    from opentracing_sls.shim import store_write

    monkeypatch.setattr(store_write, "DEDUPE_WINDOW", 2)
    span = make_span(3, 1)
    store.write_spans([span])
    # Two generations of newer spans push it out of the window.
    store.write_spans([make_span(4, i, start=T0 + i) for i in range(1, 3)])
    store.write_spans([make_span(4, i, start=T0 + i) for i in range(3, 5)])
    assert store.write_spans([span]) == 1
    assert store.span_count() == 6
    assert store.get_trace(3) == [span]
    assert store.find_trace_ids(TraceQuery("frontend", limit=0)) == [4, 3]


def test_shared_span_ids_of_other_services_or_kinds_are_kept(store: LocalStore) -> None:
    client = make_span(5, 10, 1, tags=(Tag("span.kind", STRING, "client"),))
    server = make_span(5, 10, 1, tags=(Tag("span.kind", STRING, "server"),), process=BACKEND)
    server_same_service = make_span(5, 10, 1, tags=(Tag("span.kind", STRING, "server"),))
    assert store.write_spans([client, server, server_same_service]) == 3
    assert len(store.get_trace(5)) == 3


def test_malformed_spans_are_dropped_not_the_batch(store: LocalStore) -> None:
    good = make_span(11, 1)
    bad = [make_span(11, 1 << 64), make_span(11, 2, parent_id=-1),
           make_span(11, 3, start=1 << 63), make_span(-1, 4),
           make_span(11, 5, tags=(Tag("x", STRING, object()),)),
           make_span(11, 6, tags=(Tag("x", LONG, object()),))]
    assert store.write_spans(bad + [good]) == 1
    assert store.rejected == len(bad)
    assert store.get_trace(11) == [good]


def test_get_traces(store: LocalStore) -> None:
    store.write_spans([make_span(1, 2, 1, start=T0 + 5), make_span(1, 1, start=T0),
                       make_span(2, 1, start=T0 + 1), make_span(3, 1)])
    traces = store.get_traces([2, 1, 404, 1])
    assert set(traces) == {1, 2}
    assert [span.span_id for span in traces[1]] == [1, 2]  # start-time order
    assert store.get_trace(404) == []
    assert store.get_traces([]) == {}
    with pytest.raises(ValueError):
        store.get_trace(-1)
    many = list(range(100, 1300))  # more ids than one SQL statement takes
    store.write_spans([make_span(i, 1) for i in many])
    assert sorted(store.get_traces(many)) == many


def test_services_and_operations_with_kinds(store: LocalStore) -> None:
    store.write_spans([
        make_span(1, 1, operation="GET /", tags=(Tag("span.kind", STRING, "server"),)),
        make_span(1, 2, 1, operation="GET /", tags=(Tag("span.kind", STRING, "client"),)),
        make_span(1, 3, 1, operation="render"),
        make_span(1, 4, 1, operation="SELECT", process=BACKEND,
                  tags=(Tag("span.kind", STRING, "client"),)),
    ])
    assert store.services() == ["backend", "frontend"]
    assert store.operations("frontend") == [("GET /", "client"), ("GET /", "server"),
                                            ("render", "")]
    assert store.operations("frontend", span_kind="server") == [("GET /", "server")]
    assert store.operations("frontend", span_kind="") == [("render", "")]
    assert store.operations("backend") == [("SELECT", "client")]
    assert store.operations("nobody") == []


def test_identical_processes_are_stored_once(store: LocalStore, tmp_path: Path) -> None:
    copy = Process("frontend", tuple(FRONTEND.tags))
    store.write_spans([make_span(1, 1), make_span(1, 2, process=copy)])
    store.write_spans([make_span(2, 1, process=Process("frontend", tuple(FRONTEND.tags)))])
    conn = sqlite3.connect(str(tmp_path / "spans.db"))
    try:
        assert conn.execute("SELECT count(*) FROM processes").fetchone()[0] == 1
    finally:
        conn.close()


def test_delete_before_removes_spans_and_their_index_terms(store: LocalStore,
                                                           tmp_path: Path) -> None:
    hour = 3_600_000_000
    old = [make_span(1, 1, start=T0 - 30 * hour, tags=(Tag("color", STRING, "red"),)),
           make_span(2, 1, start=T0 - hour, tags=(Tag("color", STRING, "red"),),
                     process=BACKEND)]
    new = [make_span(3, 1, start=T0, tags=(Tag("color", STRING, "red"),))]
    store.write_spans(old + new)
    assert store.delete_before(T0 - 10) == 2
    assert store.span_count() == 1
    assert store.get_trace(1) == [] and store.get_trace(3) == new
    assert store.find_trace_ids(TraceQuery("frontend", tags={"color": "red"})) == [3]
    assert store.find_trace_ids(TraceQuery("backend")) == []
    assert store.delete_before(T0 - 10) == 0
    store.write_spans(old)  # writable again, and searchable again
    assert store.find_trace_ids(TraceQuery("frontend", tags={"color": "red"})) == [3, 1]
    conn = sqlite3.connect(str(tmp_path / "spans.db"))
    try:
        conn.execute("INSERT INTO span_terms (span_terms) VALUES ('integrity-check')")
    finally:
        conn.close()


def test_schema_is_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    path = str(tmp_path / "spans.db")
    LocalStore(path).close()
    LocalStore(path).close()  # opening again is a no-op
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "spans.db")
    LocalStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = %d" % (SCHEMA_VERSION + 1))
    conn.close()
    with pytest.raises(StoreError, match="schema version %d.*upgrade" % (SCHEMA_VERSION + 1)):
        LocalStore(path)


@pytest.mark.parametrize("kind", ["foreign-sqlite", "other-application", "garbage"])
def test_files_that_are_not_stores_are_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "spans.db"
    if kind == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:
        conn = sqlite3.connect(str(path))
        if kind == "foreign-sqlite":
            conn.execute("CREATE TABLE people (name TEXT)")
        else:
            conn.execute("PRAGMA application_id = 1234")
        conn.commit()
        conn.close()
    with pytest.raises(StoreError, match="spans.db"):
        LocalStore(str(path))


def test_missing_or_empty_file_is_refused_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        LocalStore(str(tmp_path / "missing.db"), create=False)
    assert not (tmp_path / "missing.db").exists()
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(StoreError, match="empty"):
        LocalStore(str(tmp_path / "empty.db"), create=False)
    with pytest.raises(StoreError, match="directory"):
        LocalStore(str(tmp_path))
    with pytest.raises(StoreError, match="file path"):
        LocalStore(":memory:")


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = LocalStore(str(tmp_path / "spans.db"))
    store.services()
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.services()
    with pytest.raises(StoreError, match="closed"):
        store.write_spans([make_span(1, 1)])
