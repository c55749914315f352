"""Malformed Zipkin bodies: DecodeError for the body, or the bad span skipped and counted; a fuzz
loop of random mutations of valid bodies never raises anything but DecodeError."""

from __future__ import annotations

import copy
import json
import random
from typing import Any, Callable, List

import pytest

from opentracing_sls.shim.model import (
    BINARY,
    BOOL,
    CHILD_OF,
    DOUBLE,
    LONG,
    STRING,
    DecodeError,
    Span,
    Tag,
)
from opentracing_sls.shim.zipkin import (
    ZipkinDecodeResult,
    decode_zipkin_v1_json,
    decode_zipkin_v2_json,
)

DECODERS = [decode_zipkin_v2_json, decode_zipkin_v1_json]
MAX_INT64 = (1 << 63) - 1

V2_SPANS: List[Any] = [
    {"traceId": "80f198ee56343ba864fe8b2a57d3eff7", "id": "05e3ac9a4f6e3b90",
     "parentId": "e457b5a2e4d86bd1", "kind": "SERVER", "name": "productpage:9080/*",
     "timestamp": 1700000000000000, "duration": 25000, "shared": True, "debug": False,
     "localEndpoint": {"serviceName": "productpage.default", "ipv4": "10.0.0.1", "port": 9080},
     "remoteEndpoint": {"serviceName": "gateway", "ipv6": "::1", "port": 443},
     "annotations": [{"timestamp": 1700000000000100, "value": "ss"},
                     {"timestamp": 1700000000000200, "value": '{"event":"x","k":"v"}'}],
     "tags": {"http.url": "http://x/", "error": "boom", "lc": "proxy", "jaegerClient": "Go"}},
    {"traceId": "5341a3f65e389606", "id": "5341a3f65e389607", "kind": "CLIENT",
     "name": "details", "timestamp": 1700000000000300, "duration": 5,
     "localEndpoint": {"serviceName": "productpage.default"}, "tags": {"span.kind": "x"}},
]
V1_SPANS: List[Any] = [
    {"traceId": "463ac35c9f6413ad", "id": "b7ad6b7169203331", "parentId": "a2fb4a1d1a96d312",
     "name": "details:9080/*", "timestamp": 1532000000100000, "duration": 6000, "debug": True,
     "annotations": [
         {"timestamp": 1532000000100000, "value": "cs", "endpoint": {"serviceName": "pp"}},
         {"timestamp": 1532000000106000, "value": "cr", "endpoint": {"serviceName": "pp"}},
         {"timestamp": 1532000000101000, "value": "sr",
          "endpoint": {"serviceName": "details", "ipv4": "10.0.0.2", "port": 9080}},
         {"timestamp": 1532000000104000, "value": "ss", "endpoint": {"serviceName": "details"}},
         {"timestamp": 1532000000102000, "value": "note", "endpoint": {"serviceName": "details"}}],
     "binaryAnnotations": [
         {"key": "http.url", "value": "http://details:9080/", "endpoint": {"serviceName": "pp"}},
         {"key": "n", "value": 5, "type": "I32"}, {"key": "d", "value": "1.5", "type": "DOUBLE"},
         {"key": "raw", "value": "AQID", "type": "BYTES"}, {"key": "lc", "value": "proxy"},
         {"key": "sa", "value": True, "endpoint": {"serviceName": "details", "port": 9080}},
         {"key": "ca", "value": True, "endpoint": {"ipv4": "10.0.0.1"}}]},
    {"traceId": "463ac35c9f6413ad", "id": "1", "name": "local", "timestamp": 1532000000100001,
     "annotations": [{"timestamp": 1532000000100002, "value": "mr",
                      "endpoint": {"serviceName": "q"}}]},
]
_TAG_TYPES = {STRING: str, BOOL: bool, LONG: int, DOUBLE: float, BINARY: bytes}


def check_tag(tag: Any) -> None:
    assert type(tag) is Tag and type(tag.key) is str
    assert type(tag.value) is _TAG_TYPES[tag.type]
    if tag.type == LONG:
        assert -(1 << 63) <= tag.value <= MAX_INT64
    tag.key.encode("utf-8")
    if tag.type == STRING:
        tag.value.encode("utf-8")  # every sink will do this: lone surrogates must be gone


def check_result(result: Any) -> None:
    """The invariants every decoded body satisfies, however odd its input."""
    assert type(result) is ZipkinDecodeResult
    spans, skipped, first_error = result
    assert type(skipped) is int and skipped >= 0
    assert bool(skipped) == bool(first_error)
    assert not first_error.startswith("unexpected"), first_error
    for span in spans:
        assert type(span) is Span
        assert 0 < span.trace_id < 1 << 128
        assert 0 < span.span_id < 1 << 64 and 0 <= span.parent_id < 1 << 64
        assert span.parent_id != span.span_id
        assert span.references == ((CHILD_OF, span.trace_id, span.parent_id),) \
            if span.parent_id else span.references == ()
        assert type(span.operation_name) is str
        span.operation_name.encode("utf-8")
        assert span.flags in (1, 3)
        assert 0 < span.start_time <= MAX_INT64 and 0 <= span.duration <= MAX_INT64
        assert type(span.process.service_name) is str and span.process.service_name
        span.process.service_name.encode("utf-8")
        for tag in span.tags + span.process.tags:
            check_tag(tag)
        for log in span.logs:
            assert 0 < log.timestamp <= MAX_INT64 and log.fields
            for tag in log.fields:
                check_tag(tag)


def decode_checked(decode: Callable[[bytes], Any], body: bytes) -> Any:
    try:
        result = decode(body)
    except DecodeError:
        return None
    check_result(result)
    return result


@pytest.mark.parametrize("decode", DECODERS)
def test_valid_fixtures_decode(decode: Callable[[bytes], Any]) -> None:
    fixture = V2_SPANS if decode is decode_zipkin_v2_json else V1_SPANS
    result = decode_checked(decode, json.dumps(fixture).encode())
    assert result is not None and result.skipped == 0 and len(result.spans) >= 2


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize("body", [
    b"", b" ", b"not json", b"[", b"[{]", b"42", b'"spans"', b"null", b"true", b"{}",
    b'{"traceId":"1","id":"1"}', b"[1]", b'[{"traceId":"1","id":"1","timestamp":1}, 1]',
    b"[[]]", b"[null]", b'["span"]', b"[" * 100_000 + b"]" * 100_000,
    b'[{"tags":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001 + b"]",
    b'[{"timestamp":' + b"9" * 5000 + b"}]",
    b'[{"name":"\xff\xfe"}]',
], ids=lambda body: repr(body[:30]))
def test_bodies_that_are_not_arrays_of_objects_raise_decode_error(
        decode: Callable[[bytes], Any], body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(body)


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize("body", [None, 5, ["[]"], {"a": 1}])
def test_a_body_of_the_wrong_python_type_raises_decode_error(
        decode: Callable[[bytes], Any], body: Any) -> None:
    with pytest.raises(DecodeError):
        decode(body)


GOOD = {"traceId": "1", "id": "2", "name": "ok", "timestamp": 10, "duration": 1}


@pytest.mark.parametrize("field, value", [
    ("name", 5), ("name", ["x"]), ("tags", ["x"]), ("tags", {"a": {"b": "c"}}),
    ("tags", {"a": ["b"]}), ("annotations", {"timestamp": 1, "value": "x"}),
    ("annotations", [1]), ("annotations", [{"timestamp": 1, "value": 5}]),
    ("annotations", [{"timestamp": "1", "value": "x"}]), ("annotations", [{"value": "x"}]),
    ("localEndpoint", "10.0.0.1"), ("localEndpoint", {"port": 70000}),
    ("localEndpoint", {"port": "80"}), ("localEndpoint", {"serviceName": 5}),
    ("remoteEndpoint", {"ipv4": 167772161}), ("debug", "true"), ("shared", 1),
    ("timestamp", -1), ("timestamp", 1 << 63), ("timestamp", "10"), ("timestamp", float("inf")),
    ("timestamp", float("nan")), ("duration", -5), ("duration", [1]), ("kind", 5),
    ("traceId", {"high": 1}), ("id", True),
])
def test_v2_span_with_a_wrong_field_is_skipped_and_counted(field: str, value: Any) -> None:
    bad = dict(GOOD, id="3")
    bad[field] = value
    result = decode_zipkin_v2_json(json.dumps([GOOD, bad, GOOD]).encode())
    check_result(result)
    assert [s.span_id for s in result.spans] == [2, 2]
    assert result.skipped == 1


@pytest.mark.parametrize("field, value", [
    ("annotations", [{"timestamp": 1, "value": "cs", "endpoint": "pp"}]),
    ("annotations", [{"timestamp": 1, "value": "sr", "endpoint": {"ipv6": 6}}]),
    ("binaryAnnotations", {"key": "a", "value": "b"}), ("binaryAnnotations", ["a"]),
    ("binaryAnnotations", [{"key": "a", "value": "b", "endpoint": []}]),
    ("binaryAnnotations", [{"key": "a", "value": [1]}]), ("debug", 1), ("parentId", "-1"),
])
def test_v1_span_with_a_wrong_field_is_skipped_and_counted(field: str, value: Any) -> None:
    bad = dict(GOOD, id="3")
    bad[field] = value
    result = decode_zipkin_v1_json(json.dumps([GOOD, bad]).encode())
    check_result(result)
    assert ([s.span_id for s in result.spans], result.skipped) == ([2], 1)


@pytest.mark.parametrize("decode", DECODERS)
def test_lone_surrogates_become_replacement_characters(decode: Callable[[bytes], Any]) -> None:
    body = (b'[{"traceId":"1","id":"2","timestamp":10,"name":"a\\ud800b",'
            b'"localEndpoint":{"serviceName":"\\udfff"},"tags":{"k\\ud801":"\\ud83d\\ude00"},'
            b'"annotations":[{"timestamp":11,"value":"{\\"f\\":\\"\\\\ud800\\"}"}]}]')
    result = decode_checked(decode, body)
    assert result is not None and result.skipped == 0
    (span,) = result.spans
    assert span.operation_name == "a\ufffdb"
    if decode is decode_zipkin_v2_json:
        assert span.process.service_name == "\ufffd"
        assert span.tags == (Tag("k\ufffd", STRING, "\U0001f600"),)  # a valid pair stays
        assert span.logs[0].fields == (Tag("f", STRING, "\ufffd"),)


@pytest.mark.parametrize("decode", DECODERS)
def test_deeply_nested_json_inside_an_annotation_value_is_just_text(
        decode: Callable[[bytes], Any]) -> None:
    value = "{" * 100_000 + "}" * 100_000
    body = json.dumps([dict(GOOD, annotations=[{"timestamp": 11, "value": value}])]).encode()
    (span,) = decode(body).spans
    assert span.logs[0].fields == (Tag("event", STRING, value),)


# ---------------------------------------------------------------------------------------------
# Fuzzing

_EVIL = [None, True, False, 0, -1, 1, 1 << 64, 1 << 70, -(1 << 63), 1.5, 1e300, float("inf"),
         float("nan"), "", "zz", "0", "1", "\ud800", "x" * 5000, "0" * 40, "f" * 16, "f" * 32,
         "ffffffffffffffff0", '{"k":"v"}', '{"k":1}', "{" * 3000, "SERVER", "cs", "sr", "ss",
         "sa", "error", "lc", "BYTES", "I64", "BOOL", "DOUBLE", [], {}, [1], {"a": "b"},
         {"serviceName": "s", "ipv4": "1.2.3.4", "port": 1},
         {"timestamp": 5, "value": "sr", "endpoint": {"serviceName": "x"}}]


def _nodes(value: Any, out: List[Any]) -> List[Any]:
    """Every list and dict inside ``value`` (the places a mutation can hit)."""
    if isinstance(value, (list, dict)):
        out.append(value)
        for child in (value if isinstance(value, list) else value.values()):
            _nodes(child, out)
    return out


def _mutate_structure(rnd: random.Random, spans: List[Any]) -> bytes:
    doc = copy.deepcopy(spans)
    for _ in range(rnd.randint(1, 4)):
        node = rnd.choice(_nodes(doc, []))
        evil = copy.deepcopy(rnd.choice(_EVIL))
        if isinstance(node, dict):
            key = rnd.choice(list(node) + ["traceId", "id", "parentId", "type", "kind"])
            action = rnd.random()
            if action < 0.2 and node:
                node.pop(rnd.choice(list(node)))
            elif action < 0.3:
                node[evil if isinstance(evil, str) else key] = copy.deepcopy(rnd.choice(_EVIL))
            else:
                node[key] = evil
        elif node:
            index = rnd.randrange(len(node))
            if rnd.random() < 0.2:
                del node[index]
            else:
                node[index] = evil
        else:
            node.append(evil)
    return json.dumps(doc).encode()


def _mutate_bytes(rnd: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rnd.randint(1, 6)):
        action = rnd.random()
        pos = rnd.randrange(len(data) + 1)
        if action < 0.3 and data:
            data[min(pos, len(data) - 1)] = rnd.randrange(256)
        elif action < 0.6:
            data[pos:pos] = rnd.choice([b"[", b"]", b"{", b"}", b'"', b",", b":", b"0", b"9" * 30,
                                        b"\\", b"\\u", b"\\ud800", b"-", b"e999", b"null",
                                        b"\xff", b"\xc3"])
        elif action < 0.8:
            del data[pos:pos + rnd.randint(1, 20)]
        else:
            del data[pos:]
    return bytes(data)


def test_fuzz_2000_mutations_raise_only_decode_error() -> None:
    rnd = random.Random(20240611)  # fixed: a failure is reproducible
    outcomes = {"decode_error": 0, "decoded": 0, "skipped_spans": 0}
    cases = [(decode_zipkin_v2_json, V2_SPANS), (decode_zipkin_v1_json, V1_SPANS)]
    for i in range(2000):
        decode, spans = cases[i % 2]
        valid = json.dumps(spans).encode()
        body = _mutate_structure(rnd, spans) if i % 4 < 2 else _mutate_bytes(rnd, valid)
        try:
            result = decode_checked(decode, body)
        except Exception as exc:  # noqa: BLE001 - report the body that broke the decoder
            pytest.fail("mutation %d raised %r for body %r" % (i, exc, body[:300]))
        if result is None:
            outcomes["decode_error"] += 1
        else:
            outcomes["decoded"] += 1
            outcomes["skipped_spans"] += result.skipped
    # The loop exercised all three paths, not just one of them.
    assert all(outcomes.values()), outcomes


def test_an_unforeseen_error_in_one_span_skips_only_that_span(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from opentracing_sls.shim import zipkin_v2

    real = zipkin_v2.name_of

    def flaky(value: Any) -> str:
        if value == "boom":
            raise TypeError("a bug")
        return real(value)

    monkeypatch.setattr(zipkin_v2, "name_of", flaky)
    result = decode_zipkin_v2_json(json.dumps([GOOD, dict(GOOD, name="boom")]).encode())
    assert (len(result.spans), result.skipped) == (1, 1)
    assert result.first_error == "unexpected TypeError: a bug"
