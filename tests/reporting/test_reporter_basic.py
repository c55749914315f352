"""The simple reporters: Null, InMemory, Logging, Composite; and the shared interface."""

from __future__ import annotations

import logging
from typing import Any, List, Optional

from opentracing_sls.metrics import Metrics
from opentracing_sls.record import SpanRecord
from opentracing_sls.reporting import (
    BaseReporter,
    CompositeReporter,
    InMemoryReporter,
    LoggingReporter,
    NullReporter,
    Reporter,
    UdpSender,
)


def make_record(span_id: int = 0x2A, operation_name: str = "op") -> SpanRecord:
    return SpanRecord(
        trace_id=(0xAB << 64) | 0xCD,
        span_id=span_id,
        parent_id=0x1F,
        operation_name=operation_name,
        flags=1,
        start_time=1,
        duration=2,
        tags={},
        logs=[],
        references=[],
    )


def test_every_reporter_implements_the_interface():
    for reporter in (
        NullReporter(),
        InMemoryReporter(),
        LoggingReporter(),
        CompositeReporter(),
        Reporter(UdpSender()),
    ):
        assert isinstance(reporter, BaseReporter)
        assert isinstance(reporter.metrics, Metrics)
        reporter.set_process("svc", {"k": "v"})
        assert reporter.flush(0.1) and reporter.close(0.1)
        assert reporter.closed


def test_null_reporter_discards_everything():
    reporter = NullReporter()
    reporter.report_span(make_record())
    assert reporter.metrics.snapshot()["reporter.spans.dropped.closed"] == 0


def test_in_memory_reporter_collects_clears_and_drops_after_close():
    metrics = Metrics()
    reporter = InMemoryReporter(metrics=metrics)
    reporter.set_process("svc", {"env": "test"})
    assert (reporter.service_name, reporter.process_tags) == ("svc", {"env": "test"})
    first, second = make_record(1), make_record(2)
    reporter.report_span(first)
    reporter.report_span(second)
    spans = reporter.get_spans()
    assert spans == [first, second]
    spans.clear()  # a copy: the reporter's own list is untouched
    assert len(reporter.get_spans()) == 2
    reporter.clear()
    assert reporter.get_spans() == []

    reporter.report_span(first)
    assert reporter.close()
    reporter.report_span(second)
    assert reporter.get_spans() == [first]
    assert metrics.snapshot()["reporter.spans.dropped.closed"] == 1


def test_logging_reporter_logs_one_line_per_span(caplog):
    logger = logging.getLogger("test.spans")
    reporter = LoggingReporter(logger=logger)
    reporter.set_process("svc", {})
    with caplog.at_level(logging.INFO, logger="test.spans"):
        reporter.report_span(make_record(0x2A, "GET /"))
    assert [r.getMessage() for r in caplog.records] == [
        "Reporting span 00000000000000ab00000000000000cd:000000000000002a:000000000000001f:1"
        " svc.GET /"
    ]


def test_logging_reporter_is_silent_below_its_level_and_after_close(caplog):
    logger = logging.getLogger("test.quiet")
    reporter = LoggingReporter(logger=logger, level=logging.DEBUG)
    with caplog.at_level(logging.INFO, logger="test.quiet"):
        reporter.report_span(make_record())
        reporter.close()
        with caplog.at_level(logging.DEBUG, logger="test.quiet"):
            reporter.report_span(make_record())
    assert caplog.records == []
    assert reporter.metrics.snapshot()["reporter.spans.dropped.closed"] == 1


class BrokenReporter(BaseReporter):
    def __init__(self, result: bool = True) -> None:
        super().__init__()
        self.result = result
        self.processes: List[Any] = []

    def set_process(self, service_name: str, tags: Any) -> None:
        self.processes.append((service_name, dict(tags)))

    def report_span(self, record: SpanRecord) -> None:
        raise RuntimeError("broken")

    def flush(self, timeout: Optional[float] = None) -> bool:
        return self.result

    def close(self, timeout: Optional[float] = None) -> bool:
        raise RuntimeError("broken close")


def test_composite_reporter_fans_out_and_isolates_failures():
    memory, broken = InMemoryReporter(), BrokenReporter(result=False)
    composite = CompositeReporter(broken, memory)
    composite.set_process("svc", {"a": 1})
    assert broken.processes == [("svc", {"a": 1})]
    assert memory.service_name == "svc"

    record = make_record()
    composite.report_span(record)  # the broken reporter raises; the app must not see it
    assert memory.get_spans() == [record]
    assert composite.flush(1) is False  # one child did not flush in time
    assert composite.close(1) is False  # one child raised
    assert memory.closed and composite.closed


def test_composite_reporter_succeeds_when_all_children_do():
    first, second = InMemoryReporter(), InMemoryReporter()
    composite = CompositeReporter(first, second)
    composite.report_span(make_record())
    assert composite.flush(None) and composite.close(0)
    assert len(first.get_spans()) == len(second.get_spans()) == 1
