"""The local sink gathers small submissions into one transaction (a write has a fixed cost),
but never holds spans back from a drain or a stop, nor longer than its linger time."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import List

from opentracing_sls.shim.metrics import ShimMetrics
from opentracing_sls.shim.model import Process, Span, Tag
from opentracing_sls.shim.sinks import LocalSink

T0 = 1_700_000_000_000_000
PROCESS = Process("linger", (Tag("hostname", 0, "h"),))


def spans(first: int, count: int) -> List[Span]:
    return [Span(7, first + i, 0, "op", 1, T0 + i, 5, (), (), (), PROCESS)
            for i in range(count)]


class CountingSink(LocalSink):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.writes: List[int] = []
        self.written = threading.Event()

    def write(self, batch):
        self.writes.append(len(batch))
        written = super().write(batch)
        self.written.set()
        return written


def start(tmp_path: Path, linger: float, linger_spans: int = 2000) -> CountingSink:
    sink = CountingSink(ShimMetrics(), 100_000, str(tmp_path / "spans.db"))
    sink.linger, sink.linger_spans = linger, linger_spans
    sink.start()
    return sink


def test_small_submissions_are_written_together_and_drain_does_not_wait(tmp_path: Path):
    sink = start(tmp_path, linger=30.0)
    for n in range(20):
        sink.submit(spans(1 + 50 * n, 50))
    time.sleep(0.3)
    assert sink.writes == []  # gathering: 1000 spans, fewer than 2000
    started = time.monotonic()
    assert sink.drain(10)
    assert time.monotonic() - started < 5
    assert sink.writes == [1000] and sink.store.span_count() == 1000
    sink.stop(5)


def test_enough_spans_are_written_at_once(tmp_path: Path):
    sink = start(tmp_path, linger=30.0, linger_spans=500)
    for n in range(12):
        sink.submit(spans(1 + 50 * n, 50))
    assert sink.written.wait(10)  # long before the linger time
    assert sink.writes[0] >= 500
    sink.stop(5)
    assert sum(sink.writes) == 600


def test_spans_wait_at_most_the_linger_time(tmp_path: Path):
    sink = start(tmp_path, linger=0.2)
    sink.submit(spans(1, 10))
    started = time.monotonic()
    assert sink.written.wait(10)
    assert 0.1 < time.monotonic() - started < 5
    assert sink.writes == [10]
    sink.stop(5)


def test_stop_writes_what_is_gathering(tmp_path: Path):
    sink = start(tmp_path, linger=30.0)
    sink.submit(spans(1, 10))
    time.sleep(0.1)
    started = time.monotonic()
    assert sink.stop(10)
    assert time.monotonic() - started < 5
    assert sink.writes == [10]
