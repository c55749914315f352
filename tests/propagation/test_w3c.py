"""W3C Trace Context: traceparent validation, tracestate carriage, injection."""

from __future__ import annotations

import pytest

from opentracing_sls.propagation import W3CCodec
from opentracing_sls.propagation.w3c import clean_tracestate
from opentracing_sls.span_context import SpanContext

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
TRACE_ID = int(TRACE, 16)
SPAN_ID = int(SPAN, 16)


def extract(traceparent, tracestate=None):
    headers = {"traceparent": traceparent}
    if tracestate is not None:
        headers["tracestate"] = tracestate
    return W3CCodec().extract(headers)


@pytest.mark.parametrize("value, flags", [
    (f"00-{TRACE}-{SPAN}-01", 1),
    (f"00-{TRACE}-{SPAN}-00", 0),
    (f"00-{TRACE}-{SPAN}-03", 1),  # unknown bits ignored
    (f"00-{TRACE}-{SPAN}-02", 0),
    (f"  00-{TRACE}-{SPAN}-01  ", 1),
    # forward compatibility: a later version may append fields
    (f"01-{TRACE}-{SPAN}-01", 1),
    (f"01-{TRACE}-{SPAN}-01-what-the-future-holds", 1),
    (f"cc-{TRACE}-{SPAN}-00-", 0),
])
def test_valid_traceparent(value, flags):
    context = extract(value)
    assert (context.trace_id, context.span_id, context.parent_id, context.flags) == (
        TRACE_ID, SPAN_ID, 0, flags)
    assert not context.sampling_deferred


@pytest.mark.parametrize("value", [
    "",
    f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
    f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
    f"00-{TRACE}-{SPAN}-01-",
    f"01-{TRACE}-{SPAN}-01.extra",  # after the flags only "-" may follow
    f"00-{'0' * 32}-{SPAN}-01",
    f"00-{TRACE}-{'0' * 16}-01",
    f"00-{TRACE[1:]}-{SPAN}-01",
    f"00-{TRACE}0-{SPAN}-01",
    f"00-{TRACE}-{SPAN[1:]}-01",
    f"00-{TRACE}-{SPAN}-1",
    f"00-{TRACE}-{SPAN}-001",
    f"00-{TRACE.upper()}-{SPAN}-01",  # lowercase only: the spec's grammar
    f"00-{TRACE}-{SPAN.upper()}-01",
    f"0A-{TRACE}-{SPAN}-01",
    f"0-{TRACE}-{SPAN}-01",
    f"00-{TRACE}-{SPAN}-0g",
    f"00_{TRACE}_{SPAN}_01",
    f"00-{TRACE[:16]}-{SPAN}-01",  # 64-bit trace ids are not allowed on this wire
    "garbage",
])
def test_invalid_traceparent(value):
    assert extract(value) is None
    assert extract(value, "congo=t61rcWkgMzE") is None  # tracestate alone means nothing


def test_tracestate_carried_verbatim():
    state = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    context = extract(f"00-{TRACE}-{SPAN}-01", state)
    assert context.trace_state == state
    carrier = {}
    W3CCodec().inject(SpanContext(TRACE_ID, 1, SPAN_ID, 1, trace_state=context.trace_state),
                      carrier)
    assert carrier == {"traceparent": f"00-{TRACE}-0000000000000001-01", "tracestate": state}


@pytest.mark.parametrize("value, expected", [
    ("", None),
    ("   ", None),
    (" a=1 ", "a=1"),
    ("a=1\r\nx: injected", None),
    ("a=é", None),
    ("x" * 512, "x" * 512),
])
def test_clean_tracestate(value, expected):
    assert clean_tracestate(value) == expected


def test_long_tracestate_trimmed_like_the_spec_says():
    big = "big=" + "b" * 200
    members = [f"k{i}=" + "v" * 40 for i in range(20)]  # 20 * 44 chars + commas > 512
    value = ",".join([members[0], big] + members[1:])
    cleaned = clean_tracestate(value)
    assert len(cleaned) <= 512
    assert big not in cleaned  # oversized members go first
    assert cleaned.startswith(members[0] + "," + members[1])  # then whole members from the end
    assert set(cleaned.split(",")) <= set(members)


@pytest.mark.parametrize("context, traceparent", [
    (SpanContext(TRACE_ID, SPAN_ID, 0, 1), f"00-{TRACE}-{SPAN}-01"),
    (SpanContext(TRACE_ID, SPAN_ID, 7, 0), f"00-{TRACE}-{SPAN}-00"),
    (SpanContext(TRACE_ID, SPAN_ID, 0, 3), f"00-{TRACE}-{SPAN}-01"),
    (SpanContext(TRACE_ID, SPAN_ID, 0, 2), f"00-{TRACE}-{SPAN}-01"),
    (SpanContext(TRACE_ID, SPAN_ID, 0, 0, sampling_deferred=True), f"00-{TRACE}-{SPAN}-00"),
    # 64-bit trace ids are left-padded to 32 hex digits
    (SpanContext(0x463AC35C9F6413AD, 1, 0, 1),
     "00-0000000000000000463ac35c9f6413ad-0000000000000001-01"),
])
def test_inject(context, traceparent):
    carrier = {"tracestate": "stale=1"}
    W3CCodec().inject(context, carrier)
    assert carrier == {"traceparent": traceparent}


def test_inject_without_ids_removes_stale_headers():
    carrier = {"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": "a=1", "other": "x"}
    W3CCodec().inject(SpanContext(0, 0, flags=0, baggage={"k": "v"}), carrier)
    assert carrier == {"other": "x"}


def test_round_trip():
    context = SpanContext(TRACE_ID, SPAN_ID, 0, 1, trace_state="a=1")
    carrier = {}
    W3CCodec().inject(context, carrier)
    assert W3CCodec().extract(carrier) == context


def test_missing_traceparent():
    assert W3CCodec().extract({"tracestate": "a=1"}) is None
    assert W3CCodec().extract({}) is None


def test_duplicated_traceparent_is_invalid():
    one = f"00-{TRACE}-{SPAN}-01"
    other = f"00-{TRACE[:-1]}0-{SPAN}-01"
    assert W3CCodec().extract({"traceparent": [one, other]}) is None
    assert W3CCodec().extract({"traceparent": f"{one},{other}"}) is None  # joined by a server
    assert W3CCodec().extract({"traceparent": [one]}).trace_id == TRACE_ID


def test_repeated_tracestate_headers_form_one_list():
    context = W3CCodec().extract({"traceparent": f"00-{TRACE}-{SPAN}-01",
                                  "tracestate": ["a=1", b"b=2"]})
    assert context.trace_state == "a=1,b=2"
