"""Span -> SLS log in the reference layout, and the fast encoder's bytes checked with the SDK's
own protobuf classes (independent of the encoder)."""

from __future__ import annotations

import base64
import json
import math
import random
import struct

import pytest
from aliyun.log.proto import LogGroupRaw

from opentracing_sls.shim.model import (
    BINARY,
    BOOL,
    CHILD_OF,
    DOUBLE,
    FOLLOWS_FROM,
    LONG,
    STRING,
    Log,
    Process,
    Reference,
    Span,
    Tag,
)
from opentracing_sls.shim.sls_encode import (
    GroupBuilder,
    LogEncoder,
    group_tail,
    split_group,
)
from opentracing_sls.shim.sls_schema import float_text, log_time, span_contents

PROCESS = Process("checkout", (Tag("hostname", STRING, "web-1"), Tag("ip", STRING, "10.0.0.7"),
                               Tag("jaeger.version", STRING, "Python-4.8.0")))


def make_span(**fields) -> Span:
    values = dict(trace_id=0xABC, span_id=0x2B67, parent_id=0, operation_name="GET /cart",
                  flags=1, start_time=1_700_000_000_123_456, duration=1500, tags=(), logs=(),
                  references=(), process=PROCESS)
    values.update(fields)
    return Span(**values)


def as_dict(contents):
    return dict(contents)


def test_reference_keys_order_and_formats():
    span = make_span(parent_id=0x1F, tags=(Tag("http.status_code", LONG, 200),
                                           Tag("error", BOOL, True),
                                           Tag("span.kind", STRING, "server")))
    contents = span_contents(span)
    assert [k for k, _ in contents] == [
        "traceID", "spanID", "parentSpanID", "operationName", "flags", "startTime", "duration",
        "process.serviceName", "tags.http.status_code", "tags.error", "tags.span.kind",
        "process.tags.hostname", "process.tags.ip", "process.tags.jaeger.version"]
    values = as_dict(contents)
    assert values["traceID"] == "0000000000000abc"  # %016x
    assert values["spanID"] == "2b67"  # %x, not padded
    assert values["parentSpanID"] == "1f"
    assert values["startTime"] == "1700000000123456"  # microseconds
    assert values["duration"] == "1500"  # microseconds
    assert values["flags"] == "1"
    assert values["tags.error"] == "true"
    assert values["process.serviceName"] == "checkout"
    assert log_time(span) == (1_700_000_000, 123_456_000)


def test_root_parent_is_zero_and_128_bit_trace_id():
    values = as_dict(span_contents(make_span(trace_id=(0x1 << 64) | 0xABC)))
    assert values["parentSpanID"] == "0"
    assert values["traceID"] == "0000000000000001" "0000000000000abc"


@pytest.mark.parametrize("value, text", [
    (1.5, "1.5"), (0.1, "0.1"), (1e21, "1e+21"), (123456789012.0, "1.23456789e+11"),
    (2.0 / 3, "0.6666666667"), (1.5e-7, "1.5e-07"), (float("nan"), "NaN"),
    (float("inf"), "+Inf"), (float("-inf"), "-Inf")])
def test_float_tags_are_go_g10(value, text):
    assert float_text(value) == text
    assert as_dict(span_contents(make_span(tags=(Tag("x", DOUBLE, value),))))["tags.x"] == text


def test_binary_tags_are_hex_cut_at_256_bytes():
    short = as_dict(span_contents(make_span(tags=(Tag("b", BINARY, b"\x01\xff"),))))
    assert short["tags.b"] == "01ff"
    long = as_dict(span_contents(make_span(tags=(Tag("b", BINARY, bytes(range(256)) * 2),))))
    assert long["tags.b"] == bytes(range(256)).hex() + "..."


def test_logs_are_jaeger_model_json():
    fields = (Tag("event", STRING, "retry"), Tag("attempt", LONG, 2), Tag("ok", BOOL, False),
              Tag("ratio", DOUBLE, 0.25), Tag("blob", BINARY, b"\x00\x01"),
              Tag("zero", LONG, 0), Tag("empty", STRING, ""))
    span = make_span(logs=(Log(1_700_000_000_500_000, fields), Log(1_700_000_001_000_000, ())))
    logs = json.loads(as_dict(span_contents(span))["logs"])
    assert logs[0]["timestamp"] == "2023-11-14T22:13:20.5Z"  # RFC 3339, UTC, zeros trimmed
    assert logs[1] == {"timestamp": "2023-11-14T22:13:21Z", "fields": []}
    by_key = {f["key"]: f for f in logs[0]["fields"]}
    assert by_key["event"] == {"key": "event", "vType": "string", "vStr": "retry"}
    assert by_key["attempt"] == {"key": "attempt", "vType": "int64", "vNum": 2}
    assert by_key["ok"] == {"key": "ok", "vType": "bool"}  # false is 0: omitempty
    assert by_key["ratio"]["vType"] == "float64"
    assert struct.unpack("<d", struct.pack("<q", by_key["ratio"]["vNum"]))[0] == 0.25
    assert base64.b64decode(by_key["blob"]["vBlob"]) == b"\x00\x01"
    assert by_key["zero"] == {"key": "zero", "vType": "int64"}
    assert by_key["empty"] == {"key": "empty", "vType": "string"}


def test_references_only_when_present():
    assert "reference" not in as_dict(span_contents(make_span(parent_id=5)))
    refs = (Reference(CHILD_OF, 0xABC, 5), Reference(FOLLOWS_FROM, (1 << 64) | 2, 0x10))
    values = as_dict(span_contents(make_span(parent_id=5, references=refs)))
    assert json.loads(values["reference"]) == [
        {"refType": "child-of", "traceID": "0000000000000abc", "spanID": "5"},
        {"refType": "follows-from", "traceID": "00000000000000010000000000000002",
         "spanID": "10"}]


def random_span(rng: random.Random) -> Span:
    def value(kind):
        return {STRING: lambda: "".join(rng.choice("aé中 :\"\\x") for _ in range(rng.randrange(
                    0, 300))),
                DOUBLE: lambda: rng.choice([rng.uniform(-1e9, 1e9), math.pi, 0.0]),
                BOOL: lambda: rng.random() < 0.5,
                LONG: lambda: rng.randrange(-(1 << 63), 1 << 63),
                BINARY: lambda: rng.randbytes(rng.randrange(0, 400))}[kind]()

    def tags(n):
        return tuple(Tag("k%d.%s" % (i, rng.choice(["a", "b:c", "é"])), kind, value(kind))
                     for i, kind in enumerate(rng.choice([STRING, DOUBLE, BOOL, LONG, BINARY])
                                              for _ in range(n)))
    process = Process(rng.choice(["svc-a", "svc-b", "сервис"]), tags(rng.randrange(0, 4)))
    return Span(rng.randrange(1, 1 << 128) >> rng.choice([0, 64]), rng.randrange(1, 1 << 64),
                rng.choice([0, rng.randrange(1, 1 << 64)]), "op-%d" % rng.randrange(100),
                rng.randrange(0, 4), rng.randrange(0, 2_000_000_000_000_000),
                rng.randrange(0, 10 ** 9), tags(rng.randrange(0, 8)),
                tuple(Log(rng.randrange(0, 2 * 10 ** 15), tags(rng.randrange(0, 4)))
                      for _ in range(rng.randrange(0, 3))),
                tuple(Reference(rng.choice([CHILD_OF, FOLLOWS_FROM]), rng.randrange(1 << 128),
                                rng.randrange(1 << 64)) for _ in range(rng.randrange(0, 3))),
                process)


def test_encoder_matches_the_schema_decoded_by_the_sdk_protobuf():
    rng = random.Random(7)
    spans = [random_span(rng) for _ in range(400)]
    encoder = LogEncoder()
    # Twice: the second pass runs on warm caches (process, tags, operations, fields).
    for _ in range(2):
        data = b"".join(encoder.encode(span) for span in spans) + group_tail()
        group = LogGroupRaw.FromString(data)
        assert group.Topic == "" and group.Source == "0.0.0.0"
        assert len(group.Logs) == len(spans)
        for span, log in zip(spans, group.Logs):
            got = [(c.Key, c.Value.decode("utf-8")) for c in log.Contents]
            assert got == span_contents(span)
            assert (log.Time, log.Time_ns) == log_time(span)


def test_oversized_values_are_truncated_and_counted():
    encoder = LogEncoder(max_value_bytes=1000)
    huge = "é" * 800  # 1600 bytes: cut at a character boundary
    encoded = encoder.encode(make_span(tags=(Tag("big", STRING, huge),
                                             Tag("ok", STRING, "x"))))
    assert encoder.truncated == 1
    [log] = LogGroupRaw.FromString(encoded).Logs
    value = dict((c.Key, c.Value) for c in log.Contents)["tags.big"]
    assert len(value) == 1000 and value.decode("utf-8") == "é" * 500


def test_group_builder_respects_count_and_byte_limits():
    groups = []
    builder = GroupBuilder(lambda data, count: groups.append((data, count)), max_logs=10,
                           max_bytes=2000)
    encoder = LogEncoder()
    logs = [encoder.encode(make_span(span_id=i + 1, tags=(Tag("pad", STRING, "x" * 100),)))
            for i in range(95)]
    for log in logs:
        assert builder.add(log, 0.0)
    builder.seal()
    assert sum(count for _, count in groups) == 95
    for data, count in groups:
        assert count <= 10 and len(data) <= 2000
        assert len(LogGroupRaw.FromString(data).Logs) == count
    assert b"".join(b"".join(split_group(data)) for data, _ in groups) == b"".join(logs)
    assert not builder.add(b"\x0a" + b"x" * 3000, 0.0), "a log larger than a group is refused"
