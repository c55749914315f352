"""The SLS test server with the unmodified official SDK: resources, PutLogs (compressions,
limits, signatures), GetLogs/histograms with query terms, and fault injection."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import zlib

import pytest
from aliyun.log import (
    GetHistogramsRequest,
    IndexConfig,
    IndexKeyConfig,
    IndexLineConfig,
    LogException,
    LogItem,
    PutLogsRequest,
)
from aliyun.log.auth import AuthV1
from aliyun.log.proto import LogGroupRaw

from opentracing_sls.shim.sls_client import Credentials, SlsClient, SlsError
from opentracing_sls.shim.sls_config import parse_endpoint
from opentracing_sls.testing.sls_server import Limits, SlsServer

P, L = "demo-proj", "jaeger-span"


def prepared(server, sdk, index=True):
    client = sdk(server)
    client.create_project(P, "test")
    client.create_logstore(P, L, ttl=7, shard_count=3)
    if index:
        keys = {"traceID": IndexKeyConfig(token_list=[], index_type="text"),
                "duration": IndexKeyConfig(index_type="long"),
                "operationName": IndexKeyConfig(token_list=[" ", "/"], index_type="text")}
        client.create_index(P, L, IndexConfig(line_config=IndexLineConfig([" ", ","]),
                                              key_config_list=keys))
    return client


def put(client, rows, when=None, **request):
    when = when or int(time.time())
    items = [LogItem(when, list(row.items()), 1) for row in rows]
    client.put_logs(PutLogsRequest(P, L, "", "", items, **request))


def code_of(call):
    with pytest.raises(LogException) as info:
        call()
    return info.value.get_error_code(), info.value.resp_status


def test_resources_round_trip_and_errors(sls_server, sdk):
    client = sdk(sls_server)
    assert code_of(lambda: client.get_project(P)) == ("ProjectNotExist", 404)
    client.create_project(P, "spans")
    assert client.get_project(P).get_description() == "spans"
    assert code_of(lambda: client.create_project(P, "again")) == ("ProjectAlreadyExist", 400)
    assert code_of(lambda: client.get_logstore(P, L)) == ("LogStoreNotExist", 404)
    client.create_logstore(P, L, ttl=9, shard_count=3)
    store = client.get_logstore(P, L)
    assert (store.ttl, store.get_shard_count()) == (9, 3)
    assert len(client.list_shards(P, L).get_shards_info()) == 3
    assert code_of(lambda: client.create_logstore(P, L)) == ("LogStoreAlreadyExist", 400)
    assert code_of(lambda: client.get_index_config(P, L)) == ("IndexConfigNotExist", 400)
    config = IndexConfig(line_config=IndexLineConfig([" "]),
                         key_config_list={"traceID": IndexKeyConfig([], index_type="text")})
    client.create_index(P, L, config)
    assert code_of(lambda: client.create_index(P, L, config)) == ("IndexAlreadyExist", 400)
    got = client.get_index_config(P, L).get_index_config()
    assert got.key_config_list["traceID"].token_list == []
    assert code_of(lambda: client.create_project("Bad_Name", "")) == ("ParameterInvalid", 400)
    assert sls_server.project_of("demo-proj.127.0.0.1") == "demo-proj"
    assert sls_server.project_of("127.0.0.1:8080") == ""
    assert sls_server.project_of("my-proj.sls.example.com") == "my-proj"


def test_put_logs_lz4_none_and_deflate_decode_to_what_was_sent(sls_server, sdk):
    client = prepared(sls_server, sdk)
    put(client, [{"traceID": "a", "n": "1"}])  # lz4, the default
    put(client, [{"traceID": "b", "n": "2"}], compress=False)
    group = LogGroupRaw()
    group.Topic, group.Source = "t", "10.1.2.3"
    log = group.Logs.add()
    log.Time = int(time.time())
    content = log.Contents.add()
    content.Key, content.Value = "traceID", "c中".encode()
    raw = group.SerializeToString()
    client._send("POST", P, zlib.compress(raw), "/logstores/%s/shards/lb" % L, {},
                 {"x-log-bodyrawsize": str(len(raw)), "x-log-compresstype": "deflate",
                  "Content-Type": "application/x-protobuf"})
    logs = sls_server.logs(P, L)
    assert [log.get("traceID") for log in logs] == ["a", "b", "c中"]
    assert logs[2].source == "10.1.2.3" and logs[2].topic == "t"
    assert logs[0].row()["n"] == "1" and logs[0].time_ns == 1
    assert [len(LogGroupRaw.FromString(g).Logs) for g in sls_server.raw_groups(P, L)] == [1, 1, 1]


def test_signatures_v1_v4_and_time(sls_server, sdk, monkeypatch):
    client = prepared(sls_server, sdk)
    assert code_of(lambda: sdk(sls_server, secret="wrong").get_project(P)) == (
        "SignatureNotMatch", 401)
    from aliyun.log import LogClient

    stranger = LogClient(sls_server.endpoint, "nobody", "x", source="127.0.0.1")
    stranger._isRowIp = True
    assert code_of(lambda: stranger.get_project(P)) == ("Unauthorized", 401)

    v4 = LogClient(sls_server.endpoint, sls_server.access_key_id, sls_server.access_key_secret,
                   source="127.0.0.1", auth_version="v4", region="cn-hangzhou")
    v4._isRowIp = True
    put(v4, [{"traceID": "v4"}])
    assert sls_server.logs(P, L)[-1].get("traceID") == "v4"
    v4_bad = LogClient(sls_server.endpoint, sls_server.access_key_id, "nope",
                       source="127.0.0.1", auth_version="v4", region="cn-hangzhou")
    v4_bad._isRowIp = True
    assert code_of(lambda: v4_bad.get_project(P))[0] == "SignatureNotMatch"
    monkeypatch.setattr(AuthV1, "_getGMT", staticmethod(lambda: "Sun, 01 Jan 2023 00:00:00 GMT"))
    assert code_of(lambda: client.get_project(P)) == ("RequestTimeExpired", 400)


def test_limits_give_the_service_errors(sdk):
    with SlsServer(limits=Limits(max_group_logs=5, max_request_raw_bytes=4000,
                                 max_value_bytes=1000)) as server:
        client = prepared(server, sdk)
        assert code_of(lambda: put(client, [{"k": str(i)} for i in range(6)])) == (
            "InvalidLogSize", 400)
        assert code_of(lambda: put(client, [{"k": "x" * 1500}]))[0] == "InvalidLogSize"
        assert code_of(lambda: put(client, [{"k": "x" * 900}] * 5)) == ("PostBodyTooLarge", 400)
        assert code_of(lambda: put(client, [{"k" * 129: "v"}]))[0] == "InvalidKey"
        assert code_of(lambda: put(client, [{"__time__": "v"}]))[0] == "InvalidKey"
        put(client, [{"tags.guid:x-request-id": "ok", "process.serviceName": "s"}] * 5)
        assert server.log_count(P, L) == 5, "dotted and colon keys are accepted"


def test_get_logs_terms_time_window_paging_and_histograms(sls_server, sdk):
    client = prepared(sls_server, sdk)
    now = int(time.time())
    rows = [{"traceID": "%016x" % (i % 3), "duration": str(i * 100),
             "operationName": "GET /api/item-%d" % i} for i in range(9)]
    put(client, rows, when=now)
    put(client, [{"traceID": "0000000000000000", "duration": "1"}], when=now - 100)

    def query(q, **kw):
        response = client.get_log(P, L, now - 10, now + 10, query=q, **kw)
        return [log.contents.get("duration") for log in response.get_logs()]

    assert query('traceID: "0000000000000001"') == ["100", "400", "700"]
    assert query("traceID: 0000000000000001 and duration >= 400") == ["400", "700"]
    assert query("traceID: 0000000000000001 and not duration > 400") == ["100", "400"]
    assert query("duration in [200 300] or operationName: item-8") == ["200", "300", "800"]
    assert query("operationName: api") == [str(i * 100) for i in range(9)], "tokenized key"
    assert query("traceID: 00000000*") == [str(i * 100) for i in range(9)]
    assert query("*", size=3, offset=2) == ["200", "300", "400"]
    assert query("*", size=2, reverse=True) == ["800", "700"]
    assert len(client.get_log(P, L, now - 200, now + 10).get_logs()) == 10, "[from, to)"
    assert len(client.get_log(P, L, now - 200, now - 100).get_logs()) == 0
    client._get_logs_v2_enabled = False  # the legacy GET the Go SDK of the reference uses
    assert query('traceID: "0000000000000002"') == ["200", "500", "800"]
    histogram = client.get_histograms(GetHistogramsRequest(
        P, L, now - 200, now + 10, "", 'traceID: "0000000000000000"'))
    assert histogram.is_completed() and histogram.get_total_count() == 4
    assert code_of(lambda: client.get_log(P, L, now - 10, now + 10,
                                          query="* | select count(*)"))[0] == "ParameterInvalid"


def test_get_logs_needs_an_index_and_runs_an_sql_hook(sdk):
    with SlsServer(sql=lambda rows, sql, logstore: [{"n": str(len(rows))}]) as server:
        client = prepared(server, sdk, index=False)
        now = int(time.time())
        assert code_of(lambda: client.get_log(P, L, now - 1, now + 1))[0] == \
            "IndexConfigNotExist"
        client.create_index(P, L, IndexConfig(line_config=IndexLineConfig([" "])))
        put(client, [{"a": "1"}, {"a": "2"}], when=now)
        response = client.get_log(P, L, now - 1, now + 1, query="* | select count(*) as n")
        assert [log.contents["n"] for log in response.get_logs()] == ["2"]


def one_attempt(server):
    return SlsClient(parse_endpoint(server.endpoint),
                     Credentials(server.access_key_id, server.access_key_secret), timeout=0.5)


def test_fault_injection(sls_server, sdk):
    prepared(sls_server, sdk)
    client = one_attempt(sls_server)

    def get():
        try:
            client.call("get_project", lambda c: c.get_project(P))
        except SlsError as exc:
            return exc.code, exc.status, exc.kind
        return "ok"

    sls_server.fail_next(1, "ServerBusy")
    sls_server.fail_next(1, "WriteQuotaExceed")
    sls_server.fail_next(1, "InternalServerError", status=500)
    assert [get(), get(), get(), get()] == [
        ("ServerBusy", 503, "retryable"), ("WriteQuotaExceed", 403, "retryable"),
        ("InternalServerError", 500, "retryable"), "ok"]
    sls_server.fail_next(1, "Unauthorized", operations=["put_logs"])
    assert get() == "ok", "the fault waits for its operation"
    sls_server.drop_next(1)
    assert get()[0] == "LogRequestError"
    sls_server.set_latency(1.0)
    assert get()[0] == "LogRequestError", "a response slower than the timeout"
    sls_server.set_latency(0)
    sls_server.go_down()
    assert get()[0] == "LogRequestError"
    sls_server.come_back()
    assert get() == "ok"
    deadline = time.monotonic() + 5  # the slow answer is recorded when it is finally sent
    while sls_server.request_count("get_project") < 9 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sls_server.request_count("get_project") == 9


def test_http_control_api(sls_server, sdk):
    client = prepared(sls_server, sdk)
    base = "http://%s/_sls_server/" % sls_server.endpoint

    def post(spec):
        request = urllib.request.Request(base + "faults", json.dumps(spec).encode(),
                                         method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    assert post({"fail_next": 1, "code": "WriteQuotaExceed"}) == {"ok": True}
    with pytest.raises(SlsError) as info:
        one_attempt(sls_server).call("get_project", lambda c: c.get_project(P))
    assert (info.value.code, info.value.status) == ("WriteQuotaExceed", 403)
    post({"down": True})
    with urllib.request.urlopen(base + "stats", timeout=5) as response:
        assert json.loads(response.read())["down"] is True
    post({"reset": True})
    put(client, [{"x": "2"}])
    with urllib.request.urlopen(base + "stats", timeout=5) as response:
        stats = json.loads(response.read())
    assert stats["logs"]["%s/%s" % (P, L)] >= 1
    with urllib.request.urlopen(base + "logs?project=%s&logstore=%s" % (P, L),
                                timeout=5) as response:
        assert json.loads(response.read())[-1]["x"] == "2"


def test_sqlite_storage_and_distinct_counts(tmp_path, sdk):
    with SlsServer(path=str(tmp_path / "sls.db")) as server:
        client = prepared(server, sdk)
        put(client, [{"traceID": str(i), "spanID": "1"} for i in range(50)])
        put(client, [{"traceID": str(i), "spanID": "1"} for i in range(40, 60)])
        assert [log.get("traceID") for log in server.logs(P, L)][:50] == [
            str(i) for i in range(50)]
        assert server.count_unique(P, L) == (70, 60)
        url = "http://%s/_sls_server/unique?project=%s&logstore=%s" % (server.endpoint, P, L)
        with urllib.request.urlopen(url, timeout=5) as response:
            assert json.loads(response.read()) == {"logs": 70, "unique": 60}


def held_decoder(monkeypatch):
    """Makes the server's decoder wait: (decoding, release) events."""
    from opentracing_sls.testing import sls_server_store

    decoding, release = threading.Event(), threading.Event()
    decode = sls_server_store.decode_group

    def held(raw):
        decoding.set()
        release.wait(30)
        return decode(raw)

    monkeypatch.setattr(sls_server_store, "decode_group", held)
    return decoding, release


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_puts_are_not_held_up_while_logs_are_decoded(storage, tmp_path, sdk, monkeypatch):
    """Reading back a long run decodes for seconds; a PutLogs made to wait that long timed
    out at the sink, which sent it again, and both copies were stored (duplicates in the
    outage test on a loaded machine). The decoder is held here until the put is through."""
    with SlsServer(path=str(tmp_path / "sls.db") if storage == "sqlite" else None) as server:
        client = prepared(server, sdk)
        put(client, [{"n": "1"}])
        decoding, release = held_decoder(monkeypatch)
        results = []
        reader = threading.Thread(target=lambda: results.append(server.logs(P, L)))
        writer = threading.Thread(target=lambda: put(sdk(server), [{"n": "2"}]))
        reader.start()
        try:
            assert decoding.wait(10)
            writer.start()
            writer.join(10)
            put_finished = not writer.is_alive()
        finally:
            release.set()
            reader.join(10)
            writer.join(10)
        assert put_finished, "PutLogs waited for the decoder"
        assert server.log_count(P, L) == 2
        assert [log.get("n") for log in results[0]] == ["1"], "a snapshot from its start"
        assert [log.get("n") for log in server.logs(P, L)] == ["1", "2"]

        # A logstore dropped while its logs are decoded: the stale rows are not cached.
        put(client, [{"n": "3"}])
        decoding.clear()
        release.clear()
        reader = threading.Thread(target=lambda: server.logs(P, L))
        reader.start()
        try:
            assert decoding.wait(10)
            client.delete_logstore(P, L)
            client.create_logstore(P, L, ttl=7, shard_count=3)
        finally:
            release.set()
            reader.join(10)
        put(client, [{"n": "4"}])
        assert [log.get("n") for log in server.logs(P, L)] == ["4"]
