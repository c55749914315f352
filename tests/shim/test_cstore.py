"""The C store accelerator (``opentracing_sls.shim._cstore``) against the pure-Python write loop.

Differential: thousands of random spans (unicode of every width, escapes, lone surrogates,
values far over the 40-byte term limit, every tag type with its edge values, logs,
references implied or not, empty fields, duplicates, spans the Python loop rejects, values of
unexpected types) written through a C-backed and a Python-backed store give the same rows,
index documents, dedupe keys, hours, operations and counters, and the same files. Then the
C loop's own contract: malformed arguments raise TypeError, a span it does not handle stops
it at that span, a failing callback never escapes; ``untrack`` only untracks what cannot
form a cycle; and no leak over many runs.
"""

from __future__ import annotations

import gc
import math
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from opentracing_sls.shim import store_accel
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
from opentracing_sls.shim.store import LocalStore
from opentracing_sls.shim.store_codec import decode_body, term_part
from opentracing_sls.shim.store_write import SpanWriter

cstore = pytest.importorskip("opentracing_sls.shim._cstore",
                             reason="C store accelerator not built (no compiler?)")

T0 = 1_700_000_000_000_000
U64 = 1 << 64

# --- random spans ---------------------------------------------------------------------------

TEXTS = ["", "GET", "server", "client", "true", "True", "false", "error", "span.kind",
         'quote " backslash \\ slash /', "\n\r\t\b\f\x00\x01\x1f\x7f\x80\x9f", "héllo ✓",
         "中文字符", "😀 astral \U0010ffff", "\ud800 lone \udfff", "x" * 40, "y" * 41,
         "é" * 20, "é" * 21, "http://svc/api/items/12345?q=%20", "z" * 70_000]
KEYS = ["span.kind", "error", "http.url", "component", "k", "ü-key", "", "x" * 41, "😀"]
FLOATS = [0.0, -0.0, 1.5, -2.25, 0.1, 1e22, 1e16, 123456789.125, 1e308, 5e-324, 1e-7,
          math.inf, -math.inf, math.nan, 2.0 ** 53, 1 / 3]
INTS = [0, 1, -1, 200, 9, 10, -10, 99999, (1 << 63) - 1, -(1 << 63), 10 ** 40, -(10 ** 40),
        1 << 64]
BYTES = [b"", b"a", b"ab", b"abc", b"\x00\xff\x10", bytes(range(256)), b"q" * 21]


def rand_text(rnd: random.Random) -> str:
    if rnd.random() < 0.5:
        return rnd.choice(TEXTS[:-1] if rnd.random() < 0.98 else TEXTS)
    return "".join(chr(rnd.choice((0x20, 0x41, 0x7E, 0x7F, 0xE9, 0x4E2D, 0xD83D, 0x1F600,
                                   0x22, 0x5C, 0x0A, 0x10FFFF)))
                   for _ in range(rnd.randrange(0, 50)))


def rand_tag(rnd: random.Random, odd: float) -> Any:
    key = rnd.choice(KEYS) if rnd.random() < 0.6 else rand_text(rnd)
    kind = rnd.randrange(5)
    value: Any = (rand_text(rnd), rnd.choice(FLOATS + [rnd.uniform(-1e9, 1e9)]),
                  rnd.random() < 0.5, rnd.choice(INTS + [rnd.getrandbits(63)]),
                  rnd.choice(BYTES))[kind]
    if key == "span.kind" and kind == STRING and rnd.random() < 0.5:
        value = rnd.choice(("", "server", "client", "producer"))
    if key == "error" and rnd.random() < 0.5:
        kind, value = rnd.choice(((STRING, "true"), (BOOL, True), (BOOL, False), (STRING, "trux"),
                                  (STRING, "false"), (LONG, 1)))
    if rnd.random() < odd:
        # Types the receivers never produce: the Python loop decides (stores or rejects).
        return rnd.choice((
            Tag(key, STRING, 17), Tag(key, LONG, True), Tag(key, LONG, 1.5),
            Tag(key, DOUBLE, 3), Tag(key, BOOL, 1), Tag(key, BINARY, bytearray(b"ba")),
            Tag(key, BINARY, "not bytes"), Tag(key, 7, "unknown type"), Tag(key, STRING, None),
            Tag(5, STRING, "int key"), (key, STRING, "plain tuple"), [key, STRING, "a list"],
            Tag(key, STRING, object()), Tag(key, STRING, ("nested",)), Tag(key, True, "v")))
    return Tag(key, kind, value) if rnd.random() < 0.9 else (key, kind, value)


def rand_tags(rnd: random.Random, most: int, odd: float) -> Any:
    tags = tuple(rand_tag(rnd, odd) for _ in range(rnd.choice((0, 1, 3, rnd.randrange(most)))))
    return list(tags) if rnd.random() < 0.05 else tags


PROCESSES = [Process("frontend", (Tag("hostname", STRING, "web-1"), Tag("ip", LONG, 1))),
             Process("", ()), Process("sérvice 😀", (Tag("b", BINARY, b"\x00"),
                                                    Tag("d", DOUBLE, math.nan))),
             Process("backend", (Tag("hostname", STRING, "db-" + "9" * 50),))]


def rand_id(rnd: random.Random) -> int:
    return rnd.getrandbits(rnd.choice((64, 64, 63, 1, 8)))


def rand_span(rnd: random.Random, odd: float = 0.02) -> Any:
    trace_id = rnd.getrandbits(rnd.choice((64, 128, 128, 1)))
    span_id = rand_id(rnd)
    parent_id = rnd.choice((0, 0, rand_id(rnd)))
    refs: Any
    choice = rnd.randrange(6)
    if choice == 0:
        refs = (Reference(CHILD_OF, trace_id, parent_id),) if parent_id else ()
    elif choice == 1:
        refs = (Reference(FOLLOWS_FROM, trace_id, parent_id),)
    elif choice == 2:
        refs = tuple(Reference(rnd.randrange(2), rnd.choice((trace_id, rnd.getrandbits(128))),
                               rand_id(rnd)) for _ in range(rnd.randrange(4)))
    elif choice == 3:
        refs = (Reference(CHILD_OF, trace_id ^ 1, parent_id),)
    elif choice == 4:
        refs = ((CHILD_OF, trace_id, parent_id),)  # a plain tuple equal to the implied one
    else:
        refs = ()
    logs = tuple(Log(rnd.choice((T0 + i, 0, -5, (1 << 63) - 1)), rand_tags(rnd, 6, odd))
                 for i in range(rnd.choice((0, 0, 1, 2, 12))))
    process = rnd.choice(PROCESSES) if rnd.random() < 0.9 else Process(
        "svc-%d" % rnd.randrange(3), (Tag("n", LONG, rnd.randrange(3)),))
    span = Span(trace_id, span_id, parent_id,
                rnd.choice(("GET /api", "op", "", "ö" * 30, rand_text(rnd))),
                rnd.choice((0, 1, 2, 3, (1 << 31) - 1)),
                rnd.choice((T0 + rnd.getrandbits(36), 0, -1, 1, (1 << 63) - 1, -(1 << 63),
                            3_600_000_000 * 5)),
                rnd.choice((rnd.getrandbits(20), 0, -3, (1 << 63) - 1)),
                rand_tags(rnd, 20, odd), logs, refs, process)
    if rnd.random() < odd:
        # Fields out of range or of the wrong type: rejected (or stored) by the Python loop.
        field, value = rnd.choice((
            ("span_id", -1), ("span_id", U64), ("parent_id", U64 + 5), ("trace_id", -1),
            ("trace_id", 1 << 128), ("start_time", 1 << 63), ("duration", -(1 << 63) - 1),
            ("flags", 1.0), ("flags", True), ("operation_name", None), ("operation_name", 5),
            ("tags", None), ("logs", (None,)), ("logs", ((T0, None),)), ("logs", ((1.5, ()),)),
            ("references", (None,)), ("references", ((0, 1),)), ("references", [[0, 1, 2]]),
            ("process", Process("unhashable", ([],))), ("process", None),
            ("span_id", True), ("start_time", 2.5), ("tags", "str tags"),
            ("process", Process(5, ())), ("process", ("svc", ()))))
        span = span._replace(**{field: value})
    if rnd.random() < 0.005:
        return rnd.choice((None, 5, "span", (1, 2, 3), list(span), tuple(span)))
    return span


# --- two stores, one input -----------------------------------------------------------------

def open_store(path: Path, backend: str, monkeypatch) -> LocalStore:
    monkeypatch.setattr(store_accel, "PREPARER", cstore.Preparer if backend == "c" else None)
    store = LocalStore(str(path))
    assert (store._writer._run is not None) == (backend == "c")
    return store


def record_batches(monkeypatch) -> List[Tuple[SpanWriter, tuple]]:
    """Every batch SpanWriter._prepare returns, with its writer."""
    seen: List[Tuple[SpanWriter, tuple]] = []
    original = SpanWriter._prepare

    def spy(self, spans, row_id):
        batch = original(self, spans, row_id)
        seen.append((self, (batch.row_id, batch.rows, batch.docs, batch.keys, batch.hours,
                            batch.new_operations, batch.rejected, batch.duplicates)))
        return batch

    monkeypatch.setattr(SpanWriter, "_prepare", spy)
    return seen


def dump(path: Path) -> Dict[str, list]:
    conn = sqlite3.connect(str(path))
    try:
        return {table: sorted(conn.execute("SELECT * FROM %s" % table).fetchall(), key=repr)
                for table in ("spans", "processes", "services", "operations", "span_hours")}
    finally:
        conn.close()


def write_both(tmp_path: Path, monkeypatch, batches: List[list]) -> Tuple[LocalStore, LocalStore]:
    seen = record_batches(monkeypatch)
    stores = {backend: open_store(tmp_path / (backend + ".db"), backend, monkeypatch)
              for backend in ("python", "c")}
    for spans in batches:
        counts = [stores[backend].write_spans(spans) for backend in ("python", "c")]
        assert counts[0] == counts[1]
        python, c = seen[-2:]
        assert python[0] is stores["python"]._writer and c[0] is stores["c"]._writer
        for field, py_value, c_value in zip(
                ("row_id", "rows", "docs", "keys", "hours", "new_operations", "rejected",
                 "duplicates"), python[1], c[1]):
            if py_value != c_value:  # pragma: no cover - the failure message
                diff = next((i for i, (a, b) in enumerate(zip(py_value, c_value)) if a != b),
                            None) if isinstance(py_value, list) else None
                pytest.fail("%s differ%s:\n python: %.3000r\n c:      %.3000r" % (
                    field, "" if diff is None else " at %d" % diff,
                    py_value if diff is None else py_value[diff],
                    c_value if diff is None else c_value[diff]))
    for attribute in ("rejected", "duplicates"):
        assert getattr(stores["python"], attribute) == getattr(stores["c"], attribute)
    return stores["python"], stores["c"]


def test_random_spans_give_identical_rows_terms_and_files(tmp_path: Path, monkeypatch) -> None:
    rnd = random.Random("cstore-differential")
    batches: List[list] = []
    for _ in range(40):
        batch = [rand_span(rnd) for _ in range(rnd.choice((1, 10, 200)))]
        if batches and rnd.random() < 0.3:  # re-deliveries, and repeats inside a batch
            batch += rnd.sample(batches[-1], min(5, len(batches[-1])))
        batch += batch[:2]
        batches.append(batch)
    total = sum(map(len, batches))
    assert total > 3000
    python, c = write_both(tmp_path, monkeypatch, batches)
    # the corpus covers what it means to: stored spans, rejections, duplicates
    assert python.span_count() > 2500
    assert python.rejected > 20 and python.duplicates > 100
    assert dump(tmp_path / "python.db") == dump(tmp_path / "c.db")
    # The index documents were checked equal; FTS5 deletes a document only when given the
    # same terms, so retention through the Python code must leave both indexes empty.
    for store in (python, c):
        with sqlite3.connect(store.path) as conn:
            last = conn.execute("SELECT count(*) FROM spans WHERE start_time = ?",
                                ((1 << 63) - 1,)).fetchone()[0]
            total = store.span_count()
            assert store.delete_before((1 << 63) - 1) == total - last
            assert store.span_count() == last
            # every document has one process term: the index holds the rows left, no more
            processes = [row[0] for row in conn.execute("SELECT id FROM processes")]
            assert len(processes) > 3
            assert sum(conn.execute("SELECT count(*) FROM span_terms WHERE span_terms MATCH ?",
                                    ('"p%x"' % pid,)).fetchone()[0] for pid in processes) == last
        store.close()


def test_receiver_spans_are_all_prepared_in_c(tmp_path: Path, monkeypatch) -> None:
    """The spans the receivers produce never need the Python loop."""
    from opentracing_sls.reporting.encoding import get_encoder
    from opentracing_sls.shim.thrift_decode import decode_emit_batch_compact
    from opentracing_sls.shim.zipkin import decode_zipkin_v2_json
    from opentracing_sls.testing import make_span_record

    encoder = get_encoder("compact")
    process = encoder.encode_process("svc", {"hostname": "h", "ip": "10.0.0.1"})
    spans = decode_emit_batch_compact(encoder.encode_emit_batch(process, [
        encoder.encode_span(make_span_record(
            i, parent_id=i, tags={"s": "x" * (i * 7), "i": i, "f": i / 3, "b": bool(i % 2),
                                  "span.kind": "server", "bin": b"\x00" * i},
            logs=[(T0 + i, {"event": "é" * i})])) for i in range(1, 12)], 1, (0, 0, 0)))
    body = ('[{"traceId":"%032x","id":"%016x","parentId":"00000000000000aa","name":"get",'
            '"kind":"CLIENT","timestamp":%d,"duration":5,"localEndpoint":{"serviceName":"web"},'
            '"tags":{"http.url":"%s"},"annotations":[{"timestamp":%d,"value":"ws"}]}]'
            % (7, 9, T0, "u" * 60, T0 + 1))
    spans += decode_zipkin_v2_json(body.encode())[0]
    calls = []
    monkeypatch.setattr(SpanWriter, "_add", lambda self, batch, spans: calls.append(spans))
    store = open_store(tmp_path / "c.db", "c", monkeypatch)
    assert store.write_spans(spans) == len(spans) == 12
    assert calls == []
    store.close()


def test_out_of_range_and_odd_spans_go_to_the_python_loop(tmp_path: Path, monkeypatch) -> None:
    good = Span(1, 2, 0, "op", 1, T0, 5, (), (), (), PROCESSES[0])
    odd = [good._replace(span_id=U64), good._replace(tags=(Tag("k", STRING, 5),)),
           good._replace(process=Process("p", ([],)))]
    handled: List[list] = []
    original = SpanWriter._add

    def spy(self, batch, spans):
        handled.append(list(spans))
        original(self, batch, spans)

    monkeypatch.setattr(SpanWriter, "_add", spy)
    store = open_store(tmp_path / "c.db", "c", monkeypatch)
    odd[1] = odd[1]._replace(span_id=5)
    spans = [good, odd[0], good._replace(span_id=3), odd[1], odd[2], good._replace(span_id=4)]
    assert store.write_spans(spans) == 4  # the STRING tag with an int value is stored
    assert handled == [[odd[0]], [odd[1]], [odd[2]]]
    assert store.rejected == 2
    assert sorted(s.span_id for s in store.get_trace(1)) == [2, 3, 4, 5]
    store.close()


# --- the C loop's contract -----------------------------------------------------------------

def make_preparer(resolve: Callable[[Process], Any] = None,
                  part: Callable[[str], str] = term_part, max_cached: int = 100
                  ) -> Tuple[Any, Dict[Process, Any], set]:
    processes: Dict[Process, Any] = {}
    operations: set = set()

    def default(process: Process) -> Any:
        if type(process) is not Process:
            raise AttributeError("not a Process")  # as SpanWriter's resolver would
        processes[process] = known = (len(processes) + 1, len(processes) + 1,
                                      "p%x" % (len(processes) + 1))
        return known

    preparer = cstore.Preparer(processes, resolve or default, operations, part, max_cached)
    return preparer, processes, operations


def run(preparer: Any, spans: Any, start: int = 0) -> Tuple[Tuple[int, int, int], list]:
    out: list = [set(), set(), set(), [], [], [], set(), []]
    result = preparer.run(spans, start, 1, *out)
    return result, out


GOOD = Span(5, 6, 0, "op", 1, T0, 10, (Tag("k", STRING, "v"),), (), (), PROCESSES[0])


def test_arguments_are_checked() -> None:
    preparer, _, _ = make_preparer()
    out = [set(), set(), set(), [], [], [], set(), []]
    with pytest.raises(TypeError):
        preparer.run([GOOD], 0, 1, *out[:-1])
    with pytest.raises(TypeError):
        preparer.run(iter([GOOD]), 0, 1, *out)
    with pytest.raises(TypeError):
        preparer.run([GOOD], 0, 1, frozenset(), *out[1:])
    with pytest.raises(TypeError):
        preparer.run([GOOD], 0, 1, *out[:3], set(), *out[4:])  # rows must be a list
    with pytest.raises(TypeError):
        preparer.run([GOOD], "0", 1, *out)
    with pytest.raises(OverflowError):
        preparer.run([GOOD], 0, 1 << 80, *out)
    with pytest.raises(TypeError):
        cstore.Preparer({}, None, set(), term_part, 10)
    with pytest.raises(TypeError):
        cstore.Preparer([], print, set(), term_part, 10)
    assert run(preparer, [GOOD])[0] == (1, 2, 0)
    assert run(preparer, (GOOD, GOOD))[0] == (2, 2, 1)  # the second one is a duplicate
    assert run(preparer, [GOOD], start=5)[0] == (5, 1, 0)


@pytest.mark.parametrize("span", [
    None, 5, "span", (1, 2, 3), tuple(GOOD), list(GOOD), GOOD._replace(trace_id=-1),
    GOOD._replace(trace_id=1 << 128), GOOD._replace(span_id=U64), GOOD._replace(flags=1.0),
    GOOD._replace(start_time=1 << 63), GOOD._replace(duration=-(1 << 63) - 1),
    GOOD._replace(operation_name=b"op"), GOOD._replace(tags=None),
    GOOD._replace(tags=(Tag("k", STRING, 5),)), GOOD._replace(tags=(("k", STRING),)),
    GOOD._replace(tags=(Tag("k", 9, "v"),)), GOOD._replace(tags=(Tag("k", 1 << 70, "v"),)),
    GOOD._replace(logs=((T0,),)), GOOD._replace(logs=(Log(T0, None),)),
    GOOD._replace(logs=(Log(T0, (Tag("k", BOOL, 0),)),)), GOOD._replace(references=None),
    GOOD._replace(references=(Reference(0, 5, "x"),)),
    GOOD._replace(process=Process("p", ([],))), GOOD._replace(process=None),
])
def test_a_span_it_does_not_handle_stops_the_loop_there(span: Any) -> None:
    preparer, _, _ = make_preparer()
    (index, row_id, duplicates), out = run(preparer, [GOOD, span, GOOD._replace(span_id=7)])
    assert (index, row_id, duplicates) == (1, 2, 0)
    assert len(out[3]) == 13 and out[3][0] == 1  # the first span's row only (13 values)
    # and resuming after it does the rest
    (index, row_id, duplicates), out = run(preparer, [GOOD, span, GOOD._replace(span_id=7)], 2)
    assert (index, row_id, duplicates) == (3, 2, 0)


def test_failing_callbacks_leave_the_span_to_python() -> None:
    def refuse(process: Process) -> Any:
        raise sqlite3.OperationalError("database is locked")

    preparer, _, _ = make_preparer(resolve=refuse)
    assert run(preparer, [GOOD])[0] == (0, 1, 0)
    preparer, _, _ = make_preparer(resolve=lambda process: ("not", "a", "known tuple"))
    assert run(preparer, [GOOD])[0] == (0, 1, 0)
    preparer, _, _ = make_preparer(resolve=lambda process: (1, 1, "p\xe91"))
    assert run(preparer, [GOOD])[0] == (0, 1, 0)

    def broken(text: str) -> str:
        raise ValueError("no")

    long = GOOD._replace(tags=(Tag("k", STRING, "v" * 41),))
    preparer, _, _ = make_preparer(part=broken)
    assert run(preparer, [GOOD, long])[0] == (1, 2, 0)
    preparer, _, _ = make_preparer(part=lambda text: "\xe9")  # not ASCII
    assert run(preparer, [GOOD, long])[0] == (1, 2, 0)
    preparer, _, _ = make_preparer(part=lambda text: None)
    assert run(preparer, [GOOD, long])[0] == (1, 2, 0)


def test_a_list_of_tags_changed_by_another_thread_is_safe() -> None:
    """term_part runs Python code, during which another thread may change a list of tags."""
    tags = [Tag("k%d" % i, STRING, "v" * 41 + str(i)) for i in range(50)]

    def part(text: str) -> str:
        if tags:
            del tags[-5:]
        gc.collect()
        return term_part(text)

    preparer, _, _ = make_preparer(part=part)
    (index, _, _), out = run(preparer, [GOOD._replace(tags=tags)])
    assert index == 1 and out[4][0][1].count(" s1k") == 9  # what the list held when read


def test_caches_stay_bounded() -> None:
    preparer, processes, operations = make_preparer(max_cached=50)
    spans = [GOOD._replace(span_id=i, operation_name="op-%d" % i,
                           tags=(Tag("url", STRING, "u" * 50 + str(i)),)) for i in range(1, 500)]
    (index, _, _), out = run(preparer, spans)
    assert index == len(spans) and len(out[7]) == len(spans)  # every operation new
    assert len(operations) <= 50 and preparer.cached_parts() <= 50


def test_untrack_only_untracks_what_cannot_form_a_cycle() -> None:
    tag = Tag("k", STRING, "v" + str(id(object())))
    span = GOOD._replace(tags=(tag,), process=Process("svc", (Tag("a", LONG, 5),)))
    holder: list = []
    cyclic = GOOD._replace(tags=(Tag("k", STRING, holder),))
    holder.append(cyclic)  # a reference cycle through a list: must stay visible to the GC
    odd = GOOD._replace(tags=(Tag("k", STRING, {"a": 1}),))
    assert gc.is_tracked(span) and gc.is_tracked(tag)
    assert cstore.untrack([span, cyclic, odd, 5, None, "x"]) == 4  # span, and three atoms
    assert not gc.is_tracked(span) and not gc.is_tracked(tag)
    assert not gc.is_tracked(span.process) and not gc.is_tracked(span.tags)
    assert gc.is_tracked(cyclic) and gc.is_tracked(odd)
    assert gc.is_tracked(cyclic.tags) and gc.is_tracked(odd.tags[0])
    with pytest.raises(TypeError):
        cstore.untrack((span,))
    # the cycle is still collected
    del holder, cyclic
    assert gc.collect() >= 3

    class WithDict(tuple):
        pass

    withdict = WithDict((1, 2))
    withdict.x = [withdict]
    assert cstore.untrack([withdict]) == 0 and gc.is_tracked(withdict)
    deep: Any = ("leaf",)
    for _ in range(40):
        deep = (deep,)
    assert cstore.untrack([deep]) == 0  # too deep to walk: left alone
    # untracked spans still work, compare and die normally
    assert span == span._replace() and span.tags[0].value.startswith("v")


def _allocated() -> int:
    gc.collect()
    return sys.getallocatedblocks()


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.skipif(not hasattr(sys, "getallocatedblocks"), reason="CPython only")
def test_no_leak_over_many_runs() -> None:
    """100 000 spans prepared (valid ones of every kind, deferred ones, duplicates, callback
    failures): no growth of the interpreter's allocated blocks, of the shared objects'
    reference counts, or of the process's memory (the C buffers)."""
    rnd = random.Random("cstore-leak")
    spans = [s for s in (rand_span(rnd, odd=0.0) for _ in range(400)) if type(s) is Span]
    spans += [rand_span(rnd, odd=0.5) for _ in range(100)]
    spans.append(GOOD._replace(tags=(Tag("big", STRING, "b" * 1_000_000),
                                     Tag("bin", BINARY, b"\x01" * 300_000))))
    spans += spans[:20]  # duplicates
    shared = [x for s in spans[:50] if type(s) is Span
              for x in (s, s.operation_name, s.process, *s.tags)]
    failing = [False]

    def resolve(process: Process) -> Any:
        if failing[0]:
            raise ValueError("refused")
        return (1, 1, "p1")

    preparer, processes, _ = make_preparer(resolve=resolve)

    def calls() -> None:
        failing[0] = not failing[0]
        processes.clear()
        index = 0
        while index < len(spans):
            (index, _, _), _ = run(preparer, spans, index)
            index += 1

    for _ in range(5):  # warm-up: caches, free lists
        calls()
    counts = [sys.getrefcount(x) for x in shared]
    before, rss = _allocated(), _rss_kb()
    rounds = 100_000 // len(spans) + 1
    for _ in range(rounds):
        calls()
    grown = _allocated() - before
    assert grown < 500, "%d blocks more after %d runs" % (grown, rounds)
    assert max(abs(sys.getrefcount(x) - n) for x, n in zip(shared, counts)) <= 2
    # a leaked body buffer (over 1 MB here) per run would be 200 MB
    assert _rss_kb() - rss < 30_000


def writer_kind(span: Span) -> str:
    """The span kind as the writer takes it: the first non-empty span.kind string."""
    return next((t[2] for t in span.tags if t[0] == "span.kind" and t[1] == STRING and t[2]),
                "")


def encodable(text: str) -> bool:
    """Text SQLite can take (no lone surrogates); the writer rejects other operation names."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def test_stored_spans_read_back_exactly(tmp_path: Path, monkeypatch) -> None:
    """What the C loop writes, the read path returns as the same model spans."""
    rnd = random.Random("cstore-readback")
    spans = [s for s in (rand_span(rnd, odd=0.0) for _ in range(300)) if type(s) is Span]
    store = open_store(tmp_path / "c.db", "c", monkeypatch)
    store.write_spans(spans)
    expected: Dict[int, Dict[tuple, Span]] = {}
    for span in spans:
        if (0 <= span.span_id < U64 and 0 <= span.parent_id < U64
                and -(1 << 63) <= span.start_time < (1 << 63)
                and encodable(span.operation_name) and encodable(writer_kind(span))):
            # the first of the spans with one (span id, service, kind) is the one stored
            expected.setdefault(span.trace_id, {}).setdefault(
                (span.span_id, span.process.service_name, writer_kind(span)), span)
    got = store.get_traces(list(expected))
    assert sum(map(len, got.values())) == sum(map(len, expected.values())) > 200
    for trace_id, by_key in expected.items():
        for span in got[trace_id]:
            original = by_key[(span.span_id, span.process.service_name, writer_kind(span))]
            assert repr(span) == repr(original._replace(
                tags=tuple(Tag(*t) for t in original.tags),
                logs=tuple(Log(log.timestamp, tuple(Tag(*f) for f in log.fields))
                           for log in original.logs),
                references=tuple(Reference(*r) for r in original.references)))
    store.close()


def test_body_is_what_the_python_encoder_writes() -> None:
    """A span with every JSON escape and number form, compared as text."""
    from opentracing_sls.shim.store_codec import encode_body

    span = GOOD._replace(
        tags=tuple(Tag("k%d" % i, STRING, chr(c)) for i, c in enumerate(
            list(range(0, 0x80)) + [0xE9, 0x2028, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF, 0xD800]))
        + tuple(Tag("d", DOUBLE, x) for x in FLOATS) + tuple(Tag("l", LONG, x) for x in INTS)
        + tuple(Tag("b", BINARY, x) for x in BYTES) + (Tag("t", BOOL, True),),
        references=(Reference(FOLLOWS_FROM, (1 << 128) - 1, U64 - 1),))
    preparer, _, _ = make_preparer()
    (index, _, _), out = run(preparer, [span])
    assert index == 1
    assert out[3][12] == encode_body(span)
    tags, _, refs = decode_body(out[3][12], span.trace_id, 0)
    assert refs == span.references and len(tags) == len(span.tags)


def test_backend_selection() -> None:
    assert store_accel.STORE_BACKEND == (
        "python" if os.environ.get("OPENTRACING_SLS_PURE_PYTHON", "") not in ("", "0") else "c")
    code = ("from opentracing_sls.shim import store_accel as a; "
            "print(a.STORE_BACKEND, a.PREPARER is not None)")
    for value, expected in (("1", "python False"), ("0", "c True"), ("", "c True")):
        env = dict(os.environ, OPENTRACING_SLS_PURE_PYTHON=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == expected
