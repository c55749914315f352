"""Helpers of the end-to-end tests: a stack whose services record the headers they receive
(``header_probe.py``), and lookups of a request's trace in the shim's store."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

from bookinfo.stack import BookinfoStack, StackConfig, choose_ports

from opentracing_sls.shim.model import Span, span_kind
from opentracing_sls.shim.store import LocalStore

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "header_probe.py")


def probed_stack(workdir: str, **config: object) -> BookinfoStack:
    records = os.path.join(workdir, "headers.jsonl")

    def command(service: str, port: int, host: str) -> List[str]:
        return [sys.executable, PROBE, service, records, str(port), "--host", host]

    stack = BookinfoStack(StackConfig(workdir=workdir, ports=choose_ports(False),
                                      command=command, **config))  # type: ignore[arg-type]
    stack.records_path = records  # type: ignore[attr-defined]
    return stack


def headers_seen(stack: BookinfoStack, request_id: str) -> Dict[str, Dict[str, str]]:
    """service -> the headers of its (last) request carrying ``x-request-id: request_id``."""
    seen: Dict[str, Dict[str, str]] = {}
    path = stack.records_path  # type: ignore[attr-defined]
    if not os.path.exists(path):
        return seen
    with open(path) as handle:
        for line in handle:
            record = json.loads(line)
            if record["headers"].get("x-request-id") == request_id:
                seen[record["service"]] = record["headers"]
    return seen


def trace_id_of(stack: BookinfoStack, request_id: str) -> int:
    """The trace id the request's downstream calls carried (``x-b3-traceid``)."""
    for headers in headers_seen(stack, request_id).values():
        if "x-b3-traceid" in headers:
            return int(headers["x-b3-traceid"], 16)
    raise AssertionError("no service saw x-b3-traceid with x-request-id %s" % request_id)


def wait_for_trace(store_path: str, trace_id: int, spans: int,
                   timeout: float = 10.0) -> List[Span]:
    """The trace once it has ``spans`` spans (the services flush every 0.2 s)."""
    store = LocalStore(store_path, create=False)
    try:
        deadline = time.monotonic() + timeout
        while True:
            found = store.get_trace(trace_id)
            if len(found) >= spans or time.monotonic() > deadline:
                time.sleep(0.3)  # anything beyond the expected count shows up too
                return store.get_trace(trace_id)
            time.sleep(0.1)
    finally:
        store.close()


def tags(span: Span) -> Dict[str, object]:
    return {tag.key: tag.value for tag in span.tags}


def one(spans: Sequence[Span], service: str, kind: str,
        url_part: Optional[str] = None) -> Span:
    found = [s for s in spans if s.process.service_name == service and span_kind(s) == kind
             and (url_part is None or url_part in str(tags(s).get("http.url", "")))]
    assert len(found) == 1, "expected one %s %s span %s, got %s" % (
        service, kind, url_part or "", [(s.operation_name, tags(s)) for s in spans])
    return found[0]
