"""py_zipkin as a real Zipkin client: its transport POSTs v2 and v1 JSON to a running shim,
and `opentracing-sls traces get --json` shows the trace correctly parented."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from typing import Any, Dict, List

import pytest

pytest.importorskip("py_zipkin")
from py_zipkin import Encoding, Kind  # noqa: E402
from py_zipkin.transport import BaseTransportHandler  # noqa: E402
from py_zipkin.zipkin import zipkin_span  # noqa: E402


class HttpTransport(BaseTransportHandler):
    """What a py_zipkin user writes: POST each encoded payload to the collector."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: List[int] = []

    def get_max_payload_bytes(self) -> None:
        return None

    def send(self, payload: Any) -> None:
        if isinstance(payload, str):  # the JSON encodings hand over text
            payload = payload.encode("utf-8")
        request = urllib.request.Request(self.url, data=payload,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            self.statuses.append(response.status)


def _trace(store: str, trace_id: str, spans: int) -> Dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        out = subprocess.run([sys.executable, "-m", "opentracing_sls.cli", "traces",
                              "--store", store, "get", "--json", trace_id],
                             capture_output=True, text=True, timeout=60)
        if out.returncode == 0:
            data = json.loads(out.stdout)["data"]
            if data and len(data[0]["spans"]) >= spans:
                return data[0]
        assert time.monotonic() < deadline, out.stdout + out.stderr
        time.sleep(0.2)


@pytest.mark.parametrize("encoding, path", [(Encoding.V2_JSON, "/api/v2/spans"),
                                            (Encoding.V1_JSON, "/api/v1/spans")])
def test_py_zipkin_client_to_live_shim(shim_factory, encoding, path):
    running = shim_factory()
    transport = HttpTransport(running.url("zipkin_port", path))
    with zipkin_span(service_name="frontend", span_name="GET /home", transport_handler=transport,
                     sample_rate=100.0, encoding=encoding, kind=Kind.SERVER) as root:
        root.update_binary_annotations({"http.path": "/home"})
        with zipkin_span(service_name="frontend", span_name="SELECT books",
                         kind=Kind.CLIENT) as child:
            child.update_binary_annotations({"db.statement": "SELECT 1"})
            with zipkin_span(service_name="frontend", span_name="render", kind=Kind.LOCAL):
                pass
        trace_id = root.zipkin_attrs.trace_id
    assert transport.statuses and set(transport.statuses) == {202}  # what Envoy expects
    trace = _trace(running.store_path, trace_id, 3)
    spans = {s["operationName"].lower(): s for s in trace["spans"]}
    assert set(spans) == {"get /home", "select books", "render"}
    root_span, query, render = spans["get /home"], spans["select books"], spans["render"]
    assert all(s["traceID"] == trace_id.rjust(len(s["traceID"]), "0") for s in spans.values())
    assert root_span["references"] == []
    assert query["references"] == [{"refType": "CHILD_OF", "traceID": root_span["traceID"],
                                    "spanID": root_span["spanID"]}]
    assert render["references"][0]["spanID"] == query["spanID"]
    kinds = {name: {t["key"]: t["value"] for t in s["tags"]}.get("span.kind")
             for name, s in spans.items()}
    assert kinds["get /home"] == "server" and kinds["select books"] == "client"
    tags = {t["key"]: t["value"] for t in query["tags"]}
    assert tags["db.statement"] == "SELECT 1"
    assert trace["processes"][query["processID"]]["serviceName"] == "frontend"
