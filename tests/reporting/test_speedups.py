"""The C compact encoder (opentracing_sls._speedups) against the Python one, byte for byte.

The C path takes the common shapes and hands the rest to the Python encoder, so every case
here, common or odd, must produce identical bytes through both entry points.
"""

from __future__ import annotations

import enum
import random
import sys
from typing import Any, Dict, List

import pytest

from opentracing_sls._accel import pure_python
from opentracing_sls.record import SpanRecord
from opentracing_sls.reporting import compact, encoding

speedups = pytest.importorskip("opentracing_sls._speedups",
                               reason="C accelerator not built (no compiler?)")
pytestmark = pytest.mark.skipif(
    pure_python(), reason="compares the C path with the Python one; the C one is switched off")

M64 = (1 << 64) - 1


class Color(enum.IntEnum):
    RED = 7


class Shout:
    def __str__(self) -> str:
        return "LOUD"


def _value(rng: random.Random) -> Any:
    kind = rng.randrange(14)
    if kind == 0:
        return "".join(chr(rng.choice((0x41, 0x7A, 0xE9, 0x4E2D, 0x1F600)))
                       for _ in range(rng.randrange(0, 40)))
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randrange(-1024, 1024)
    if kind == 3:
        return rng.randrange(-(1 << 63), 1 << 63)
    if kind == 4:
        return rng.uniform(-1e300, 1e300)
    if kind == 5:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 20)))
    if kind == 6:
        return rng.choice((1 << 63, -(1 << 63) - 1, 1 << 100))  # beyond i64: STRING
    if kind == 7:
        return Color.RED  # int subclass
    if kind == 8:
        return Shout()
    if kind == 9:
        return "bad \udcff surrogate"
    if kind == 10:
        return bytearray(b"\x00\x01")
    if kind == 11:
        return float("nan") if rng.random() < 0.5 else float("-inf")
    if kind == 12:
        return "x" * rng.randrange(100, 3000)  # multi-byte varint length
    return ""


def _fields(rng: random.Random, n: int) -> Dict[Any, Any]:
    fields: Dict[Any, Any] = {}
    for i in range(n):
        key: Any = "k%d" % i
        roll = rng.random()
        if roll < 0.05:
            key = "key \ud800 %d" % i  # lone surrogate in a key
        elif roll < 0.08:
            key = i  # a non-str key
        elif roll < 0.15:
            key = "ключ-%d" % i
        fields[key] = _value(rng)
    return fields


def _id(rng: random.Random, bits: int = 64) -> int:
    return rng.choice((0, 1, 127, 1 << 55, (1 << 55) - 1, M64, 1 << 63,
                       rng.getrandbits(bits)))


def _record(rng: random.Random) -> SpanRecord:
    trace_id = _id(rng, 128) if rng.random() < 0.3 else _id(rng)
    if rng.random() < 0.02:
        trace_id = -trace_id - 1
    refs: List[Any] = [(rng.randrange(2), _id(rng, 128), _id(rng))
                       for _ in range(rng.choice((0, 0, 1, 2, 16)))]
    logs = [(rng.choice((rng.getrandbits(52), 0, -5, 1 << 70)),
             _fields(rng, rng.choice((0, 1, 3, 15, 20))))
            for _ in range(rng.choice((0, 0, 1, 2, 15, 17)))]
    op: Any = rng.choice(("get", "", "öp", "op \udc80", "x" * 5000))
    return SpanRecord(
        trace_id, _id(rng), _id(rng), op, rng.choice((0, 1, 2, 3, -1, 1 << 40)),
        rng.choice((rng.getrandbits(51), 0, -1, 1 << 64)),
        rng.choice((0, 5, 1023, 1024, 8191, 8192, 1 << 24, -3, 1 << 70)),
        _fields(rng, rng.choice((0, 1, 3, 14, 15, 16, 40))), logs, refs)


def test_backend_is_c_when_built() -> None:
    assert compact.BACKEND == "c"
    assert compact.CompactSpanEncoder.encode_span is speedups.encode_span_compact


def test_c_and_python_encoders_agree_on_random_records() -> None:
    rng = random.Random(20261122)
    fast = speedups.encode_span_compact
    for _ in range(5000):
        record = _record(rng)
        assert fast(record) == compact.encode_span(record), record


@pytest.mark.parametrize("record", [
    SpanRecord(1, 2, 0, "op", 1, 1, 1, None, None, None),  # None lists: nothing written
    SpanRecord(1, 2, 0, "op", 1, 1, 1, {}, [], []),
    SpanRecord(1, 2, 0, "op", 1, 1, 1, {"a": 1}, [[5, {"b": True}]], [[0, 1, 2]]),
    SpanRecord(1, 2, 0, "op", True, 1, 1, {"a": 1}, (), ()),
])
def test_odd_containers_agree(record: SpanRecord) -> None:
    assert speedups.encode_span_compact(record) == compact.encode_span(record)


def test_errors_are_the_python_encoders() -> None:
    bad = SpanRecord("not an id", 2, 0, "op", 1, 1, 1, {}, [], [])
    with pytest.raises(TypeError):
        compact.encode_span(bad)
    with pytest.raises(TypeError):
        speedups.encode_span_compact(bad)


def test_no_reference_leak() -> None:
    # The refcounts of the objects the encoder reads (shared singletons such as True move
    # with everything else the interpreter does, so only this test's own objects count).
    rng = random.Random(7)
    records = [_record(rng) for _ in range(50)]
    watched = [v for r in records for v in (r.operation_name, *r.tags.values(), *r.logs)
               if sys.getrefcount(v) < 100]
    assert len(watched) > 100
    before = [sys.getrefcount(v) for v in watched]
    for _ in range(200):
        for record in records:
            speedups.encode_span_compact(record)
    assert [sys.getrefcount(v) for v in watched] == before


def test_pure_python_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENTRACING_SLS_PURE_PYTHON", "1")
    assert compact._accelerated() == (compact.encode_span, "python")
    monkeypatch.setenv("OPENTRACING_SLS_PURE_PYTHON", "0")
    assert compact._accelerated()[1] == "c"


def _pack_inputs(rng: random.Random) -> List[bytes]:
    spans: List[bytes] = []
    for _ in range(rng.randrange(0, 60)):
        if rng.random() < 0.1:  # too large for the small budgets
            spans.append(compact.encode_span(SpanRecord(
                1, 2, 0, "x" * rng.randrange(900, 1200), 1, 1, 1, {}, [], [])))
        else:
            spans.append(compact.encode_span(_record(rng)))
    return spans


@pytest.mark.parametrize("seed", range(30))
def test_c_and_python_pack_spans_agree(seed: int) -> None:
    rng = random.Random(seed)
    spans = _pack_inputs(rng)
    budget = rng.choice((600, 1000, 5000, 65000))
    used = rng.choice((0, 0, 10, budget // 2, budget))
    assert speedups.pack_spans(spans, budget, used) == encoding.pack_spans(spans, budget, used)


def test_pack_spans_groups_fit_the_budget_and_keep_order() -> None:
    spans = [bytes([i]) * (100 + i) for i in range(50)]
    groups, too_large = speedups.pack_spans(spans, 1000, 950)
    assert too_large == []
    assert groups[0] == ([], 950)  # the caller's 950 bytes leave no room for a 100-byte span
    assert [s for g, _ in groups for s in g] == spans
    assert all(size == sum(map(len, g)) <= 1000 for g, size in groups[1:])
    assert speedups.pack_spans([b"x" * 1001], 1000, 0) == ([([], 0)], [1001])
