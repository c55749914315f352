"""The query API over SLS: the fixture traces written in the reference layout (the sink's
``span_contents``) into ``opentracing_sls.testing.sls_server`` through the official SDK,
read back by ``SlsReader`` with GetLogs (search paging and SQL analysis), and compared with
the local store's answers to the same Jaeger UI requests."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

pytest.importorskip("aliyun.log")

from aliyun.log import LogClient, LogItem, PutLogsRequest  # noqa: E402

from opentracing_sls.shim.query_reader import LocalReader  # noqa: E402
from opentracing_sls.shim.sls_client import Credentials, SlsClient  # noqa: E402
from opentracing_sls.shim.sls_config import parse_endpoint  # noqa: E402
from opentracing_sls.shim.sls_decode import rfc3339_micros, span_from_contents  # noqa: E402
from opentracing_sls.shim.sls_provision import index_config  # noqa: E402
from opentracing_sls.shim.sls_reader import SlsReader, dependency_links  # noqa: E402
from opentracing_sls.shim.sls_schema import log_time, span_contents  # noqa: E402
from opentracing_sls.testing.sls_server import SlsServer  # noqa: E402
from opentracing_sls.testing.sls_sql import run_sql  # noqa: E402

from .conftest import BIG, BIG_SPANS, NOW_US, SHOP, QueryServer, fixture_spans  # noqa: E402

PROJECT = "traces-test"
LOGSTORE = "jaeger-span"


@pytest.fixture(scope="module")
def sls() -> Iterator[SlsServer]:
    with SlsServer(sql=run_sql) as server:
        client = LogClient(server.endpoint, server.access_key_id, server.access_key_secret,
                           source="127.0.0.1")
        client._isRowIp = True  # a local server (see SlsServer's docstring)
        client.create_project(PROJECT, "query tests")
        client.create_logstore(PROJECT, LOGSTORE, ttl=7, shard_count=1)
        client.create_index(PROJECT, LOGSTORE, index_config())
        spans = fixture_spans()
        for first in range(0, len(spans), 1000):
            items = []
            for span in spans[first:first + 1000]:
                seconds, nanos = log_time(span)
                items.append(LogItem(timestamp=seconds, time_nano_part=nanos,
                                     contents=span_contents(span)))
            client.put_logs(PutLogsRequest(PROJECT, LOGSTORE, "", "0.0.0.0", items))
        yield server


def make_reader(server: SlsServer) -> SlsReader:
    client = SlsClient(parse_endpoint(server.endpoint),
                       Credentials(server.access_key_id, server.access_key_secret), 10.0)
    return SlsReader(client, PROJECT, LOGSTORE)


@pytest.fixture(scope="module")
def sls_server(sls: SlsServer) -> Iterator[QueryServer]:
    from opentracing_sls.shim.query_api import query_app

    server = QueryServer(query_app(make_reader(sls), owns_reader=True))
    yield server
    server.close()


def ui_search(**params: Any) -> str:
    end = NOW_US + 1_000_000
    query: Dict[str, Any] = {"end": end, "limit": 20, "lookback": "1h",
                             "start": end - 3600 * 1_000_000}
    query.update(params)
    return "/api/traces?" + urllib.parse.urlencode(query, doseq=True)


def as_strings(trace: Dict[str, Any]) -> Dict[str, Any]:
    """A trace with every span and process tag value as the string the layout keeps
    (``tags.*`` lose their types in SLS, as in the reference)."""
    def text(tag: Dict[str, Any]) -> Dict[str, Any]:
        value = tag["value"]
        if tag["type"] == "bool":
            value = "true" if value else "false"
        elif tag["type"] == "binary":
            value = "0001ff"  # the layout stores binary as hex
        elif tag["type"] == "float64":
            value = "%.10g" % value
        return {"key": tag["key"], "type": "string", "value": str(value)}

    out = json.loads(json.dumps(trace))
    for span in out["spans"]:
        span["tags"] = [text(tag) for tag in span["tags"]]
    for process in out["processes"].values():
        process["tags"] = [text(tag) for tag in process["tags"]]
    return out


def sorted_spans(trace: Dict[str, Any]) -> List[Any]:
    processes = trace["processes"]
    return sorted((span["spanID"], span["startTime"], json.dumps(
        dict(span, processID=processes[span["processID"]]), sort_keys=True))
        for span in trace["spans"])


# The same Jaeger UI requests, answered by both readers.
SAME_ANSWER = [
    "/api/services",
    "/api/services/frontend/operations",
    "/api/operations?service=frontend&spanKind=server",
    "/api/operations?service=db",
    ui_search(service="frontend"),
    ui_search(service="frontend", operation="GET /checkout"),
    ui_search(service="frontend", operation="GET /checkout", minDuration="1.5s"),
    ui_search(service="frontend", minDuration="100ms", maxDuration="500ms"),
    ui_search(service="frontend", limit=2),
    ui_search(service="api", tags=json.dumps({"error": "true"})),
    ui_search(service="api", tag="error:true"),
    ui_search(service="frontend", tags=json.dumps({"hostname": "fe-1",
                                                   "http.status_code": "200"})),
    ui_search(service="api", tags=json.dumps({"message": "card declined"})),
    ui_search(service="frontend", tags=json.dumps({"http.status_code": "500",
                                                   "error": "true"})),
    ui_search(service="nobody"),
    ui_search(service="frontend", start=NOW_US - 90_000_000),
    "/api/traces?traceID=%032x&traceID=77&traceID=fff" % SHOP,
    "/api/traces/%x" % SHOP,
    "/api/traces/%x" % BIG,
    "/api/traces/00000000000000000000000000000fff",
    "/api/dependencies?endTs=%d&lookback=%d" % (NOW_US // 1000 + 1000, 7 * 86_400_000),
    "/api/dependencies?endTs=%d&lookback=60000" % (NOW_US // 1000 - 86_400_000),
]


@pytest.mark.parametrize("path", SAME_ANSWER)
def test_sls_answers_like_the_local_store(path: str, local_server: QueryServer,
                                          sls_server: QueryServer) -> None:
    local = local_server.get(path)
    remote = sls_server.get(path)
    assert remote.status == local.status, remote.text
    expected, actual = local.json, remote.json
    if path.startswith("/api/traces") and expected["data"]:
        assert [t["traceID"] for t in actual["data"]] == [t["traceID"] for t in
                                                          expected["data"]]
        for want, got in zip(expected["data"], actual["data"]):
            assert sorted_spans(got) == sorted_spans(as_strings(want))
        assert actual["errors"] == expected["errors"]
    else:
        assert actual == expected


def test_search_results_are_complete_traces(sls_server: QueryServer) -> None:
    body = sls_server.get(ui_search(service="frontend")).json
    sizes = {trace["traceID"]: len(trace["spans"]) for trace in body["data"]}
    assert sizes["%016x" % BIG] == BIG_SPANS  # 21 pages of 100 logs
    assert sizes["%032x" % SHOP] == 4


def test_bad_parameters_are_400_over_sls_too(sls_server: QueryServer) -> None:
    response = sls_server.get("/api/traces?service=api&minDuration=fast")
    assert response.status == 400
    assert "unable to parse param 'minDuration'" in response.json["errors"][0]["msg"]


def test_stats_agree_with_the_local_store(local_server: QueryServer,
                                          sls_server: QueryServer) -> None:
    for path in ("/api/stats?service=api&lookback=1h", "/api/stats?lookback=1h"):
        local = local_server.get(path).json["data"]
        remote = sls_server.get(path).json["data"]
        key = lambda row: (row["service"], row["operation"], row["spanKind"])  # noqa: E731
        assert sorted(remote, key=key) == sorted(local, key=key)
    charge = [row for row in remote if row["operation"] == "charge"]
    assert charge[0]["errors"] == 1 and charge[0]["p99"] == 250_000


def test_an_sls_failure_is_a_500_with_the_reason(sls: SlsServer,
                                                 sls_server: QueryServer) -> None:
    sls.fail_next(1, "ReadQuotaExceed", 403)
    response = sls_server.get("/api/services")
    assert response.status == 500
    message = response.json["errors"][0]["msg"]
    assert message.startswith("aliyun_sls storage error:") and "ReadQuotaExceed" in message
    assert sls_server.get("/api/services").status == 200  # the next call works again


def test_the_reader_queries_sls_as_documented(sls: SlsServer) -> None:
    """The statements really go to GetLogs: service list by SQL, traces by paged search."""
    reader = make_reader(sls)
    before = sls.request_count("get_logs")
    assert reader.services() == ["api", "db", "frontend", "mailer"]
    traces = reader.get_traces([BIG])
    assert len(traces[BIG]) == BIG_SPANS
    # 1 statement for the services, 21 pages of at most 100 logs for the big trace.
    assert sls.request_count("get_logs") - before == 1 + 21


def test_the_reader_follows_storage_type(sls: SlsServer, tmp_path) -> None:
    from opentracing_sls.shim.config import resolve
    from opentracing_sls.shim.query_server import build_reader

    config = resolve(sls_flags(sls, tmp_path), environ={})
    reader = build_reader(config, create=False)
    assert isinstance(reader, SlsReader)
    assert len(reader.get_traces([SHOP])[SHOP]) == 4
    # With a local sink as well, the local store is read.
    config["storage.type"] = ("aliyun_sls", "local")
    config["storage.local.path"] = str(tmp_path / "spans.db")
    local = build_reader(config, create=True)
    assert isinstance(local, LocalReader)
    local.close()


def sls_flags(sls: SlsServer, tmp_path, logstore: str = LOGSTORE) -> Dict[str, str]:
    return {"storage.type": "aliyun_sls", "storage.aliyun_sls.endpoint": sls.endpoint,
            "storage.aliyun_sls.project": PROJECT, "storage.aliyun_sls.logstore": logstore,
            "storage.aliyun_sls.accesskey.id": sls.access_key_id,
            "storage.aliyun_sls.accesskey.secret": sls.access_key_secret,
            "storage.aliyun_sls.batch.linger_ms": "50",
            "spool.path": str(tmp_path / "spool")}


def test_a_shim_writing_to_sls_serves_its_traces_on_the_query_port(sls: SlsServer,
                                                                    tmp_path) -> None:
    """End to end: Zipkin spans -> shim -> aliyun_sls sink -> SLS -> query port -> JSON."""
    import time
    import urllib.request

    from opentracing_sls.shim.config import resolve
    from opentracing_sls.shim.server import Shim
    from opentracing_sls.testing import free_ports

    zipkin, query = free_ports(2)
    flags = sls_flags(sls, tmp_path, logstore="shim-spans")
    flags.update({"listen.host": "127.0.0.1", "listen.zipkin_port": str(zipkin),
                  "listen.query_port": str(query)})
    for key in ("compact_port", "binary_port", "http_port", "sampling_port", "admin_port"):
        flags["listen." + key] = "0"
    shim = Shim(resolve(flags, environ={}))
    shim.start()
    try:
        now = int(time.time() * 1_000_000)
        trace = "5af7183fb1d4cf5f8f2c5c2e3fa4e6b1"
        body = json.dumps([
            {"traceId": trace, "id": "0000000000000001", "name": "get /", "timestamp": now,
             "duration": 900, "kind": "SERVER", "localEndpoint": {"serviceName": "gateway"},
             "tags": {"http.status_code": "503", "error": "true"}},
            {"traceId": trace, "id": "0000000000000002", "parentId": "0000000000000001",
             "name": "get /stock", "timestamp": now + 50, "duration": 700, "kind": "SERVER",
             "localEndpoint": {"serviceName": "inventory"}}]).encode()
        request = urllib.request.Request("http://127.0.0.1:%d/api/v2/spans" % zipkin,
                                         data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 202
        base = "http://127.0.0.1:%d" % query
        deadline = time.monotonic() + 20
        found: List[Any] = []
        while not found:
            assert time.monotonic() < deadline, "the spans never reached SLS"
            with urllib.request.urlopen(base + "/api/traces?service=gateway&lookback=1h&"
                                        "tags=%7B%22error%22%3A%22true%22%7D") as response:
                found = json.loads(response.read())["data"]
            time.sleep(0.1)
        (result,) = found
        assert result["traceID"] == trace and len(result["spans"]) == 2
        with urllib.request.urlopen(base + "/api/dependencies") as response:
            assert json.loads(response.read())["data"] == [
                {"parent": "gateway", "child": "inventory", "callCount": 1}]
    finally:
        shim.stop(timeout=5)


def test_contents_round_trip_through_the_layout() -> None:
    for span in fixture_spans()[:7]:
        back = span_from_contents(dict(span_contents(span)))
        assert (back.trace_id, back.span_id, back.parent_id, back.operation_name,
                back.start_time, back.duration, back.flags) == (
            span.trace_id, span.span_id, span.parent_id, span.operation_name,
            span.start_time, span.duration, span.flags)
        assert back.logs == span.logs  # typed log fields survive
        assert back.references == span.references
        assert [tag.key for tag in back.tags] == [tag.key for tag in span.tags]
        assert back.process.service_name == span.process.service_name


def test_log_times_in_other_zones_and_precisions() -> None:
    assert rfc3339_micros("1970-01-01T00:00:01Z") == 1_000_000
    assert rfc3339_micros("2023-11-14T22:13:20.123456789Z") == 1_700_000_000_123_456
    assert rfc3339_micros("2023-11-15T06:13:20.5+08:00") == 1_700_000_000_500_000
    with pytest.raises(ValueError):
        rfc3339_micros("yesterday")


def test_dependency_links_rule() -> None:
    rows = [("t", "1", "0", "web"), ("t", "2", "1", "api"), ("t", "3", "2", "api"),
            ("t", "4", "3", "db"), ("t", "4", "3", "db"), ("u", "9", "1", "api")]
    # 3 -> 2 is inside api; 4 is one call even if stored twice; u's parent is not in view.
    assert dependency_links(rows) == [("api", "db", 1), ("web", "api", 1)]


DOCS = Path(__file__).resolve().parents[2] / "docs" / "query-ui.md"


def test_the_documented_analysis_examples_run(sls: SlsServer) -> None:
    examples = re.findall(r"```sls\n(.*?)\n```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert len(examples) >= 5
    client = LogClient(sls.endpoint, sls.access_key_id, sls.access_key_secret,
                       source="127.0.0.1")
    client._isRowIp = True
    now = NOW_US // 1_000_000
    for example in examples:
        query = example.replace('"productpage"', '"frontend"')  # the fixtures' front service
        rows = client.get_log(PROJECT, LOGSTORE, now - 86400, now + 60, query=query,
                              size=0).get_logs()
        assert rows, "no rows for the documented example %r" % example
    # The join example finds the fixtures' edges.
    join = next(e for e in examples if " join " in e)
    rows = [log.get_contents() for log in client.get_log(
        PROJECT, LOGSTORE, now - 86400, now + 60, query=join, size=0).get_logs()]
    assert {"caller": "frontend", "callee": "mailer", "calls": "1"} in rows


def test_query_command_over_sls(sls: SlsServer, tmp_path) -> None:
    """``opentracing-sls query --storage.type aliyun_sls ...`` as a process, secret from the
    environment."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from opentracing_sls.testing import free_ports

    [port] = free_ports(1)
    env = dict(os.environ, OPENTRACING_SLS_STORAGE_ALIYUN_SLS_ACCESSKEY_SECRET=
               sls.access_key_secret)
    process = subprocess.Popen(
        [sys.executable, "-m", "opentracing_sls.cli", "query", "--storage.type", "aliyun_sls",
         "--storage.aliyun_sls.endpoint", sls.endpoint, "--storage.aliyun_sls.project", PROJECT,
         "--storage.aliyun_sls.accesskey.id", sls.access_key_id, "--listen.host", "127.0.0.1",
         "--listen.query_port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/api/traces/%x" % (port, SHOP),
                                            timeout=5) as response:
                    trace = json.loads(response.read())["data"][0]
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert len(trace["spans"]) == 4
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "over the aliyun_sls store" in output
    assert sls.access_key_secret not in output
