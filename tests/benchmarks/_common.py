"""Shared parts of the peer benchmarks (``bench_span``, ``bench_cpu``, ``bench_throughput``).

Not a benchmark itself (``make bench`` runs ``bench_*.py`` only). Holds the span shape every
benchmark creates (a child of an active parent with three tags (str, int, bool) and one log
of two fields; OpenTelemetry gets three attributes and one event with two attributes), the
pacing and timing loops, and table printing. The sinks live in ``_sinks.py``, the tracers
under test in ``_tracers.py``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jaeger_client
from opentelemetry.sdk.version import __version__ as OTEL_VERSION

import opentracing_sls

# The three tags and the log of the span shape, as the application would write them.
TAG_STR, STR_VALUE = "peer.service", "reviews"
TAG_INT, INT_VALUE = "http.status_code", 200
TAG_BOOL = "cache.hit"
EVENT_NAME = "log"
CHILD_OP = "child"
PARENT_OP = "parent"
WARMUP_OP = "warmup"


# --------------------------------------------------------------------------- versions


def versions() -> Dict[str, str]:
    return {"ours": opentracing_sls.__version__, "jaeger": jaeger_client.__version__,
            "otel": OTEL_VERSION}


def otlp_http_available() -> bool:
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
        import opentelemetry.proto.collector.trace.v1.trace_service_pb2  # noqa: F401
    except ImportError:
        return False
    return True


def print_header(title: str, details: Sequence[str]) -> None:
    v = versions()
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    print("=" * 100)
    print(title)
    print("python %s on %s, %s CPUs, load average %s" % (
        platform.python_version(), platform.machine(), os.cpu_count(),
        " ".join("%.2f" % x if isinstance(x, float) else x for x in load)))
    print("opentracing-sls %s | jaeger-client %s | opentelemetry-sdk %s | OTel exporter: %s" % (
        v["ours"], v["jaeger"], v["otel"], otel_exporter_description()))
    for line in details:
        print(line)
    print("=" * 100)


def otel_exporter_description() -> str:
    if otlp_http_available():
        return "OTLP/HTTP protobuf (OTLPSpanExporter) to a local HTTP sink process"
    return ("JSON-lines over UDP (custom SpanExporter; install "
            "opentelemetry-exporter-otlp-proto-http for OTLP/HTTP)")


def base_parser(description: str) -> argparse.ArgumentParser:
    """The scripts' shared options; also labels the peers' log lines (OpenTelemetry warns on
    stderr for every full queue) so they are not mistaken for results."""
    logging.basicConfig(format="[log %(levelname)s %(name)s] %(message)s")
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="short smoke run (well under 20 s); figures are rougher")
    return parser


# --------------------------------------------------------------------------- tables


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Prints a left-aligned first column and right-aligned figures."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def verdict(ok: bool, text: str) -> None:
    print("%s  %s" % ("PASS" if ok else "FAIL", text))


def fmt_us(seconds: Optional[float], digits: int = 2) -> str:
    return "n/a" if seconds is None else "%.*f" % (digits, seconds * 1e6)


def fmt_ratio(value: Optional[float], of: Optional[float]) -> str:
    if value is None or not of:
        return "n/a"
    return "%.3f x" % (value / of)


# --------------------------------------------------------------------------- loops


def time_interleaved(runs: Dict[str, Callable[[int], None]], n: int, repeats: int,
                     warmup: int, after: Optional[Callable[[str], None]] = None
                     ) -> Dict[str, List[float]]:
    """Seconds per iteration of ``runs[name](n)``, ``repeats`` times each.

    The runs are interleaved, in a rotating order, so a burst of load from elsewhere on the
    machine hits every tracer instead of one. ``after(name)`` runs outside the timed region
    (the benchmarks drain the reporter's backlog there so the repeats are independent).
    The garbage collector stays on, as in an application; a full collection precedes each
    timed run so none of them inherits another's garbage.
    """
    names = list(runs)
    for name in names:
        runs[name](warmup)
        if after is not None:
            after(name)
    results: Dict[str, List[float]] = {name: [] for name in names}
    perf = time.perf_counter
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            start = perf()
            runs[name](n)
            results[name].append((perf() - start) / n)
            if after is not None:
                after(name)
    return results


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def paced(make_span: Callable[[], None], rate: float, duration: float,
          slot: float = 0.001) -> Tuple[int, float]:
    """Calls ``make_span`` ``rate`` times a second for ``duration`` seconds.

    Once per ``slot`` (1 ms) it makes the spans due by the end of that slot, then sleeps until
    the next slot; late wake-ups are caught up in the next burst (at most 50 slots' worth), so
    the average rate is exact. A loop that cannot keep up stops 10 slots after ``duration``
    (the grace absorbs a late last wake-up), short of its count. Returns (calls, seconds).
    """
    perf = time.perf_counter
    sleep = time.sleep
    total = int(rate * duration)
    per_slot = rate * slot
    max_burst = max(1, int(per_slot * 50))
    made = 0
    start = perf()
    end = start + duration + 10 * slot
    while made < total:
        now = perf()
        if now >= end:
            break
        due = min(total, int((now - start) * rate + per_slot))
        burst = min(due - made, max_burst)
        for _ in range(burst):
            make_span()
        made += burst
        delay = start + (int((now - start) / slot) + 1) * slot - perf()
        if delay > 0:
            sleep(delay)
    return made, perf() - start


def noop() -> None:
    """The baseline's stand-in for making a span: same call, no work."""
