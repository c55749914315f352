"""Write throughput of the local store on typical spans, in batches of 500.

``python tests/benchmarks/bench_store_write.py [SPANS] [RUNS]``: best and median of several
runs into fresh files (a benchmark, not part of the test run; the issue's end-to-end figure
is >= 50 000 spans/s per core into the local store).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from typing import List, Tuple

from opentracing_sls.shim.model import CHILD_OF, LONG, STRING, Log, Process, Reference, Span, Tag
from opentracing_sls.shim.store import LocalStore

BATCH = 500
T0 = 1_700_000_000_000_000


def typical_spans(count: int, seed: int = 1, spans_per_trace: int = 3) -> List[Span]:
    """Spans like an instrumented HTTP service sends: 5 tags (one URL with an id in it), one
    log of 2 fields, a process with 3 tags; 8 services; a few spans per trace per batch."""
    rnd = random.Random(seed)
    processes = [Process("svc-%d" % i, (Tag("hostname", STRING, "host-%d" % i),
                                         Tag("ip", STRING, "10.0.0.%d" % i),
                                         Tag("jaeger.version", STRING, "Python-4.8.0")))
                 for i in range(8)]
    spans = []
    trace = parent = 0
    for i in range(count):
        if i % spans_per_trace == 0:
            trace, parent = rnd.getrandbits(128), 0
        span_id = rnd.getrandbits(64) or 1
        tags = (Tag("span.kind", STRING, "server" if i % 2 else "client"),
                Tag("http.method", STRING, "GET"),
                Tag("http.url", STRING, "http://svc/api/items/%d" % rnd.randrange(100_000)),
                Tag("http.status_code", LONG, 200 if i % 50 else 500),
                Tag("component", STRING, "requests"))
        logs = (Log(T0 + i * 10 + 5, (Tag("event", STRING, "cache miss"),
                                      Tag("key", STRING, "item:%d" % rnd.randrange(100_000)))),)
        refs = (Reference(CHILD_OF, trace, parent),) if parent else ()
        spans.append(Span(trace, span_id, parent, "op-%d" % (i % 20), 1, T0 + i * 10,
                          100 + i % 1000, tags, logs, refs, processes[i % 8]))
        parent = span_id
    return spans


def measure(spans: List[Span], path: str) -> Tuple[float, LocalStore]:
    """Seconds to write ``spans`` in batches into a new store at ``path`` (left open)."""
    store = LocalStore(path)
    started = time.perf_counter()
    for first in range(0, len(spans), BATCH):
        store.write_spans(spans[first:first + BATCH])
    return time.perf_counter() - started, store


def main(argv: List[str]) -> None:
    count = int(argv[0]) if argv else 100_000
    runs = int(argv[1]) if len(argv) > 1 else 5
    spans = typical_spans(count)
    rates = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "spans.db")
            seconds, store = measure(spans, path)
            store.close()
            rates.append(count / seconds)
            size = os.path.getsize(path)
    print("%d spans in batches of %d, %d runs: best %.0f spans/s, median %.0f spans/s; "
          "file %.1f MB" % (count, BATCH, runs, max(rates), statistics.median(rates),
                            size / 1e6))


if __name__ == "__main__":
    main(sys.argv[1:])
