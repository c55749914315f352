"""The aliyun_sls sink against the SLS test server through the official SDK: the reference
layout end to end, self-provisioning, and the failure policy of each error class."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request

import pytest
from aliyun.log import IndexConfig, IndexKeyConfig, IndexLineConfig
from aliyun.log.proto import LogGroupRaw
from prometheus_client import generate_latest

from opentracing_sls import Config
from opentracing_sls.shim.config import resolve
from opentracing_sls.shim.model import LONG, STRING, Process, Span, Tag
from opentracing_sls.shim.server import Shim, StartupError
from opentracing_sls.testing.sls_server import Limits, SlsServer

PROJECT, LOGSTORE = "trace-test", "jaeger-span"
PROCESS = Process("svc", (Tag("hostname", STRING, "h1"),))


def wait_for(predicate, timeout=15.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def spans(count, start=0, **fields):
    values = dict(trace_id=0xABC, parent_id=0, operation_name="op", flags=1,
                  start_time=int(time.time() * 1e6), duration=10, tags=(), logs=(),
                  references=(), process=PROCESS)
    values.update(fields)
    return [Span(span_id=start + i + 1, **{k: v for k, v in values.items()})
            for i in range(count)]


def sample(shim, name, **labels):
    return shim.metrics.registry.get_sample_value("opentracing_sls_shim_" + name, labels) or 0.0


def stored_ids(server):
    return [log.get("spanID") for log in server.logs(PROJECT, LOGSTORE)]


def healthz(shim):
    url = "http://127.0.0.1:%d/healthz" % shim.ports["admin_port"]
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_tracer_to_sls_every_span_in_the_reference_layout(sls_server, sls_shim):
    shim = sls_shim(sls_server)
    tracer = Config({"local_agent": {"reporting_host": "127.0.0.1",
                                     "reporting_port": shim.ports["compact_port"]},
                     "sampler": {"type": "const", "param": 1},
                     "generate_128bit_trace_id": True}, service_name="checkout").new_tracer()
    records = {}
    report = tracer._report
    tracer._report = lambda record: (records.__setitem__("%x" % record.span_id, record),
                                     report(record))
    for i in range(300):
        with tracer.start_active_span("charge-%d" % (i % 3)) as scope:
            scope.span.set_tag("order.items", i)
            scope.span.set_tag("paid", i % 2 == 0)
            scope.span.set_tag("ratio", 0.5)
            scope.span.log_kv({"event": "card", "attempt": 1})
            with tracer.start_active_span("db.query") as child:
                child.span.set_tag("db.statement", "SELECT %d" % i)
    assert tracer.close(timeout=10)
    assert len(records) == 600
    assert wait_for(lambda: sls_server.log_count(PROJECT, LOGSTORE) >= 600), (
        sls_server.log_count(PROJECT, LOGSTORE),
        generate_latest(shim.metrics.registry).decode())
    # Decode what the server received with the SDK's protobuf classes, not the sink's code.
    logs = [log for raw in sls_server.raw_groups(PROJECT, LOGSTORE)
            for log in LogGroupRaw.FromString(raw).Logs]
    assert len(logs) == 600
    seen = set()
    for log in logs:
        contents = [(c.Key, c.Value.decode()) for c in log.Contents]
        row = dict(contents)
        record = records[row["spanID"]]
        seen.add(row["spanID"])
        assert [k for k, _ in contents[:8]] == [
            "traceID", "spanID", "parentSpanID", "operationName", "flags", "startTime",
            "duration", "process.serviceName"]
        assert record.trace_id >> 64, "128-bit ids"
        assert row["traceID"] == "%032x" % record.trace_id
        assert row["parentSpanID"] == ("%x" % record.parent_id if record.parent_id else "0")
        assert row["operationName"] == record.operation_name
        assert row["flags"] == "1"
        assert row["startTime"] == str(record.start_time)  # µs
        assert row["duration"] == str(record.duration)  # µs
        assert log.Time == record.start_time // 1_000_000
        assert log.Time_ns == record.start_time % 1_000_000 * 1000
        assert row["process.serviceName"] == "checkout"
        assert row["process.tags.hostname"]
        if record.operation_name.startswith("charge"):
            assert row["tags.order.items"] == str(record.tags["order.items"])
            assert row["tags.paid"] == ("true" if record.tags["paid"] else "false")
            assert row["tags.ratio"] == "0.5"
            [entry] = json.loads(row["logs"])
            seconds, micros = divmod(record.logs[0][0], 1_000_000)
            assert entry["timestamp"] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(
                seconds)) + ("." + ("%06d" % micros).rstrip("0") if micros else "") + "Z"
            assert {"key": "event", "vType": "string", "vStr": "card"} in entry["fields"]
            assert {"key": "attempt", "vType": "int64", "vNum": 1} in entry["fields"]
            assert "reference" not in row
        else:
            assert row["tags.db.statement"] == "SELECT %d" % records[
                row["parentSpanID"]].tags["order.items"]
    assert seen == set(records), "every span, once"
    # The sink counts a write when SLS's answer reaches it, a moment after the server
    # stored the logs the loop above waited for.
    assert wait_for(lambda: sample(shim, "sls_logs_written_total", path="direct") == 600), \
        sample(shim, "sls_logs_written_total", path="direct")


def test_auto_create_from_an_empty_server_then_idempotent(sls_server, sls_shim, caplog):
    first = sls_shim(sls_server)
    assert [(r.operation, r.status) for r in sls_server.requests] == [
        ("get_project", 404), ("create_project", 200), ("get_logstore", 404),
        ("create_logstore", 200), ("get_index", 400), ("create_index", 200)]
    index = sls_server.index_config(PROJECT, LOGSTORE)
    assert index["keys"]["traceID"] == {"type": "text", "token": [], "caseSensitive": False,
                                        "doc_value": True, "chn": False}
    assert index["keys"]["duration"]["type"] == "long"
    assert ":" in index["line"]["token"] and " " in index["line"]["token"]
    first.deliver(spans(3), "test")
    assert wait_for(lambda: sls_server.log_count(PROJECT, LOGSTORE) == 3)
    count = len(sls_server.requests)
    sls_shim(sls_server)  # a second shim (or a restart): nothing is created again
    assert [r.operation for r in sls_server.requests[count:]] == [
        "get_project", "get_logstore", "get_index"]
    assert sls_server.log_count(PROJECT, LOGSTORE) == 3


def test_an_existing_index_is_left_alone_and_its_gaps_named(sls_server, sls_shim, sdk,
                                                            caplog):
    client = sdk(sls_server)
    client.create_project(PROJECT, "mine")
    client.create_logstore(PROJECT, LOGSTORE)
    own = IndexConfig(line_config=IndexLineConfig([" "]),
                      key_config_list={"traceID": IndexKeyConfig([], index_type="text")})
    client.create_index(PROJECT, LOGSTORE, own)
    with caplog.at_level(logging.WARNING):
        sls_shim(sls_server)
    assert list(sls_server.index_config(PROJECT, LOGSTORE)["keys"]) == ["traceID"]
    assert "duration" in caplog.text and "left unchanged" in caplog.text
    assert sls_server.request_count("create_index") == 1


def test_missing_project_without_auto_create_stops_start(sls_server, flags_for):
    flags = flags_for(sls_server, **{"storage.aliyun_sls.auto_create": "false"})
    with pytest.raises(StartupError) as info:
        Shim(resolve(flags, environ={})).start()
    assert "auto_create is false" in str(info.value)
    assert sls_server.request_count("create_project") == 0


def test_wrong_secret_is_one_clear_error_at_start(sls_server, flags_for, caplog):
    secret = "WRONG-secret-value-123"
    flags = flags_for(sls_server, **{"storage.aliyun_sls.accesskey.secret": secret})
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(StartupError) as info:
            Shim(resolve(flags, environ={})).start()
    message = str(info.value)
    assert "SignatureNotMatch" in message and "storage.aliyun_sls.accesskey.secret" in message
    assert len(sls_server.requests) == 1, "no retry storm"
    assert secret not in message and secret not in caplog.text


def test_revoked_secret_halts_reports_unhealthy_and_keeps_spans(sls_server, sls_shim, caplog):
    shim = sls_shim(sls_server)
    sink = shim.sinks[0]
    sink.halt_recheck = 1.0
    good = sls_server.access_key_secret
    sls_server.accounts[sls_server.access_key_id] = "rotated-by-someone"
    with caplog.at_level(logging.DEBUG):
        shim.deliver(spans(50), "test")
        assert wait_for(lambda: sink.health()["state"] == "halted")
        puts = sls_server.request_count("put_logs")
        shim.deliver(spans(50, start=50), "test")
        time.sleep(0.6)
        assert sls_server.request_count("put_logs") == puts == 1, "no retry storm"
        status, report = healthz(shim)
        assert status == 503 and report["status"] == "unhealthy"
        assert report["sink_health"]["aliyun_sls"]["error"].startswith("put_logs failed: "
                                                                       "SignatureNotMatch")
        assert wait_for(lambda: sink.spool.items == 100), "kept in the spool"
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "storage.aliyun_sls.accesskey.secret" in errors[0].message
        assert sample(shim, "sls_requests_total", operation="put_logs", outcome="auth") >= 1
        sls_server.accounts[sls_server.access_key_id] = good  # fixed: the recheck delivers
        assert wait_for(lambda: sls_server.log_count(PROJECT, LOGSTORE) == 100)
        assert wait_for(lambda: healthz(shim)[0] == 200)
    metrics = generate_latest(shim.metrics.registry).decode()
    for text in (caplog.text, metrics, json.dumps(report), repr(sink), repr(sink.client)):
        assert good not in text


@pytest.mark.parametrize("code", ["ServerBusy", "WriteQuotaExceed", "ShardWriteQuotaExceed",
                                  "InternalServerError"])
def test_retryable_errors_are_retried_with_backoff(sls_server, sls_shim, code):
    shim = sls_shim(sls_server)
    sls_server.fail_next(3, code, operations=["put_logs"])
    shim.deliver(spans(40), "test")
    assert wait_for(lambda: sls_server.log_count(PROJECT, LOGSTORE) == 40)
    assert sls_server.request_count("put_logs") == 4
    reason = "throttled" if "Quota" in code or code == "ServerBusy" else "server_error"
    assert sample(shim, "sls_retries_total", reason=reason) == 3
    assert shim.sinks[0].spool.batches == 0 and not shim.sinks[0]._outage
    times = [r.time for r in sls_server.requests if r.operation == "put_logs"]
    assert times[-1] - times[0] >= 0.02 * 1.5, "backoff between attempts"


def test_connection_drops_and_slow_answers_are_retried(sls_server, sls_shim):
    shim = sls_shim(sls_server, **{"storage.aliyun_sls.timeout_ms": "300"})
    sls_server.drop_next(2, operations=["put_logs"])
    shim.deliver(spans(10), "test")
    assert wait_for(lambda: sls_server.log_count(PROJECT, LOGSTORE) == 10)
    sls_server.set_latency(0.6, "put_logs")  # answered after the client gave up: stored twice
    shim.deliver(spans(10, start=10), "test")
    time.sleep(1.0)
    sls_server.set_latency(0)
    assert wait_for(lambda: set(stored_ids(sls_server)) == {"%x" % i for i in range(1, 21)})
    assert sample(shim, "sls_retries_total", reason="network_error") >= 3


def test_refused_sizes_are_split_never_looping(sls_shim):
    with SlsServer(limits=Limits(max_group_logs=30)) as server:
        shim = sls_shim(server)
        shim.deliver(spans(200), "test")
        assert wait_for(lambda: server.log_count(PROJECT, LOGSTORE) == 200)
        puts = [r for r in server.requests if r.operation == "put_logs"]
        assert sum(1 for r in puts if r.code == "InvalidLogSize") <= 7
        assert sorted(stored_ids(server), key=lambda x: int(x, 16)) == [
            "%x" % i for i in range(1, 201)]
        assert sample(shim, "spans_dropped_total", sink="aliyun_sls", reason="too_large") == 0


def test_a_log_too_large_is_shrunk_then_dropped_and_counted(sls_shim):
    with SlsServer(limits=Limits(max_value_bytes=50_000)) as server:
        shim = sls_shim(server)
        batch = spans(20)
        batch[7] = batch[7]._replace(tags=(Tag("payload", STRING, "x" * 100_000),))
        shim.deliver(batch, "test")
        assert wait_for(lambda: server.log_count(PROJECT, LOGSTORE) == 19)
        assert wait_for(lambda: sample(shim, "spans_dropped_total", sink="aliyun_sls",
                                       reason="too_large") == 1)
        assert "8" not in stored_ids(server)
        assert sample(shim, "sls_values_truncated_total", limit="64KiB") == 1
        assert server.request_count("put_logs") <= 12, "bisection is bounded"


def test_values_over_one_mib_are_truncated_and_counted(sls_server, sls_shim):
    shim = sls_shim(sls_server)
    shim.deliver(spans(1, tags=(Tag("big", STRING, "y" * (2 << 20)), Tag("n", LONG, 1))),
                 "test")
    assert wait_for(lambda: sls_server.log_count(PROJECT, LOGSTORE) == 1)
    [log] = sls_server.logs(PROJECT, LOGSTORE)
    assert len(log.get("tags.big")) == 1024 * 1024 and log.get("tags.n") == "1"
    assert sample(shim, "sls_values_truncated_total", limit="1MiB") == 1


def test_without_a_spool_undeliverable_spans_are_dropped_and_counted(sls_server, sls_shim):
    shim = sls_shim(sls_server, **{"spool.path": "", "storage.aliyun_sls.retry.max_attempts":
                                   "2"})
    sls_server.go_down()
    shim.deliver(spans(25), "test")
    assert wait_for(lambda: sample(shim, "spans_dropped_total", sink="aliyun_sls",
                                   reason="sls_unavailable") == 25)
    sls_server.come_back()
    shim.deliver(spans(5, start=100), "test")
    assert wait_for(lambda: sls_server.log_count(PROJECT, LOGSTORE) == 5)


def test_outage_spools_then_replays_in_order(sls_server, sls_shim):
    shim = sls_shim(sls_server, **{"storage.aliyun_sls.batch.max_logs": "10"})
    sink = shim.sinks[0]
    sls_server.go_down()
    for batch in range(8):
        shim.deliver(spans(10, start=batch * 10), "test")
        sink.drain(5)
    assert wait_for(lambda: sink.spool.items == 80)
    status, report = healthz(shim)
    assert status == 200 and report["sink_health"]["aliyun_sls"]["state"] == "spooling"
    assert sample(shim, "spool_spans", sink="aliyun_sls") == 80
    assert sample(shim, "spool_bytes", sink="aliyun_sls") > 0
    sls_server.come_back()
    assert wait_for(lambda: sls_server.log_count(PROJECT, LOGSTORE) == 80)
    assert [int(i, 16) for i in stored_ids(sls_server)] == list(range(1, 81)), "in order"
    assert wait_for(lambda: sink.health()["state"] == "ok")
    assert sample(shim, "spool_replayed_batches_total", sink="aliyun_sls") == 8
    assert sample(shim, "sls_logs_written_total", path="spool") == 80


def test_shutdown_spools_what_it_cannot_send_and_a_restart_delivers(sls_server, sls_shim,
                                                                    flags_for):
    shim = sls_shim(sls_server)
    sls_server.go_down()
    shim.deliver(spans(30), "test")
    shim.stop(timeout=3)
    assert sample(shim, "spool_spans", sink="aliyun_sls") == 30
    assert sample(shim, "spans_dropped_total", sink="aliyun_sls", reason="shutdown_timeout") == 0
    sls_server.come_back()
    sls_shim(sls_server)  # same spool directory
    assert wait_for(lambda: sls_server.log_count(PROJECT, LOGSTORE) == 30)


def test_a_logstore_deleted_while_running_is_created_again(sls_server, sls_shim, sdk):
    shim = sls_shim(sls_server)
    shim.deliver(spans(5), "test")
    assert wait_for(lambda: sls_server.log_count(PROJECT, LOGSTORE) == 5)
    sdk(sls_server).delete_logstore(PROJECT, LOGSTORE)
    shim.deliver(spans(7, start=5), "test")
    assert wait_for(lambda: sls_server.log_count(PROJECT, LOGSTORE) == 7)
    assert sls_server.request_count("create_logstore") == 2
    assert sls_server.index_config(PROJECT, LOGSTORE) is not None, "the index too"
    assert sample(shim, "sls_requests_total", operation="put_logs", outcome="missing") == 1
