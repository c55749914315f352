"""What the demo prints at the end: how much was stored, and the last page view's trace.

Reads the shim's local store through ``LocalStore`` and lays the trace out with the tree
helpers of ``opentracing-sls traces`` (``span_tree``, ``trace_extent``, ``is_error``), adding
a timeline bar per span and the time spent in each service.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set
from urllib.parse import urlsplit

from opentracing_sls.shim.model import Span, span_kind
from opentracing_sls.shim.store import LocalStore, StoreError, TraceQuery
from opentracing_sls.shim.traces_cli import is_error, span_tree, trace_extent

PAGE_SERVICE = "productpage"
PAGE_OPERATION = "/productpage"
_BAR = 32


@dataclass
class StoreCounts:
    traces: int
    spans: int
    page_views: int


def open_store(path: str, timeout: float = 10.0) -> LocalStore:
    """The shim's store, read only, once the shim has created it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return LocalStore(path, create=False)
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def counts(store: LocalStore) -> StoreCounts:
    traces: Set[int] = set()
    for service in store.services():
        traces.update(store.find_trace_ids(TraceQuery(service=service, limit=0)))
    pages = store.find_trace_ids(TraceQuery(service=PAGE_SERVICE, operation=PAGE_OPERATION,
                                            limit=0))
    return StoreCounts(len(traces), store.span_count(), len(pages))


def services_of(spans: Sequence[Span]) -> Set[str]:
    return {span.process.service_name for span in spans}


def last_page_view(store: LocalStore) -> List[Span]:
    """The spans of the newest ``GET /productpage`` trace (empty if there is none)."""
    traces = store.find_traces(TraceQuery(service=PAGE_SERVICE, operation=PAGE_OPERATION,
                                          limit=1))
    return traces[0] if traces else []


def wait_for_page_view(store: LocalStore, services: Set[str], spans_at_least: int = 0,
                       timeout: float = 10.0) -> List[Span]:
    """The newest page view's spans once they include every service of ``services`` and at
    least ``spans_at_least`` spans (the services flush on a timer); what is there at the
    timeout otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        spans = last_page_view(store)
        if services <= services_of(spans) and len(spans) >= spans_at_least:
            # Spans of one flush can arrive in two datagrams: give stragglers a moment.
            time.sleep(0.3)
            return last_page_view(store)
        if time.monotonic() > deadline:
            return spans
        time.sleep(0.1)


def service_times(spans: Sequence[Span]) -> Dict[str, int]:
    """µs each service spent serving: the sum of its server spans (client spans are the
    caller's wait, not its work)."""
    times: Dict[str, int] = {}
    for span in spans:
        if span_kind(span) == "server":
            name = span.process.service_name
            times[name] = times.get(name, 0) + span.duration
    return times


def _bar(span: Span, start: int, total: int) -> str:
    total = max(total, 1)
    left = int((span.start_time - start) * _BAR / total)
    width = max(1, int(round(span.duration * _BAR / total)))
    left = min(left, _BAR - 1)
    width = min(width, _BAR - left)
    return "|" + " " * left + "#" * width + " " * (_BAR - left - width) + "|"


def format_trace(spans: Sequence[Span]) -> List[str]:
    """The trace as a tree: one line per span with service, operation, timeline, duration."""
    if not spans:
        return ["(no trace)"]
    start, total = trace_extent(spans)
    trace_id = "%032x" % spans[0].trace_id
    trace_id = trace_id[16:] if trace_id.startswith("0" * 16) else trace_id
    lines = ["trace %s: %d spans, %d services, %.1f ms"
             % (trace_id, len(spans), len(services_of(spans)), total / 1000)]
    rows = []
    for depth, span in span_tree(spans):
        kind = span_kind(span)
        label = "%s%s %s" % ("  " * depth, span.process.service_name, span.operation_name)
        url = next((str(t.value) for t in span.tags if t.key == "http.url"), "")
        if kind == "client" and url:
            label += " " + urlsplit(url).path
        rows.append((label, _bar(span, start, total), span.duration,
                     "  ERROR" if is_error(span) else ""))
    width = max(len(row[0]) for row in rows)
    for label, bar, duration, error in rows:
        lines.append("  %s  %s %9.2f ms%s" % (label.ljust(width), bar, duration / 1000, error))
    times = service_times(spans)
    if times:
        lines.append("  time in each service: " + ", ".join(
            "%s %.2f ms" % (name, times[name] / 1000)
            for name in sorted(times, key=lambda n: -times[n])))
    return lines


def store_size(path: str) -> Optional[int]:
    try:
        return sum(os.path.getsize(path + suffix) for suffix in ("", "-wal")
                   if os.path.exists(path + suffix))
    except OSError:
        return None
