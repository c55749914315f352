"""Model spans as Jaeger query API JSON: ids, processes, references, typed values, envelope."""

from __future__ import annotations

import base64
import json
import math

import pytest

from opentracing_sls.shim.jaeger_json import (
    dependencies_to_json,
    envelope,
    error_item,
    key_value,
    parse_trace_id,
    trace_to_json,
)
from opentracing_sls.shim.model import (
    BINARY,
    BOOL,
    CHILD_OF,
    DOUBLE,
    FOLLOWS_FROM,
    LONG,
    STRING,
    TAG_TYPE_NAMES,
    Log,
    Process,
    Reference,
    Span,
    Tag,
)

T0 = 1_700_000_000_000_000
WEB = Process("web", (Tag("hostname", STRING, "web-1"),))


def make_span(trace_id: int, span_id: int, parent_id: int = 0, refs=None, process=WEB,
              tags=(), logs=(), flags: int = 1) -> Span:
    if refs is None:
        refs = (Reference(CHILD_OF, trace_id, parent_id),) if parent_id else ()
    return Span(trace_id, span_id, parent_id, "op-%d" % span_id, flags, T0 + span_id, 10,
                tuple(tags), tuple(logs), tuple(refs), process)


def test_ids_are_padded_lower_hex() -> None:
    short = trace_to_json([make_span(0xAB, 0x2)])
    assert short["traceID"] == "00000000000000ab"
    assert short["spans"][0]["traceID"] == "00000000000000ab"
    assert short["spans"][0]["spanID"] == "0000000000000002"
    wide = trace_to_json([make_span((0xC << 64) | 0xAB, (1 << 64) - 1, 5)])
    assert wide["traceID"] == "000000000000000c00000000000000ab"
    assert wide["spans"][0]["spanID"] == "ffffffffffffffff"
    assert wide["spans"][0]["references"][0]["traceID"] == wide["traceID"]


def test_identical_processes_share_a_key() -> None:
    twin = Process("web", (Tag("hostname", STRING, "web-1"),))  # equal, another object
    other = Process("web", (Tag("hostname", STRING, "web-2"),))
    trace = trace_to_json([make_span(1, 1), make_span(1, 2, 1, process=other),
                           make_span(1, 3, 1, process=twin),
                           make_span(1, 4, 1, process=Process("db", ()))])
    assert [span["processID"] for span in trace["spans"]] == ["p1", "p2", "p1", "p3"]
    assert trace["processes"] == {
        "p1": {"serviceName": "web",
               "tags": [{"key": "hostname", "type": "string", "value": "web-1"}]},
        "p2": {"serviceName": "web",
               "tags": [{"key": "hostname", "type": "string", "value": "web-2"}]},
        "p3": {"serviceName": "db", "tags": []},
    }


def test_references_and_synthesized_parent() -> None:
    root, child, bare, linked = trace_to_json([
        make_span(1, 1),
        make_span(1, 2, 1),
        make_span(1, 3, 1, refs=()),  # parent without a reference
        make_span(1, 4, 1, refs=(Reference(FOLLOWS_FROM, 9, 8),)),
    ])["spans"]
    assert root["references"] == []
    assert child["references"] == [{"refType": "CHILD_OF", "traceID": "0000000000000001",
                                    "spanID": "0000000000000001"}]
    assert bare["references"] == child["references"]
    assert linked["references"] == [
        {"refType": "CHILD_OF", "traceID": "0000000000000001", "spanID": "0000000000000001"},
        {"refType": "FOLLOWS_FROM", "traceID": "0000000000000009",
         "spanID": "0000000000000008"}]
    # A FOLLOWS_FROM to the parent already names it: nothing added.
    (span,) = trace_to_json([make_span(1, 2, 1, refs=(Reference(FOLLOWS_FROM, 1, 1),))])["spans"]
    assert [ref["refType"] for ref in span["references"]] == ["FOLLOWS_FROM"]


def test_span_fields() -> None:
    span = make_span(1, 2, flags=3, tags=(Tag("span.kind", STRING, "server"),),
                     logs=(Log(T0 + 5, (Tag("event", STRING, "retry"), Tag("n", LONG, 2))),))
    out = trace_to_json([span])
    assert set(out) == {"traceID", "spans", "processes"}  # no empty warnings
    assert out["spans"][0] == {
        "traceID": "0000000000000001", "spanID": "0000000000000002", "flags": 3,
        "operationName": "op-2", "references": [], "startTime": T0 + 2, "duration": 10,
        "tags": [{"key": "span.kind", "type": "string", "value": "server"}],
        "logs": [{"timestamp": T0 + 5, "fields": [
            {"key": "event", "type": "string", "value": "retry"},
            {"key": "n", "type": "int64", "value": 2}]}],
        "processID": "p1",
    }


@pytest.mark.parametrize("tag, expected_type, expected_value", [
    (Tag("s", STRING, "x"), "string", "x"),
    (Tag("b", BOOL, True), "bool", True),
    (Tag("d", DOUBLE, 0.25), "float64", 0.25),
    (Tag("l", LONG, (1 << 53) - 1), "int64", (1 << 53) - 1),
    (Tag("l", LONG, -((1 << 53) - 1)), "int64", -((1 << 53) - 1)),
    (Tag("l", LONG, 1 << 53), "int64", str(1 << 53)),
    (Tag("l", LONG, -(1 << 63)), "int64", str(-(1 << 63))),
    (Tag("x", BINARY, b"\x00\xffhi"), "binary", base64.b64encode(b"\x00\xffhi").decode()),
    (Tag("nan", DOUBLE, math.nan), "float64", "NaN"),
    (Tag("inf", DOUBLE, -math.inf), "float64", "-Inf"),
    (Tag("odd", 99, 5), "string", "5"),
])
def test_typed_values(tag: Tag, expected_type: str, expected_value: object) -> None:
    assert key_value(tag) == {"key": tag.key, "type": expected_type, "value": expected_value}
    if 0 <= tag.type < len(TAG_TYPE_NAMES):
        assert expected_type == TAG_TYPE_NAMES[tag.type]


def test_output_is_strict_json() -> None:
    trace = trace_to_json([make_span(1, 1, tags=(Tag("nan", DOUBLE, math.nan),
                                                 Tag("b", BINARY, b"\x01")))])
    assert json.loads(json.dumps(trace, allow_nan=False)) == trace


def test_empty_trace_is_an_error() -> None:
    with pytest.raises(ValueError):
        trace_to_json([])


def test_envelope() -> None:
    assert envelope(["a", "b"], total=2) == {"data": ["a", "b"], "total": 2, "limit": 0,
                                             "offset": 0, "errors": None}
    assert envelope([]) == {"data": [], "total": 0, "limit": 0, "offset": 0, "errors": None}
    assert envelope(None, errors=[error_item("trace not found", 404, 0xAB)]) == {
        "data": None, "total": 0, "limit": 0, "offset": 0,
        "errors": [{"code": 404, "msg": "trace not found", "traceID": "00000000000000ab"}]}
    assert error_item("bad") == {"msg": "bad"}


def test_dependencies_to_json() -> None:
    assert dependencies_to_json([("web", "api", 3)]) == [
        {"parent": "web", "child": "api", "callCount": 3}]


def test_parse_trace_id() -> None:
    assert parse_trace_id("ab") == 0xAB
    assert parse_trace_id(" 000000000000000C00000000000000AB ") == (0xC << 64) | 0xAB
    for bad in ("", "xyz", "1" * 33, "-1", "0x12"):
        with pytest.raises(ValueError):
            parse_trace_id(bad)
