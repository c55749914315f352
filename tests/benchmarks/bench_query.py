"""Query latency of the local store: the issue's figures.

``python tests/benchmarks/bench_query.py [--traces 100000] [--spans-per-trace 10] [--path F]``

Builds a store of 1 000 000 spans (100 000 traces of 10 spans, 8 services, 6 operations each,
spread over the last 48 hours; plus one trace of 2 000 spans), then measures:

1. find-traces for service + operation + duration range (limit 20, the API's 48 h window),
   through the store's term index, and the same search as a full table scan of ``spans`` in
   the same run (same answer, checked); the index must win by >= 50x (exit status 1 if not);
2. trace fetch by id (10-span traces and the 2 000-span one), in the store and over HTTP
   through the query API (JSON included);
3. for context: a search matching nothing (every hour's index visited), statistics and
   dependencies of the last hour.

``--path`` keeps the store file between runs (it is rebuilt when its span count differs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Callable, List, Sequence, Tuple

from opentracing_sls.shim.model import CHILD_OF, LONG, STRING, Log, Process, Reference, Span, Tag
from opentracing_sls.shim.store import LocalStore, TraceQuery

HOUR_US = 3_600_000_000
SERVICES = ["svc-%d" % i for i in range(8)]
OPERATIONS = ["GET /api/v%d/items" % i for i in range(6)]
BATCH = 1000
BIG_TRACE = (0xB16 << 64) | 0xB16
BIG_SPANS = 2000
WINDOW_US = 48 * HOUR_US


def build(path: str, traces: int, per_trace: int, now_us: int, seed: int = 7) -> int:
    """Writes the data set; the number of spans written."""
    rnd = random.Random(seed)
    processes = [Process(name, (Tag("hostname", STRING, "%s-host" % name),
                                Tag("ip", STRING, "10.0.0.%d" % i)))
                 for i, name in enumerate(SERVICES)]
    written = 0
    with LocalStore(path) as store:
        batch: List[Span] = []
        for t in range(traces):
            trace_id = rnd.getrandbits(128) or 1
            start = now_us - WINDOW_US + (t * WINDOW_US) // traces
            parent = 0
            for i in range(per_trace):
                span_id = rnd.getrandbits(64) or 1
                duration = rnd.randrange(1_000, 200_000)  # 1-200 ms
                service = (t + i) % len(SERVICES)
                tags = (Tag("span.kind", STRING, "server" if i % 2 else "client"),
                        Tag("http.status_code", LONG, 500 if rnd.random() < 0.02 else 200),
                        Tag("http.url", STRING, "http://svc/items/%d" % rnd.randrange(10_000)))
                logs = (Log(start + i * 100 + 5, (Tag("event", STRING, "cache miss"),)),) \
                    if i == 0 else ()
                refs = (Reference(CHILD_OF, trace_id, parent),) if parent else ()
                batch.append(Span(trace_id, span_id, parent, OPERATIONS[rnd.randrange(6)], 1,
                                  start + i * 100, duration, tags, logs, refs,
                                  processes[service]))
                parent = span_id
            if len(batch) >= BATCH:
                written += store.write_spans(batch)
                batch = []
        big_start = now_us - HOUR_US // 2
        for i in range(BIG_SPANS):  # span i + 1 is a child of span (i - 1) // 4 + 1
            parent = (i - 1) // 4 + 1 if i else 0
            batch.append(Span(BIG_TRACE, i + 1, parent, "step-%d" % (i % 5), 1,
                              big_start + i * 50, 10_000, (Tag("i", LONG, i),), (),
                              (Reference(CHILD_OF, BIG_TRACE, parent),) if i else (),
                              processes[i % 8]))
        written += store.write_spans(batch)
    return written


def scan_find(store: LocalStore, query: TraceQuery) -> List[int]:
    """The same search without the term index: every row of ``spans`` is read."""
    with store._reading() as conn:
        row = conn.execute("SELECT id FROM services WHERE name = ?", (query.service,)).fetchone()
        cursor = conn.execute(
            "SELECT trace_id FROM spans NOT INDEXED WHERE service_id = ? AND operation = ? "
            "AND start_time >= ? AND start_time <= ? AND duration >= ? AND duration <= ? "
            "ORDER BY start_time DESC, id DESC",
            (row[0], query.operation, query.start_min_us, query.start_max_us,
             query.duration_min_us, query.duration_max_us))
        found: dict = {}
        for (trace,) in cursor:
            found.setdefault(int.from_bytes(trace, "big"), None)
            if len(found) >= query.limit:
                break
        return list(found)


def timed(fn: Callable[[], object], runs: int) -> Tuple[List[float], object]:
    times = []
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return times, result


def ms(values: Sequence[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return "median %.2f ms, p95 %.2f ms" % (statistics.median(ordered) * 1000, p95 * 1000)


def serve(path: str) -> Tuple[str, Callable[[], None]]:
    """The query API over the store on a free port; (base URL, stop)."""
    from aiohttp import web

    from opentracing_sls.shim.query_api import query_app
    from opentracing_sls.shim.query_reader import LocalReader

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    app = query_app(LocalReader.open(path), owns_reader=True, ui=False)

    async def start() -> Tuple[web.AppRunner, int]:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, runner.addresses[0][1]

    runner, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)

    return "http://127.0.0.1:%d" % port, stop


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--spans-per-trace", type=int, default=10)
    parser.add_argument("--path", help="store file to build or reuse")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    directory = None
    path = args.path
    if path is None:
        directory = tempfile.TemporaryDirectory()
        path = os.path.join(directory.name, "spans.db")
    expected = args.traces * args.spans_per_trace + BIG_SPANS
    now_us = int(time.time() * 1_000_000)
    if os.path.exists(path):
        with LocalStore(path, create=False) as store:
            if store.span_count() != expected:
                store.close()
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(path + suffix):
                        os.remove(path + suffix)
    if not os.path.exists(path):
        started = time.perf_counter()
        written = build(path, args.traces, args.spans_per_trace, now_us)
        print("built %s: %d spans (%d traces + one of %d spans) in %.1f s, %.0f MB"
              % (path, written, args.traces, BIG_SPANS, time.perf_counter() - started,
                 os.path.getsize(path) / 1e6))
    rnd = random.Random(1)
    failed = False
    with LocalStore(path, create=False) as store:
        print("store: %d spans" % store.span_count())
        end = int(time.time() * 1_000_000)
        queries = [TraceQuery(service=rnd.choice(SERVICES), operation=rnd.choice(OPERATIONS),
                              start_min_us=end - WINDOW_US, start_max_us=end,
                              duration_min_us=50_000, duration_max_us=80_000, limit=20)
                   for _ in range(args.runs)]
        for query in queries[:3]:  # warm the page cache and the reader's caches
            store.find_trace_ids(query)
            scan_find(store, query)
        index_times, scan_times = [], []
        for query in queries:
            t_index, by_index = timed(lambda q=query: store.find_trace_ids(q), 1)
            t_scan, by_scan = timed(lambda q=query: scan_find(store, q), 1)
            assert by_index == by_scan and len(by_index) == 20, (query, by_index, by_scan)
            index_times += t_index
            scan_times += t_scan
        ratio = statistics.median(scan_times) / statistics.median(index_times)
        print("find traces (service + operation + duration 50-80 ms, limit 20, 48 h):")
        print("  term index:      %s" % ms(index_times))
        print("  full table scan: %s" % ms(scan_times))
        print("  index faster by %.0fx (required: >= 50x)" % ratio)
        failed |= ratio < 50
        full = [TraceQuery(service=q.service, operation=q.operation,
                           start_min_us=q.start_min_us, start_max_us=q.start_max_us,
                           duration_min_us=q.duration_min_us,
                           duration_max_us=q.duration_max_us, limit=20) for q in queries]
        times, _ = timed(lambda: store.find_traces(full[0]), args.runs)
        print("  the same search returning the 20 complete traces: %s" % ms(times))
        nothing = TraceQuery(service="svc-1", operation="no such op",
                             start_min_us=end - WINDOW_US, start_max_us=end, limit=20)
        times, _ = timed(lambda: store.find_trace_ids(nothing), 5)
        print("  a search matching nothing (all 48 hours visited): %s" % ms(times))

        sample = [trace for trace in store.find_trace_ids(TraceQuery(
            service="svc-3", start_min_us=end - WINDOW_US, start_max_us=end, limit=500))]
        ids = iter(sample * 2)
        times, _ = timed(lambda: store.get_trace(next(ids)), args.runs)
        print("trace fetch by id (10 spans): %s" % ms(times))
        times, spans = timed(lambda: store.get_trace(BIG_TRACE), 10)
        assert len(spans) == BIG_SPANS
        print("trace fetch by id (2000 spans): %s" % ms(times))
        times, _ = timed(lambda: store.operation_stats(None, end - HOUR_US, end), 5)
        print("statistics of the last hour (every service): %s" % ms(times))
        times, _ = timed(lambda: store.dependencies(end, HOUR_US), 5)
        print("dependencies of the last hour: %s" % ms(times))

    base, stop = serve(path)
    try:
        def get(url: str) -> bytes:
            with urllib.request.urlopen(base + url, timeout=60) as response:
                return response.read()

        get("/api/services")
        big = "/api/traces/%032x" % BIG_TRACE
        times, body = timed(lambda: get(big), 10)
        print("HTTP GET %s (2000 spans, %.0f kB of JSON): %s" % (big[:14] + "...",
                                                                len(body) / 1000, ms(times)))
        search = ("/api/traces?service=svc-2&operation=%s&minDuration=50ms&maxDuration=80ms"
                  "&limit=20&lookback=2d" % urllib.request.quote(OPERATIONS[1]))
        times, _ = timed(lambda: get(search), args.runs)
        print("HTTP GET /api/traces search (20 complete traces): %s" % ms(times))
    finally:
        stop()
    if directory is not None:
        directory.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
