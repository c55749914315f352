"""Log correlation: trace_id/span_id of the active span on log records, opt-in."""

from __future__ import annotations

import io
import logging

import opentracing
import pytest
from flask import Flask
from opentracing.mocktracer import MockTracer

from opentracing_sls import integrations
from opentracing_sls.integrations import TraceContextFilter, diagnostics
from opentracing_sls.testing import make_test_tracer

pytestmark = pytest.mark.usefixtures("handler_path")  # C and Python handlers

FORMAT = "%(trace_id)s %(span_id)s %(message)s"


@pytest.fixture
def captured():
    """A logger writing FORMAT lines to a buffer; yields (logger, handler, buffer)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger = logging.getLogger("test.correlation")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, handler, buffer
    logger.removeHandler(handler)


def test_filter_adds_the_active_span_ids(tracer, captured):
    logger, handler, buffer = captured
    handler.addFilter(TraceContextFilter())
    logger.info("outside")
    with tracer.start_active_span("work") as scope:
        logger.info("inside")
        context = scope.span.context
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "  outside"
    assert lines[1] == "%016x %016x inside" % (context.trace_id, context.span_id)


def test_128_bit_trace_ids_are_32_digits(captured):
    tracer = make_test_tracer(generate_128bit_trace_id=True)
    opentracing.set_global_tracer(tracer)
    logger, handler, buffer = captured
    handler.addFilter(TraceContextFilter())
    with tracer.start_active_span("work") as scope:
        logger.info("x")
        trace_id = scope.span.context.trace_id
    assert buffer.getvalue().split()[0] == "%032x" % trace_id and trace_id >> 64


def test_enable_puts_the_fields_on_every_record_and_disable_restores(tracer, captured):
    logger, _, buffer = captured
    original = logging.getLogRecordFactory()
    assert integrations.enable_log_correlation() is True
    assert integrations.enable_log_correlation() is False  # idempotent
    with tracer.start_active_span("work") as scope:
        logger.info("inside")
        span_id = "%016x" % scope.span.context.span_id
    assert buffer.getvalue().split()[1] == span_id
    assert integrations.disable_log_correlation() is True
    assert logging.getLogRecordFactory() is original


def test_disable_leaves_a_later_factory_in_place(tracer):
    integrations.enable_log_correlation()
    ours = logging.getLogRecordFactory()

    def theirs(*args, **kwargs):
        record = ours(*args, **kwargs)
        record.theirs = True
        return record

    theirs.__wrapped__ = ours
    logging.setLogRecordFactory(theirs)
    try:
        integrations.disable_log_correlation()
        assert logging.getLogRecordFactory() is theirs
        with tracer.start_active_span("work"):
            record = logging.getLogger("x").makeRecord("x", logging.INFO, "f", 1, "m", (), None)
        assert record.theirs and not hasattr(record, "trace_id")
        integrations.enable_log_correlation()  # re-enabled in place, not stacked
        assert logging.getLogRecordFactory() is theirs
        with tracer.start_active_span("work"):
            record = logging.getLogger("x").makeRecord("x", logging.INFO, "f", 1, "m", (), None)
        assert record.trace_id
    finally:
        integrations.disable_log_correlation()
        logging.setLogRecordFactory(ours.__wrapped__)


def test_log_lines_of_a_flask_request_carry_its_server_span(instrumented, captured):
    logger, handler, buffer = captured
    handler.addFilter(TraceContextFilter())
    app = Flask("app")

    @app.route("/orders/<id>")
    def order(id):
        logger.info("loading order %s", id)
        return id

    app.test_client().get("/orders/42", buffered=True)
    [span] = instrumented.reporter.get_spans()
    assert buffer.getvalue() == "%016x %016x loading order 42\n" % (span.trace_id, span.span_id)


def test_mock_tracer_ids(captured):
    mock = MockTracer()
    logger, handler, buffer = captured
    handler.addFilter(TraceContextFilter(tracer=mock))
    with mock.start_active_span("work") as scope:
        logger.info("x")
    assert buffer.getvalue().split()[1] == "%016x" % scope.span.context.span_id


def test_a_broken_tracer_gives_empty_fields_not_an_exception(captured):
    class Broken(opentracing.Tracer):
        @property
        def active_span(self):
            raise RuntimeError("scope manager bug")

    logger, handler, buffer = captured
    handler.addFilter(TraceContextFilter(tracer=Broken()))
    logger.info("still logged")
    assert buffer.getvalue() == "  still logged\n"
    assert diagnostics.snapshot()["integrations.logging.errors"] == 1
