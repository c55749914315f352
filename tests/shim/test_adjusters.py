"""Query-time re-parenting of a Zipkin shared span's server-side children (Jaeger's
SpanIDDeduper): unit rules, then Istio 1.0 v1 JSON through a live shim to `traces get --json`
and the query API."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from typing import Any, Dict, List

from opentracing_sls.shim.adjusters import reparent_shared_children
from opentracing_sls.shim.jaeger_json import trace_to_json
from opentracing_sls.shim.model import CHILD_OF, FOLLOWS_FROM, Process, Reference, Span
from opentracing_sls.shim.zipkin_common import SHARED_TAG, shared_server_span_id

from .test_zipkin_v1 import DETAILS, PARENT, SHARED, TRACE, ann, istio10_client, istio10_server

T = 0xABC
PROC = Process("svc", ())


def span(span_id: int, parent_id: int, *, shared: bool = False, refs: Any = None) -> Span:
    references = refs if refs is not None else (
        (Reference(CHILD_OF, T, parent_id),) if parent_id else ())
    return Span(T, span_id, parent_id, "op-%x" % span_id, 1, 0, 1,
                (SHARED_TAG,) if shared else (), (), references, PROC)


def test_children_of_the_shared_id_move_under_the_server_half() -> None:
    client = span(0x10, 0x1)
    server = span(0x20, 0x10, shared=True)
    app_child = span(0x30, 0x10)  # made in the server's process, under the id it received
    follower = span(0x40, 0x10, refs=(Reference(CHILD_OF, T, 0x10),
                                      Reference(FOLLOWS_FROM, T, 0x10)))
    other = span(0x50, 0x1)
    out = {s.span_id: s for s in reparent_shared_children(
        [client, server, app_child, follower, other])}
    assert out[0x10] is client and out[0x20] is server and out[0x50] is other
    assert out[0x30].parent_id == 0x20
    assert out[0x30].references == (Reference(CHILD_OF, T, 0x20),)
    # only the parent reference moves; a FOLLOWS_FROM link to the client half stays
    assert out[0x40].references == (Reference(CHILD_OF, T, 0x20), Reference(FOLLOWS_FROM, T, 0x10))


def test_traces_without_shared_spans_are_untouched() -> None:
    spans = [span(0x10, 0x1), span(0x20, 0x10), span(0x30, 0x20)]
    assert reparent_shared_children(spans) == spans
    # a span tagged shared is looked at only as the server half of its parent's id
    assert reparent_shared_children([span(0x20, 0x10, shared=True)]) == [
        span(0x20, 0x10, shared=True)]


def test_trace_json_shows_the_server_side_work_inside_the_server_span() -> None:
    trace = trace_to_json([span(0x10, 0x1), span(0x20, 0x10, shared=True), span(0x30, 0x10)])
    refs = {s["spanID"]: s["references"] for s in trace["spans"]}
    assert refs["0000000000000030"] == [
        {"refType": "CHILD_OF", "traceID": "0000000000000abc", "spanID": "0000000000000020"}]


def _details_work() -> Dict[str, Any]:
    # details' own outgoing call, made while serving the shared request: its parent is the
    # shared id, the only id details' sidecar passed on.
    return {"traceId": TRACE, "name": "ratings:9080/*", "id": "c0ffee0000000001",
            "parentId": SHARED, "timestamp": 1532000000102000, "duration": 1000,
            "annotations": [ann(1532000000102000, "cs", DETAILS),
                            ann(1532000000103000, "cr", DETAILS)]}


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_istio10_shared_span_children_through_a_live_shim(shim_factory) -> None:
    running = shim_factory()
    body = json.dumps([istio10_client(), istio10_server(), _details_work()]).encode()
    request = urllib.request.Request(running.url("zipkin_port", "/api/v1/spans"), data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 202
    server_id = "%016x" % shared_server_span_id(int(TRACE, 16), int(SHARED, 16))
    deadline = time.monotonic() + 15
    while True:
        out = subprocess.run([sys.executable, "-m", "opentracing_sls.cli", "traces", "--store",
                              running.store_path, "get", "--json", TRACE],
                             capture_output=True, text=True, timeout=60)
        data = json.loads(out.stdout)["data"] if out.returncode == 0 else []
        if data and len(data[0]["spans"]) == 3:
            break
        assert time.monotonic() < deadline, out.stdout + out.stderr
        time.sleep(0.2)
    parents: Dict[str, List[str]] = {s["spanID"]: [r["spanID"] for r in s["references"]]
                                     for s in data[0]["spans"]}
    assert parents[SHARED] == [PARENT]
    assert parents[server_id] == [SHARED]
    assert parents["c0ffee0000000001"] == [server_id]
    api = _get(running.url("query_port", "/api/traces/" + TRACE))
    assert {s["spanID"]: [r["spanID"] for r in s["references"]]
            for s in api["data"][0]["spans"]} == parents
