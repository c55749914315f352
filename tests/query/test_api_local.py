"""The query API over the local store, replaying the Jaeger UI's request shapes
(``packages/jaeger-ui/src/api/jaeger.js`` and the search form's query string)."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from typing import Any, Dict, List

import pytest

from opentracing_sls.shim.query_reader import LocalReader

from .conftest import BIG_INT, BIG_SPANS, NOW_US, QueryServer

ENVELOPE_KEYS = {"data", "total", "limit", "offset", "errors"}


def ui_search(**params: Any) -> str:
    """The query string the Jaeger UI sends for a search (it computes start/end from the
    lookback, sends the lookback too, and leaves empty fields out)."""
    end = NOW_US + 1_000_000
    query: Dict[str, Any] = {"end": end, "limit": 20, "lookback": "1h",
                             "start": end - 3600 * 1_000_000}
    query.update(params)
    return "/api/traces?" + urllib.parse.urlencode(query, doseq=True)


def traces_of(body: Dict[str, Any]) -> List[str]:
    return [trace["traceID"] for trace in body["data"]]


def test_services(local_server: QueryServer) -> None:
    response = local_server.get("/api/services")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json == {"data": ["api", "db", "frontend", "mailer"], "total": 4,
                             "limit": 0, "offset": 0, "errors": None}


def test_legacy_operations_are_unique_names(local_server: QueryServer) -> None:
    body = local_server.get("/api/services/frontend/operations").json
    assert body["data"] == ["GET /", "GET /checkout", "batch", "step-0", "step-1", "step-2",
                            "step-3", "step-4"]
    assert body["total"] == 8
    assert local_server.get("/api/services/nobody/operations").json["data"] == []
    # A service name that needs escaping in a path.
    assert local_server.get("/api/services/%2Fodd%20name/operations").status == 200


def test_operations_with_span_kind(local_server: QueryServer) -> None:
    body = local_server.get("/api/operations?service=frontend&spanKind=server").json
    assert body["data"] == [{"name": "GET /", "spanKind": "server"},
                            {"name": "GET /checkout", "spanKind": "server"},
                            {"name": "batch", "spanKind": "server"}]
    every = local_server.get("/api/operations?service=db").json["data"]
    assert {"name": "SELECT", "spanKind": "client"} in every
    assert {"name": "step-2", "spanKind": ""} in every


@pytest.mark.parametrize("path,message", [
    ("/api/operations", "parameter 'service' is required"),
    ("/api/operations?service=api&spanKind=sideways", "'spanKind'"),
    ("/api/traces?limit=20", "parameter 'service' is required"),
    ("/api/traces?service=api&start=yesterday", "unable to parse param 'start'"),
    ("/api/traces?service=api&end=-5", "unable to parse param 'end'"),
    ("/api/traces?service=api&limit=many", "unable to parse param 'limit'"),
    ("/api/traces?service=api&limit=-1", "unable to parse param 'limit'"),
    ("/api/traces?service=api&minDuration=10", "unable to parse param 'minDuration'"),
    ("/api/traces?service=api&maxDuration=fast", "unable to parse param 'maxDuration'"),
    ("/api/traces?service=api&minDuration=-5ms", "must not be negative"),
    ("/api/traces?service=api&minDuration=2s&maxDuration=1s",
     "'maxDuration' should be greater than 'minDuration'"),
    ("/api/traces?service=api&tags=error%3Dtrue", "malformed 'tags' parameter"),
    ("/api/traces?service=api&tags=%5B1%5D", "malformed 'tags' parameter"),
    ("/api/traces?service=api&tags=%7B%22a%22%3A%7B%7D%7D", "the value of 'a'"),
    ("/api/traces?service=api&tag=error", "expecting key:value"),
    ("/api/traces?service=api&start=20&end=10", "'end' (10) is before 'start' (20)"),
    ("/api/traces?service=api&lookback=forever", "unable to parse param 'lookback'"),
    ("/api/traces?traceID=xyz", "unable to parse param 'traceID'"),
    ("/api/traces/not-hex", "unable to parse param 'traceID'"),
    ("/api/traces/%s" % ("1" * 33), "1 to 32 hex digits"),
    ("/api/dependencies?endTs=now", "unable to parse param 'endTs'"),
    ("/api/dependencies?lookback=0", "unable to parse param 'lookback'"),
    ("/api/stats?start=x", "unable to parse param 'start'"),
])
def test_bad_parameters_are_400_with_a_message(local_server: QueryServer, path: str,
                                               message: str) -> None:
    response = local_server.get(path)
    assert response.status == 400, response.text
    body = response.json
    assert set(body) == ENVELOPE_KEYS and body["data"] is None
    (error,) = body["errors"]
    assert error["code"] == 400
    assert message in error["msg"], error["msg"]


def test_search_returns_full_traces_newest_first(local_server: QueryServer,
                                                 ids: Dict[str, str]) -> None:
    body = local_server.get(ui_search(service="frontend")).json
    assert set(body) == ENVELOPE_KEYS and body["errors"] is None
    assert body["total"] == 0 and body["limit"] == 0 and body["offset"] == 0
    assert traces_of(body) == [ids["slow"], ids["home"], ids["shop"], ids["big"]]
    by_id = {trace["traceID"]: trace for trace in body["data"]}
    assert len(by_id[ids["shop"]]["spans"]) == 4  # every span, not a summary span
    assert len(by_id[ids["big"]]["spans"]) == BIG_SPANS
    # The lookback is ignored when start is given (as Jaeger does): a narrower window wins.
    narrow = local_server.get(ui_search(service="frontend", lookback="2d",
                                        start=NOW_US - 90_000_000)).json
    assert traces_of(narrow) == [ids["slow"], ids["home"]]


def test_trace_json_follows_jaeger_conventions(local_server: QueryServer,
                                               ids: Dict[str, str]) -> None:
    (trace,) = local_server.get("/api/traces/" + ids["shop"]).json["data"]
    assert trace["traceID"] == "0000000000abcdef0000000000001234"  # padded, lower-case
    spans = {span["operationName"]: span for span in trace["spans"]}
    assert trace["processes"] == {
        "p1": {"serviceName": "frontend", "tags": [
            {"key": "hostname", "type": "string", "value": "fe-1"},
            {"key": "ip", "type": "string", "value": "10.0.0.7"},
            {"key": "jaeger.version", "type": "string", "value": "Python-4.8.0"}]},
        "p2": {"serviceName": "api", "tags": [
            {"key": "hostname", "type": "string", "value": "api-1"}]},
        "p3": {"serviceName": "db", "tags": []},
        "p4": {"serviceName": "mailer", "tags": []}}
    assert [spans[op]["processID"] for op in ("GET /checkout", "charge", "SELECT",
                                              "send-mail")] == ["p1", "p2", "p3", "p4"]
    assert spans["GET /checkout"]["references"] == []
    assert spans["charge"]["references"] == [
        {"refType": "CHILD_OF", "traceID": trace["traceID"], "spanID": "0000000000000001"}]
    assert spans["send-mail"]["references"] == [
        {"refType": "FOLLOWS_FROM", "traceID": trace["traceID"], "spanID": "0000000000000001"}]
    charge = spans["charge"]
    assert charge["spanID"] == "0000000000000002"
    tags = {tag["key"]: tag for tag in charge["tags"]}
    # Beyond 2^53 an int64 is a string (JavaScript would round it); the rest keep types.
    assert tags["big"] == {"key": "big", "type": "int64", "value": str(BIG_INT)}
    assert tags["error"] == {"key": "error", "type": "bool", "value": True}
    assert tags["order.total"] == {"key": "order.total", "type": "float64", "value": 12.5}
    assert tags["blob"] == {"key": "blob", "type": "binary", "value": "AAH/"}
    assert charge["logs"] == [{"timestamp": charge["startTime"] + 10_000, "fields": [
        {"key": "event", "type": "string", "value": "error"},
        {"key": "message", "type": "string", "value": "card declined"}]}]
    assert charge["duration"] == 250_000 and isinstance(charge["startTime"], int)
    # The raw body really has the string form, not a float that happens to compare equal.
    raw = local_server.get("/api/traces/" + ids["shop"]).text
    assert '"value":"%d"' % BIG_INT in raw


def test_trace_ids_of_any_length_are_accepted(local_server: QueryServer) -> None:
    assert local_server.get("/api/traces/77").json["data"][0]["traceID"] == "0000000000000077"
    assert local_server.get("/api/traces/ABCDEF0000000000001234").status == 200


def test_unknown_trace_is_404_with_the_jaeger_envelope(local_server: QueryServer) -> None:
    response = local_server.get("/api/traces/00000000000000000000000000000fff")
    assert response.status == 404
    assert response.json == {"data": None, "total": 0, "limit": 0, "offset": 0,
                             "errors": [{"code": 404, "msg": "trace not found"}]}


def test_multi_get_reports_missing_ids(local_server: QueryServer, ids: Dict[str, str]) -> None:
    body = local_server.get("/api/traces?traceID=%s&traceID=%s&traceID=fff" % (
        ids["home"], ids["shop"])).json
    assert traces_of(body) == [ids["home"], ids["shop"]]
    assert body["errors"] == [{"msg": "trace not found", "traceID": "0000000000000fff"}]
    # Multi-get needs no service, and ignores the search parameters.
    assert local_server.get("/api/traces?traceID=%s&limit=1&service=db" % ids["slow"]
                            ).json["data"][0]["traceID"] == ids["slow"]


def test_search_by_tags_json_and_legacy_tag(local_server: QueryServer,
                                            ids: Dict[str, str]) -> None:
    def found(**params: Any) -> List[str]:
        response = local_server.get(ui_search(**params))
        assert response.status == 200, response.text
        return traces_of(response.json)

    assert found(service="api", tags=json.dumps({"error": "true"})) == [ids["shop"]]
    assert found(service="api", tag="error:true") == [ids["shop"]]
    # Process tags and log fields count too; values are compared as strings.
    assert found(service="frontend", tags=json.dumps({"hostname": "fe-1",
                                                      "http.status_code": "200"})) == [
        ids["home"]]
    assert found(service="api", tags=json.dumps({"message": "card declined"})) == [ids["shop"]]
    assert found(service="api", tags=json.dumps({"error": "false"})) == []
    # One span must have every tag: status 500 is on frontend's span, error on api's.
    assert found(service="frontend", tags=json.dumps({"http.status_code": "500",
                                                      "error": "true"})) == []


def test_search_by_operation_duration_and_limit(local_server: QueryServer,
                                                ids: Dict[str, str]) -> None:
    def found(**params: Any) -> List[str]:
        return traces_of(local_server.get(ui_search(**params)).json)

    assert found(service="frontend", operation="GET /checkout") == [ids["slow"], ids["shop"]]
    assert found(service="frontend", operation="GET /checkout", minDuration="1.5s") == [
        ids["slow"]]
    assert found(service="frontend", operation="GET /checkout", maxDuration="1s") == [
        ids["shop"]]
    assert found(service="frontend", minDuration="100ms", maxDuration="500ms") == [ids["shop"]]
    assert found(service="frontend", limit=2) == [ids["slow"], ids["home"]]
    # The UI sends empty duration fields as empty strings in some versions.
    assert found(service="api", minDuration="", maxDuration="") == [ids["home"], ids["shop"],
                                                                     ids["big"]]
    assert found(service="nobody") == []


def test_start_defaults_from_lookback_without_start(local_server: QueryServer,
                                                    ids: Dict[str, str]) -> None:
    # SLOW started 30 s before NOW_US, HOME 60 s before; the suite may have run a while.
    since = (time.time() * 1_000_000 - NOW_US) // 1_000_000
    body = local_server.get("/api/traces?service=frontend&lookback=%ds" % (since + 45)).json
    assert traces_of(body) == [ids["slow"]]
    body = local_server.get("/api/traces?service=frontend&lookback=1d").json
    assert len(body["data"]) == 4


def test_dependencies(local_server: QueryServer) -> None:
    now_ms = NOW_US // 1000 + 1000
    body = local_server.get("/api/dependencies?endTs=%d&lookback=%d"
                            % (now_ms, 7 * 24 * 3600 * 1000)).json
    assert set(body) == ENVELOPE_KEYS and body["errors"] is None
    links = {(link["parent"], link["child"]): link["callCount"] for link in body["data"]}
    # SHOP: frontend->api, api->db, frontend->mailer; HOME: frontend->api; BIG: many.
    assert links[("frontend", "mailer")] == 1
    assert links[("api", "db")] >= 1
    assert links[("frontend", "api")] >= 2
    assert ("mailer", "frontend") not in links
    # A window before every span has no edges.
    old = local_server.get("/api/dependencies?endTs=%d&lookback=60000"
                           % (now_ms - 86_400_000)).json
    assert old["data"] == []


def test_stats_per_operation(local_server: QueryServer) -> None:
    body = local_server.get("/api/stats?service=api&lookback=1h").json
    rows = {row["operation"]: row for row in body["data"]}
    assert rows["charge"] == {"service": "api", "operation": "charge", "spanKind": "server",
                              "count": 1, "errors": 1, "errorRate": 1.0, "p50": 250_000,
                              "p99": 250_000, "max": 250_000}
    assert rows["list"]["errors"] == 0 and rows["list"]["errorRate"] == 0.0
    every = local_server.get("/api/stats?lookback=1h").json["data"]
    assert {row["service"] for row in every} == {"frontend", "api", "db", "mailer"}
    assert body["total"] == len(body["data"])
    assert sum(row["count"] for row in every) == 7 + BIG_SPANS


def test_pretty_print_and_unknown_endpoints(local_server: QueryServer) -> None:
    pretty = local_server.get("/api/services?prettyPrint=true").text
    assert pretty.startswith('{\n  "data": [')
    missing = local_server.get("/api/archive/123")
    assert missing.status == 404
    assert missing.json["errors"][0]["code"] == 404


def test_a_2000_span_trace_is_served_quickly(local_server: QueryServer,
                                             ids: Dict[str, str]) -> None:
    local_server.get("/api/traces/" + ids["big"])  # warm the reader's caches
    started = time.perf_counter()
    response = local_server.get("/api/traces/" + ids["big"])
    elapsed = time.perf_counter() - started
    assert response.status == 200
    (trace,) = response.json["data"]
    assert len(trace["spans"]) == BIG_SPANS
    assert len({span["spanID"] for span in trace["spans"]}) == BIG_SPANS
    assert elapsed < 1.0, "a 2000-span trace took %.3f s" % elapsed


class _FailingReader(LocalReader):
    name = "broken"

    def __init__(self) -> None:  # no store
        pass

    def services(self) -> List[str]:
        raise OSError("disk on fire")

    def close(self) -> None:
        pass


def test_storage_failure_is_500_with_the_reason(serve) -> None:
    server = serve(_FailingReader())
    response = server.get("/api/services")
    assert response.status == 500
    assert response.json["errors"] == [{"code": 500,
                                        "msg": "broken storage error: disk on fire"}]


class _SlowReader(LocalReader):
    def find_traces(self, query: Any) -> List[Any]:
        self.entered.set()
        self.release.wait(10)
        return super().find_traces(query)


def test_a_slow_read_does_not_block_other_requests(serve, store_path: str) -> None:
    reader = _SlowReader.open(store_path)
    reader.entered, reader.release = threading.Event(), threading.Event()
    server = serve(reader, owns_reader=True)
    results: List[int] = []
    slow = threading.Thread(target=lambda: results.append(
        server.get("/api/traces?service=frontend").status))
    slow.start()
    try:
        assert reader.entered.wait(5)
        started = time.perf_counter()
        assert server.get("/api/services", timeout=3).status == 200
        assert time.perf_counter() - started < 1.0
        assert not results  # the search is still waiting
    finally:
        reader.release.set()
        slow.join(10)
    assert results == [200]
