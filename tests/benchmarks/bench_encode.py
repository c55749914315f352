"""Span encoding speed: our hand-written encoders against the generic Thrift paths.

Run ``python tests/benchmarks/bench_encode.py [--spans N] [--repeats R]``; not a pytest
module. The span is the "typical sampled child span" of the encoder's requirement: random
64-bit ids, a 13-character operation name, three tags (one str, one int, one bool), one log
``{"event": "x", "value": 42}``, no references. Every record has its own ids, times and
str tag value, so nothing is cached between spans except what real traffic repeats (tag
keys, operation names).

Rows, all per span:

- ours compact / binary: ``get_encoder(p).encode_span(record)``;
- jaeger-client reporter: what its reporter thread does per span, i.e. ``make_jaeger_batch``
  (a ``ttypes.Span`` with converted ids) and Apache Thrift's pure-Python ``TCompactProtocol``
  writing it into the emitBatch message; tags and logs were already ``ttypes`` objects;
- jaeger-client incl. tags/logs: the same plus ``make_tag``/``make_log``, which jaeger-client
  runs on the application thread at ``set_tag``/``log_kv`` time; comparable to ours, which
  takes the raw dicts;
- thriftpy2 compact / binary: building the thriftpy2 ``Span`` of our IDL from the record,
  then serializing it with thriftpy2's generic protocols (binary: its Cython ``cybin``).

Timing: the best of R runs over N spans (garbage collector off), plus the median, because
this virtual machine's speed is bimodal under host load.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import time
from typing import Callable, List, Sequence, Tuple

from jaeger_client import thrift as jc_thrift
from jaeger_client.thrift_gen.agent import Agent
from thrift.protocol import TCompactProtocol
from thrift.Thrift import TMessageType
from thrift.transport import TTransport
from thriftpy2.protocol import TCyBinaryProtocol
from thriftpy2.protocol.compact import TCompactProtocol as Tp2Compact
from thriftpy2.transport import TCyMemoryBuffer
from thriftpy2.transport.memory import TMemoryBuffer

from opentracing_sls.record import SpanRecord
from opentracing_sls.reporting.encoding import get_encoder
from opentracing_sls.reporting.idl import jaeger

TARGET_US = 3.0
M64 = (1 << 64) - 1


def make_records(count: int, seed: int = 20240601) -> List[SpanRecord]:
    rnd = random.Random(seed)
    now = int(time.time() * 1e6)
    return [
        SpanRecord(
            trace_id=rnd.getrandbits(64), span_id=rnd.getrandbits(64),
            parent_id=rnd.getrandbits(64), operation_name="GET /api/user", flags=1,
            start_time=now + 10 * i, duration=rnd.randrange(100, 50_000),
            tags={"http.url": f"http://reviews:9080/reviews/{i}", "http.status_code": 200,
                  "error": False},
            logs=[(now + 10 * i + 5, {"event": "x", "value": 42})], references=[],
        )
        for i in range(count)
    ]


class JaegerClientSpan:
    """The attributes of a finished jaeger_client.Span that ``make_jaeger_batch`` reads."""

    class _Context:
        __slots__ = ("flags",)

        def __init__(self, flags: int) -> None:
            self.flags = flags

    class _NoLock:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    _lock = _NoLock()

    def __init__(self, record: SpanRecord, tags, logs) -> None:
        self.update_lock = self._lock
        self.trace_id = record.trace_id
        self.span_id = record.span_id
        self.parent_id = record.parent_id or None
        self.operation_name = record.operation_name
        self.references = None
        self.context = self._Context(record.flags)
        self.start_time = record.start_time / 1e6  # jaeger-client keeps float seconds
        self.end_time = (record.start_time + record.duration) / 1e6
        self.tags = tags
        self.logs = logs


def jc_tags_logs(record: SpanRecord):
    """What jaeger-client builds at set_tag / log_kv time."""
    tags = [jc_thrift.make_tag(k, v, 1024, 4096) for k, v in record.tags.items()]
    logs = [jc_thrift.make_log(ts / 1e6, fields, 1024, 4096) for ts, fields in record.logs]
    return tags, logs


def jc_process():
    return jc_thrift.make_process("bench", {"hostname": "h", "ip": "127.0.0.1"}, 1024)


def jc_emit(spans: Sequence[JaegerClientSpan], process) -> bytes:
    """jaeger-client's reporter: make_jaeger_batch, then the body of its generated
    ``Agent.Client.send_emitBatch`` (the Tornado client itself needs an IOLoop)."""
    batch = jc_thrift.make_jaeger_batch(spans=spans, process=process)
    buf = TTransport.TMemoryBuffer()
    oprot = TCompactProtocol.TCompactProtocol(buf)
    oprot.writeMessageBegin("emitBatch", TMessageType.ONEWAY, 1)
    args = Agent.emitBatch_args()
    args.batch = batch
    args.write(oprot)
    oprot.writeMessageEnd()
    return buf.getvalue()


def tp2_tag(key, value):
    if isinstance(value, bool):
        return jaeger.Tag(key=key, vType=2, vBool=value)
    if isinstance(value, int):
        return jaeger.Tag(key=key, vType=3, vLong=value)
    if isinstance(value, float):
        return jaeger.Tag(key=key, vType=1, vDouble=value)
    return jaeger.Tag(key=key, vType=0, vStr=str(value))


def signed(u: int) -> int:
    return u - (1 << 64) if u >> 63 else u


def tp2_span(r: SpanRecord):
    return jaeger.Span(
        traceIdLow=signed(r.trace_id & M64), traceIdHigh=signed(r.trace_id >> 64),
        spanId=signed(r.span_id), parentSpanId=signed(r.parent_id),
        operationName=r.operation_name, flags=r.flags, startTime=r.start_time,
        duration=r.duration, tags=[tp2_tag(k, v) for k, v in r.tags.items()] or None,
        logs=[jaeger.Log(timestamp=ts, fields=[tp2_tag(k, v) for k, v in f.items()])
              for ts, f in r.logs] or None)


def tp2_compact(record: SpanRecord) -> bytes:
    buf = TMemoryBuffer()
    Tp2Compact(buf).write_struct(tp2_span(record))
    return buf.getvalue()


def tp2_cybinary(record: SpanRecord) -> bytes:
    buf = TCyMemoryBuffer()
    proto = TCyBinaryProtocol(buf)
    proto.write_struct(tp2_span(record))
    proto.trans.flush()
    return buf.getvalue()


def check_same_bytes(record: SpanRecord, jc_span: JaegerClientSpan, process) -> None:
    """Sanity: jaeger-client's span, with times set to the record's exact microseconds
    (it keeps float seconds), serializes to exactly our compact bytes."""
    span = jc_thrift.make_jaeger_batch(spans=[jc_span], process=process).spans[0]
    span.startTime, span.duration = record.start_time, record.duration
    span.logs[0].timestamp = record.logs[0][0]
    buf = TTransport.TMemoryBuffer()
    span.write(TCompactProtocol.TCompactProtocol(buf))
    assert buf.getvalue() == get_encoder("compact").encode_span(record), "bytes differ"


def measure(run: Callable[[], None], count: int, repeats: int) -> Tuple[float, float]:
    """(best, median) microseconds per span."""
    run()  # warm caches
    times = []
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            run()
            times.append((time.perf_counter_ns() - t0) / count / 1000)
    finally:
        gc.enable()
    return min(times), statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1000, help="spans per run")
    parser.add_argument("--repeats", type=int, default=300, help="runs of our encoders")
    args = parser.parse_args(argv)
    n, repeats = args.spans, args.repeats
    slow_repeats = max(5, repeats // 15)  # the generic paths are 3-20x slower

    records = make_records(n)
    compact, binary = get_encoder("compact"), get_encoder("binary")
    prebuilt = [jc_tags_logs(r) for r in records]
    jc_spans = [JaegerClientSpan(r, *tl) for r, tl in zip(records, prebuilt)]
    process = jc_process()
    check_same_bytes(records[0], jc_spans[0], process)
    # ... and the thriftpy2 paths do the same work as ours: identical bytes
    assert tp2_compact(records[0]) == compact.encode_span(records[0])
    assert tp2_cybinary(records[0]) == binary.encode_span(records[0])

    def ours(encode):
        def run():
            for r in records:
                encode(r)
        return run

    def jc_reporter():
        jc_emit(jc_spans, process)

    def jc_full():
        spans = [JaegerClientSpan(r, *jc_tags_logs(r)) for r in records]
        jc_emit(spans, process)

    def tp2(fn):
        def run():
            for r in records:
                fn(r)
        return run

    rows = [
        ("ours compact", "compact", measure(ours(compact.encode_span), n, repeats)),
        ("ours binary", "binary", measure(ours(binary.encode_span), n, repeats)),
        ("jaeger-client reporter (make_jaeger_batch + TCompactProtocol)", "compact",
         measure(jc_reporter, n, slow_repeats)),
        ("jaeger-client incl. make_tag/make_log", "compact", measure(jc_full, n, slow_repeats)),
        ("thriftpy2 compact (our IDL, build + serialize)", "compact",
         measure(tp2(tp2_compact), n, slow_repeats)),
        ("thriftpy2 binary, cybin (our IDL, build + serialize)", "binary",
         measure(tp2(tp2_cybinary), n, slow_repeats)),
    ]
    ours_best = {"compact": rows[0][2][0], "binary": rows[1][2][0]}

    print(f"Python {platform.python_version()} ({platform.python_implementation()}), "
          f"{platform.machine()}, {n} spans x {repeats} runs (peers x {slow_repeats})")
    print(f"span: {len(compact.encode_span(records[0]))} bytes compact, "
          f"{len(binary.encode_span(records[0]))} bytes binary")
    print()
    width = max(len(r[0]) for r in rows)
    print(f"{'path':<{width}}  {'best us':>8}  {'median us':>9}  {'ours/peer':>9}  "
          f"{'speed-up':>8}")
    print("-" * (width + 44))
    for name, proto, (best, median) in rows:
        ratio = speedup = ""
        if not name.startswith("ours"):
            ratio = f"{ours_best[proto] / best:.3f}"
            speedup = f"{best / ours_best[proto]:.1f}x"
        print(f"{name:<{width}}  {best:8.3f}  {median:9.3f}  {ratio:>9}  {speedup:>8}")
    print("(ours/peer compares with ours of the same protocol, best against best)")
    print()
    best = ours_best["compact"]
    verdict = "PASS" if best <= TARGET_US else "FAIL"
    print(f"{verdict}: compact encode_span {best:.3f} us/span (best of {repeats}); "
          f"target <= {TARGET_US:.1f} us")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
