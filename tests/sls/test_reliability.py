"""A 30 s SLS outage at 2 000 spans/s: nothing lost after recovery, duplicates <= 0.1 %."""

from __future__ import annotations

import time

from opentracing_sls import Config

PROJECT, LOGSTORE = "trace-test", "jaeger-span"
RATE = 2000
BEFORE, OUTAGE, AFTER = 2.0, 30.0, 2.0


def test_thirty_second_outage_at_2000_spans_per_second(sls_server, sls_shim):
    shim = sls_shim(sls_server, **{"storage.aliyun_sls.retry.max_backoff_ms": "1000"})
    sink = shim.sinks[0]
    tracer = Config({"local_agent": {"reporting_host": "127.0.0.1",
                                     "reporting_port": shim.ports["compact_port"]},
                     "sampler": {"type": "const", "param": 1},
                     "reporter_queue_size": 100_000}, service_name="load").new_tracer()
    sent = set()
    report = tracer._report
    tracer._report = lambda record: (sent.add("%x" % record.span_id), report(record))

    total = int(RATE * (BEFORE + OUTAGE + AFTER))
    made = 0
    start = time.monotonic()
    down = up = False
    while made < total:
        now = time.monotonic() - start
        if not down and now >= BEFORE:
            sls_server.go_down()
            down = True
        if down and not up and now >= BEFORE + OUTAGE:
            sls_server.come_back()
            up = True
        due = min(total, int(now * RATE) + 10)
        while made < due:
            tracer.start_span("op-%d" % (made % 5)).finish()
            made += 1
        time.sleep(0.005)
    assert up, "the load outlasted the outage"
    assert tracer.close(timeout=20)
    assert len(sent) == total

    def stored():
        return [log.get("spanID") for log in sls_server.logs(PROJECT, LOGSTORE)]

    deadline = time.monotonic() + 60
    ids = stored()
    while set(ids) != sent and time.monotonic() < deadline:
        time.sleep(0.5)
        ids = stored()
    lost = sent - set(ids)
    duplicates = len(ids) - len(set(ids))
    assert not lost, "%d spans lost" % len(lost)
    assert duplicates <= total * 0.001
    registry = shim.metrics.registry
    assert registry.get_sample_value("opentracing_sls_shim_spool_replayed_batches_total",
                                     {"sink": "aliyun_sls"}) > 0, "the outage went via the spool"
    assert registry.get_sample_value("opentracing_sls_shim_sls_logs_written_total",
                                     {"path": "spool"}) > RATE * OUTAGE * 0.9
    dropped = sum(s.value for m in registry.collect() for s in m.samples
                  if m.name == "opentracing_sls_shim_spans_dropped" and s.name.endswith("_total"))
    assert dropped == 0
    assert sink.health()["state"] == "ok" and sink.spool.batches == 0
