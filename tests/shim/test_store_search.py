"""Trace search, dependencies and concurrency of the local span store (Jaeger query semantics)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import List, Sequence

import pytest

from opentracing_sls.shim.model import (
    BOOL,
    CHILD_OF,
    DOUBLE,
    LONG,
    STRING,
    Log,
    Process,
    Reference,
    Span,
    Tag,
)
from opentracing_sls.shim.store import LocalStore, TraceQuery
from opentracing_sls.shim.store_read import (
    hours_in,
    match_conditions,
    match_in_hour,
    plan_find,
)

# Every test twice: rows prepared by the Python loop and by the C one.
pytestmark = pytest.mark.usefixtures("store_backend")

T0 = 1_700_000_000_000_000
HOUR = 3_600_000_000
WEB = Process("web", (Tag("hostname", STRING, "web-1"), Tag("version", LONG, 3)))
WEB2 = Process("web", (Tag("hostname", STRING, "web-2"), Tag("version", LONG, 3)))
API = Process("api", (Tag("hostname", STRING, "api-1"),))
DB = Process("db", ())


def make_span(trace_id: int, span_id: int, parent_id: int = 0, operation: str = "op",
              start: int = T0, duration: int = 1000, tags: Sequence[Tag] = (),
              logs: Sequence[Log] = (), process: Process = WEB) -> Span:
    refs = (Reference(CHILD_OF, trace_id, parent_id),) if parent_id else ()
    return Span(trace_id, span_id, parent_id, operation, 1, start, duration, tuple(tags),
                tuple(logs), refs, process)


@pytest.fixture()
def store(tmp_path: Path):
    with LocalStore(str(tmp_path / "spans.db")) as opened:
        yield opened


@pytest.fixture()
def shop(store: LocalStore) -> LocalStore:
    """Five traces through web -> api -> db, one second apart (trace 5 newest)."""
    spans: List[Span] = []
    for trace in range(1, 6):
        start = T0 + trace * 1_000_000
        spans += [
            make_span(trace, 1, 0, "GET /cart" if trace % 2 else "GET /home", start,
                      duration=trace * 10_000, process=WEB if trace != 4 else WEB2,
                      tags=(Tag("span.kind", STRING, "server"),
                            Tag("http.status_code", LONG, 500 if trace == 3 else 200),
                            Tag("error", BOOL, trace == 3))),
            make_span(trace, 2, 1, "load", start + 100, duration=2_000, process=API,
                      tags=(Tag("span.kind", STRING, "server"), Tag("retry", BOOL, True),
                            Tag("ratio", DOUBLE, 0.5)),
                      logs=(Log(start + 150, (Tag("event", STRING, "cache miss"),
                                              Tag("attempt", LONG, trace))),)),
            make_span(trace, 3, 2, "SELECT", start + 200, duration=500 * trace, process=DB,
                      tags=(Tag("span.kind", STRING, "client"),)),
        ]
    store.write_spans(spans)
    return store


def find(store: LocalStore, service: str, **kwargs) -> List[int]:
    return store.find_trace_ids(TraceQuery(service, **kwargs))


def test_find_by_service_newest_first_with_limit(shop: LocalStore) -> None:
    assert find(shop, "web") == [5, 4, 3, 2, 1]
    assert find(shop, "web", limit=2) == [5, 4]
    assert find(shop, "db", limit=0) == [5, 4, 3, 2, 1]
    assert find(shop, "nobody") == []


def test_find_returns_full_traces(shop: LocalStore) -> None:
    traces = shop.find_traces(TraceQuery("db", limit=2))
    assert [trace[0].trace_id for trace in traces] == [5, 4]
    assert [[span.process.service_name for span in trace] for trace in traces] == \
        [["web", "api", "db"]] * 2


def test_find_by_operation(shop: LocalStore) -> None:
    assert find(shop, "web", operation="GET /cart") == [5, 3, 1]
    assert find(shop, "web", operation="GET /home") == [4, 2]
    assert find(shop, "web", operation="SELECT") == []  # another service's operation
    assert find(shop, "db", operation="SELECT", limit=1) == [5]


def test_find_by_span_tags_compared_as_strings(shop: LocalStore) -> None:
    assert find(shop, "web", tags={"http.status_code": "500"}) == [3]
    assert find(shop, "web", tags={"error": "true"}) == [3]
    assert find(shop, "web", tags={"error": "false"}) == [5, 4, 2, 1]
    assert find(shop, "api", tags={"ratio": "0.5", "retry": "true"}) == [5, 4, 3, 2, 1]
    assert find(shop, "web", tags={"http.status_code": "500", "error": "false"}) == []
    assert find(shop, "web", tags={"http.status_code": "404"}) == []


def test_find_by_process_tags_and_log_fields(shop: LocalStore) -> None:
    assert find(shop, "web", tags={"hostname": "web-2"}) == [4]
    assert find(shop, "web", tags={"hostname": "web-1", "version": "3"}) == [5, 3, 2, 1]
    assert find(shop, "api", tags={"event": "cache miss", "attempt": "2"}) == [2]
    # Tags of another service's spans do not count.
    assert find(shop, "db", tags={"hostname": "api-1"}) == []


def test_all_conditions_must_hold_on_one_span(shop: LocalStore) -> None:
    # web has status 500 in trace 3 and api has retry=true in trace 3, but on different spans.
    assert find(shop, "web", tags={"http.status_code": "500", "retry": "true"}) == []
    assert find(shop, "web", operation="GET /home", tags={"error": "true"}) == []
    assert find(shop, "web", operation="GET /cart", tags={"error": "true"}) == [3]


def test_find_by_time_window(shop: LocalStore) -> None:
    second = 1_000_000
    assert find(shop, "web", start_min_us=T0 + 2 * second, start_max_us=T0 + 4 * second) == \
        [4, 3, 2]
    assert find(shop, "db", start_min_us=T0 + 2 * second + 201) == [5, 4, 3]
    assert find(shop, "web", start_max_us=T0 + 2 * second) == [2, 1]
    assert find(shop, "web", start_min_us=T0 + 3 * second, start_max_us=T0) == []


def test_find_by_duration(shop: LocalStore) -> None:
    assert find(shop, "web", duration_min_us=30_000) == [5, 4, 3]
    assert find(shop, "web", duration_max_us=20_000) == [2, 1]
    assert find(shop, "db", duration_min_us=1000, duration_max_us=2000) == [4, 3, 2]
    assert find(shop, "web", duration_min_us=20_000, duration_max_us=10_000) == []


def test_window_over_many_hours_and_days(store: LocalStore) -> None:
    starts = {1: T0 - 100 * HOUR, 2: T0 - 30 * HOUR, 3: T0 - 2 * HOUR, 4: T0}
    store.write_spans([make_span(trace, 1, start=start) for trace, start in starts.items()])
    assert find(store, "web", start_min_us=T0 - 3 * HOUR, start_max_us=T0) == [4, 3]
    assert find(store, "web", start_min_us=T0 - 50 * HOUR, start_max_us=T0 - HOUR) == [3, 2]
    assert find(store, "web", start_min_us=T0 - 200 * HOUR, start_max_us=T0 + HOUR) == \
        [4, 3, 2, 1]
    assert find(store, "web", start_min_us=0, start_max_us=T0 - 99 * HOUR) == [1]


def test_search_visits_only_hours_with_spans(store: LocalStore, tmp_path: Path) -> None:
    store.write_spans([make_span(1, 1, start=T0 - 30 * HOUR), make_span(2, 1, start=T0),
                       make_span(3, 1, start=-5)])
    conn = sqlite3.connect(str(tmp_path / "spans.db"))
    try:
        hour = T0 // HOUR
        assert hours_in(conn, None, None) == [hour, hour - 30, 0]
        assert hours_in(conn, T0 - 31 * HOUR, T0 - HOUR) == [hour - 30]
        assert hours_in(conn, T0 + 1, None) == [hour]
    finally:
        conn.close()
    assert find(store, "web", start_max_us=0) == [3]
    assert match_in_hour(match_conditions(1, TraceQuery("web")), 1, 5) == '"s1h00000005"'
    conditions = match_conditions(1, TraceQuery("web", operation="x", tags={"k": "v"}),
                                  lambda key, text: ["p7", "p9"] if key == "k" else [])
    assert match_in_hour(conditions, 1, 5) == \
        '("s1k6bv76" OR "p7" OR "p9") AND "s1o78" AND "h00000005"'


def test_newest_traces_first_even_when_written_out_of_order(store: LocalStore) -> None:
    # A late batch of old spans is written last: still ranked by start time.
    store.write_spans([make_span(1, 1, start=T0), make_span(2, 1, start=T0 - 2 * HOUR)])
    store.write_spans([make_span(3, 1, start=T0 - 1), make_span(4, 1, start=T0 - 3 * HOUR),
                       make_span(2, 2, 1, start=T0 + 5)])
    assert find(store, "web", limit=1) == [2]
    assert find(store, "web", limit=3) == [2, 1, 3]
    assert find(store, "web", limit=0) == [2, 1, 3, 4]


def test_long_values_and_names_are_searchable(store: LocalStore) -> None:
    url = "https://shop.example/items/" + "x" * 200
    operation = "GET /" + "y" * 300
    store.write_spans([make_span(1, 1, operation=operation, tags=(Tag("http.url", STRING, url),)),
                       make_span(2, 1, operation=operation + "z",
                                 tags=(Tag("http.url", STRING, url + "z"),))])
    assert find(store, "web", tags={"http.url": url}) == [1]
    assert find(store, "web", operation=operation) == [1]
    assert find(store, "web", tags={"ünïcode ✓": "ok"}) == []


def test_find_uses_the_term_index(store: LocalStore, tmp_path: Path) -> None:
    store.write_spans([make_span(1, 1)])
    conn = sqlite3.connect(str(tmp_path / "spans.db"))
    try:
        for query in (TraceQuery("web", start_min_us=T0 - HOUR, start_max_us=T0),
                      TraceQuery("web", tags={"http.status_code": "500"}, operation="op")):
            sql, params = plan_find(1, query)
            plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
            # FTS5 answers MATCH from its index (M = MATCH constraint); spans rows are read by
            # primary key; no table is scanned. The sort is of one hour's matches.
            assert plan[0].startswith("SCAN f VIRTUAL TABLE INDEX") and ":M" in plan[0], plan
            assert plan[1] == "SEARCH s USING INTEGER PRIMARY KEY (rowid=?)", plan
            assert plan[2:] == ["USE TEMP B-TREE FOR ORDER BY"], plan
        _, params = plan_find(1, TraceQuery("web", start_min_us=T0 - HOUR, start_max_us=T0))
        assert params[0] == '"s1h%08x"' % (T0 // HOUR)  # the service's spans of that hour
    finally:
        conn.close()


def test_dependencies(store: LocalStore) -> None:
    spans = []
    for trace in (1, 2):
        spans += [make_span(trace, 1, 0, process=WEB), make_span(trace, 2, 1, process=API),
                  make_span(trace, 3, 2, process=API),  # same service: no edge
                  make_span(trace, 4, 3, process=DB)]
    spans.append(make_span(3, 1, 0, start=T0 - 10 * HOUR, process=WEB))
    spans.append(make_span(3, 2, 1, start=T0 - 10 * HOUR, process=DB))  # outside the window
    # A shared span id (Zipkin): the client half in web, the server half in api. The api
    # child of the shared id is api-local; the server half itself is the web -> api call.
    spans += [make_span(4, 1, 0, process=WEB), make_span(4, 9, 1, process=WEB),
              make_span(4, 9, 1, process=API), make_span(4, 10, 9, process=API)]
    store.write_spans(spans)
    assert store.dependencies(T0 + 1, HOUR) == [("api", "db", 2), ("web", "api", 3)]
    assert store.dependencies(T0 + 1, 24 * HOUR) == [("api", "db", 2), ("web", "api", 3),
                                                     ("web", "db", 1)]
    assert store.dependencies(T0 - HOUR, HOUR) == []
    assert store.dependencies(T0 + 1, 100 * 365 * 24 * HOUR)[-1] == ("web", "db", 1)


def test_reads_run_while_a_writer_thread_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "spans.db")
    store = LocalStore(path)
    other = LocalStore(path)  # a second store object, as the CLI would open meanwhile
    batches = 40
    errors: List[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for batch in range(batches):
                store.write_spans([make_span(batch * 1000 + i, 1, start=T0 + batch,
                                             tags=(Tag("batch", LONG, batch),))
                                   for i in range(200)])
        except BaseException as exc:  # noqa: B902 - reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    def read(reader: LocalStore) -> None:
        try:
            while not done.is_set():
                ids = reader.find_trace_ids(TraceQuery("web", tags={"batch": "0"}, limit=5))
                assert len(ids) in (0, 5)
                for spans in reader.find_traces(TraceQuery("web", limit=3)):
                    assert len(spans) == 1
                reader.services()
                reader.span_count()
        except BaseException as exc:  # noqa: B902 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [
        threading.Thread(target=read, args=(reader,)) for reader in (store, store, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert store.span_count() == batches * 200
    assert other.find_trace_ids(TraceQuery("web", tags={"batch": "39"}, limit=0)) == \
        sorted(range(39_000, 39_200), reverse=True)
    other.close()
    store.close()
