"""End-to-end throughput and sustained loss of the agent shim (UDP compact -> local store).

``python tests/benchmarks/bench_shim.py [--quick] [--rate N] [--duration S]``; a standalone
script, not a pytest module. Three parts:

1. Throughput: pre-encoded emitBatch datagrams (about 50 typical spans each: three tags
   str/int/bool and one log of two fields, three services) are sent from a separate process to
   a :class:`Shim` running in this process (only the compact UDP port enabled, the store in a
   temporary directory). The sender keeps a bounded number of datagrams and spans in flight
   (watching the shim's packet and written counters), so neither the kernel socket buffer nor
   the sink queue overflows. Reported: spans/s end-to-end (wall time until
   ``spans_written_total{sink="local"}`` reaches the total) and this process's CPU time per
   span, turned into spans/s per core. Target: >= 50 000 spans/s per core.
2. The same figures for a naive pipeline fed the same datagrams the same way: a UDP socket,
   thriftpy2's pure-Python ``TCompactProtocol`` over ``TMemoryBuffer`` decoding each datagram
   into ``Agent.emitBatch_args``, and one ``INSERT`` per span into a plain SQLite table
   (WAL, ``synchronous=NORMAL`` like the shim's store), committed once per datagram.
3. Sustained loss: ``--rate`` spans/s for ``--duration`` s, paced in 1 ms slots from a
   separate process; prints sent, decoded, written, dropped (``spans_dropped_total`` plus
   ``inputs_dropped_total``, which includes ``socket_overflow``) and the loss.
   Target: no loss at 30 000 spans/s for 60 s.

Exit status is 0 whatever the PASS/FAIL outcome (a benchmark, not a gate); 1 only on errors.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from thriftpy2.protocol.compact import TCompactProtocol
from thriftpy2.transport.memory import TMemoryBuffer

from opentracing_sls.reporting.encoding import get_encoder
from opentracing_sls.reporting.idl import agent
from opentracing_sls.shim.config import resolve
from opentracing_sls.shim.metrics import PREFIX
from opentracing_sls.shim.server import Shim
from opentracing_sls.testing import free_ports, make_span_record

SPANS_PER_DATAGRAM = 50
SERVICES = ("frontend", "reviews", "ratings")
FMT = "jaeger.compact"
TARGET_PER_CORE = 50_000
TARGET_RATE = 30_000
TARGET_DURATION = 60
#: Datagrams in flight (sent, not yet received by the listener) during the throughput runs.
DATAGRAM_WINDOW = 128
#: Spans in flight (sent, not yet written) during the throughput runs; the sink queue holds
#: 100 000 by default.
SPAN_WINDOW = 40_000
PORT_KEYS = ("compact_port", "binary_port", "http_port", "zipkin_port", "sampling_port",
             "admin_port", "query_port")


# --------------------------------------------------------------------------- datagrams


def make_datagrams(count: int, start: int = 0) -> List[bytes]:
    """``count`` emitBatch datagrams of SPANS_PER_DATAGRAM unique spans, services rotating."""
    encoder = get_encoder("compact")
    processes = [encoder.encode_process(name, {"hostname": name + "-7f9c", "ip": "10.0.0.%d" % n,
                                               "jaeger.version": "Python-bench"})
                 for n, name in enumerate(SERVICES, 1)]
    out = []
    for d in range(start, start + count):
        spans = []
        for j in range(SPANS_PER_DATAGRAM):
            i = d * SPANS_PER_DATAGRAM + j
            record = make_span_record(
                i, tags={"peer.service": "reviews", "http.status_code": 200, "cache.hit": True},
                logs=[(1_700_000_000_000_000 + i, {"event": "cache-miss", "latency_ms": 42})])
            spans.append(encoder.encode_span(record))
        out.append(encoder.encode_emit_batch(processes[d % len(SERVICES)], spans, d + 1,
                                             (0, 0, 0)))
    return out


# --------------------------------------------------------------------------- senders
# Both run in a separate (spawned) process; they report readiness and the count sent through
# shared values and wait for ``go`` so the datagram preparation is not timed.


def windowed_sender(port: int, datagrams: Sequence[bytes], spans_per: int, acked_packets: Any,
                    acked_spans: Any, sent: Any, ready: Any, go: Any) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    address = ("127.0.0.1", port)
    ready.set()
    go.wait()
    n = 0
    total = len(datagrams)
    while n < total:
        if n - acked_packets.value < DATAGRAM_WINDOW and \
                n * spans_per - acked_spans.value < SPAN_WINDOW:
            sock.sendto(datagrams[n], address)
            n += 1
            sent.value = n
        else:
            time.sleep(0.0002)
    sock.close()


def paced_sender(port: int, rate: float, duration: float, sent: Any, ready: Any,
                 go: Any) -> None:
    per_second = rate / SPANS_PER_DATAGRAM
    count = int(per_second * duration)
    datagrams = make_datagrams(count, start=10_000_000)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    address = ("127.0.0.1", port)
    ready.set()
    go.wait()
    start = time.perf_counter()
    n = 0
    while n < count:
        due = min(count, int((time.perf_counter() - start) * per_second) + 1)
        while n < due:
            sock.sendto(datagrams[n], address)
            n += 1
        sent.value = n
        slot_end = start + (int((time.perf_counter() - start) * 1000) + 1) / 1000
        pause = slot_end - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    sock.close()


# --------------------------------------------------------------------------- targets


def metric_by_label(shim: Shim, name: str, label: str) -> Dict[str, float]:
    """``<name>_total`` summed per value of ``label`` (e.g. the drop reasons)."""
    out: Dict[str, float] = {}
    for metric in shim.metrics.registry.collect():
        if metric.name == PREFIX + name:
            for s in metric.samples:
                if s.name.endswith("_total") and s.value:
                    key = s.labels.get(label, "")
                    out[key] = out.get(key, 0.0) + s.value
    return out


def metric_total(shim: Shim, name: str) -> float:
    """Sum of every labelled ``<name>_total`` sample."""
    total = 0.0
    for metric in shim.metrics.registry.collect():
        if metric.name == PREFIX + name:
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


class ShimTarget:
    name = "ours (shim)"

    def __init__(self, directory: str) -> None:
        port = free_ports(1)[0]
        flags = {"listen.host": "127.0.0.1", "storage.local.path":
                 os.path.join(directory, "spans.db")}
        flags.update({"listen." + key: "0" for key in PORT_KEYS})
        flags["listen.compact_port"] = str(port)
        self.port = port
        self.shim = Shim(resolve(flags, environ={}))
        self.shim.start()
        # The labelled children, read directly in the pacing loop (cheaper than
        # registry.get_sample_value, which collects the whole registry).
        self._packets = self.shim.metrics.packets.labels(FMT)
        self._written = self.shim.metrics.written.labels("local")

    def packets(self) -> int:
        return int(self._packets._value.get())

    def written(self) -> int:
        return int(self._written._value.get())

    def lost(self) -> float:
        # Called every 2 ms while driving: summing the children directly keeps the pacing
        # loop's own CPU (counted as the shim's) small; registry.collect() was 5% of a core.
        metrics = self.shim.metrics
        return sum(child._value.get() for counter in (metrics.dropped, metrics.input_dropped)
                   for child in list(counter._metrics.values()))

    def sample(self, name: str, labels: Dict[str, str]) -> float:
        return self.shim.metrics.registry.get_sample_value(name, labels) or 0.0

    def stop(self) -> None:
        self.shim.stop(timeout=10)


def _tag_value(tag: Any) -> Any:
    return (tag.vStr, tag.vDouble, tag.vBool, tag.vLong,
            tag.vBinary.hex() if tag.vBinary is not None else None)[tag.vType]


class NaiveTarget:
    """UDP socket + thriftpy2 pure-Python compact decode + one INSERT per span."""

    name = "naive (thriftpy2+sqlite)"

    def __init__(self, directory: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._packets = 0
        self._written = 0
        self._errors = 0
        self._stop = threading.Event()
        self.conn = sqlite3.connect(os.path.join(directory, "naive.db"),
                                    check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.conn.execute(
            "CREATE TABLE spans (trace_id_low INTEGER, trace_id_high INTEGER, span_id INTEGER,"
            " parent_id INTEGER, service TEXT, operation TEXT, flags INTEGER,"
            " start_time INTEGER, duration INTEGER, tags TEXT, logs TEXT)")
        self.conn.commit()
        self._thread = threading.Thread(target=self._run, daemon=True, name="naive-udp")
        self._thread.start()

    def _run(self) -> None:
        insert = ("INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        conn = self.conn
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self._packets += 1
            try:
                proto = TCompactProtocol(TMemoryBuffer(data))
                proto.read_message_begin()
                args = agent.Agent.emitBatch_args()
                args.read(proto)
                batch = args.batch
            except Exception:  # noqa: BLE001 - count and go on, like any receiver
                self._errors += 1
                continue
            service = batch.process.serviceName
            for span in batch.spans:
                tags = json.dumps({t.key: _tag_value(t) for t in span.tags or ()})
                logs = json.dumps([[log.timestamp, {f.key: _tag_value(f) for f in log.fields}]
                                   for log in span.logs or ()])
                conn.execute(insert, (span.traceIdLow, span.traceIdHigh, span.spanId,
                                      span.parentSpanId, service, span.operationName,
                                      span.flags, span.startTime, span.duration, tags, logs))
            conn.commit()  # one transaction per datagram
            self._written += len(batch.spans)

    def packets(self) -> int:
        return self._packets

    def written(self) -> int:
        return self._written

    def lost(self) -> float:
        return float(self._errors)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        self.conn.close()


# --------------------------------------------------------------------------- runs


def _stop_process(proc: Any) -> None:
    proc.join(timeout=10)
    if proc.is_alive():
        proc.terminate()
        proc.join(timeout=5)


def windowed_drive(ctx: Any, target: Any, datagrams: List[bytes], spans_total: int,
                   lost: Callable[[], float], stall: float) -> Tuple[float, float, int]:
    """Sends ``datagrams`` to ``target.port`` from a separate process, keeping the window
    ``target.packets()``/``target.written()`` allow, until every span is written or lost
    (or nothing moved for ``stall`` s). Returns (wall s, this process's CPU s, spans sent)."""
    acked_packets = ctx.RawValue("q", 0)
    acked_spans = ctx.RawValue("q", 0)
    sent = ctx.RawValue("q", 0)
    ready, go = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=windowed_sender, daemon=True,
                       args=(target.port, datagrams, SPANS_PER_DATAGRAM, acked_packets,
                             acked_spans, sent, ready, go))
    try:
        proc.start()
        if not ready.wait(120):
            raise RuntimeError("sender did not start")
        wall0, cpu0 = time.perf_counter(), time.process_time()
        go.set()
        last, last_change = -1, time.perf_counter()
        while True:
            written = target.written()
            acked_packets.value = target.packets()
            acked_spans.value = written
            if written + lost() >= spans_total:
                break
            now = time.perf_counter()
            if written != last:
                last, last_change = written, now
            elif now - last_change > stall:
                break  # stalled: report what arrived
            time.sleep(0.002)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        _stop_process(proc)
        return wall, cpu, sent.value * SPANS_PER_DATAGRAM
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)


def add_rates(result: Dict[str, Any]) -> Dict[str, Any]:
    """Adds spans/s end to end, spans/s per core and CPU µs per span to a run's result."""
    written, wall, cpu = result["written"], result["wall"], result["cpu"]
    result["rate"] = written / wall if wall else 0.0
    result["per_core"] = written / cpu if cpu else 0.0
    result["cpu_us"] = 1e6 * cpu / written if written else 0.0
    return result


def throughput(ctx: Any, make_target: Callable[[str], Any], datagrams: List[bytes],
               spans_total: int) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-shim-") as directory:
        target = make_target(directory)
        try:
            wall, cpu, sent = windowed_drive(ctx, target, datagrams, spans_total, target.lost,
                                             stall=10)
            result = {"name": target.name, "spans": spans_total, "written": target.written(),
                      "lost": target.lost(), "sent": sent, "wall": wall, "cpu": cpu}
        finally:
            target.stop()
    return add_rates(result)


def sustained(ctx: Any, rate: float, duration: float) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-shim-") as directory:
        target = ShimTarget(directory)
        sent = ctx.RawValue("q", 0)
        ready, go = ctx.Event(), ctx.Event()
        proc = ctx.Process(target=paced_sender, daemon=True,
                           args=(target.port, rate, duration, sent, ready, go))
        try:
            proc.start()
            if not ready.wait(600):
                raise RuntimeError("sender did not start")
            wall0, cpu0 = time.perf_counter(), time.process_time()
            go.set()
            max_lag = 0
            while proc.is_alive():
                lag = sent.value * SPANS_PER_DATAGRAM - target.written()
                max_lag = max(max_lag, lag)
                time.sleep(0.05)
            proc.join()
            send_wall = time.perf_counter() - wall0
            spans_sent = sent.value * SPANS_PER_DATAGRAM
            last, last_change = -1, time.perf_counter()
            while True:  # let the shim finish what it received
                written = target.written()
                if written + target.lost() >= spans_sent:
                    break
                now = time.perf_counter()
                if written != last:
                    last, last_change = written, now
                elif now - last_change > 3:
                    break
                time.sleep(0.01)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            shim = target.shim
            result = {
                "rate": rate, "duration": duration, "send_wall": send_wall, "wall": wall,
                "cpu": cpu, "sent": spans_sent, "max_lag": max_lag,
                "packets": target.sample(PREFIX + "packets_received_total", {"format": FMT}),
                "decoded": target.sample(PREFIX + "spans_decoded_total", {"format": FMT}),
                "written": target.sample(PREFIX + "spans_written_total", {"sink": "local"}),
                "spans_dropped": metric_total(shim, "spans_dropped"),
                "inputs_dropped": metric_total(shim, "inputs_dropped"),
                "socket_overflow": target.sample(PREFIX + "inputs_dropped_total",
                                                 {"format": FMT, "reason": "socket_overflow"}),
                "malformed": metric_total(shim, "malformed_inputs"),
                "reasons": {**metric_by_label(shim, "spans_dropped", "reason"),
                            **{"input:" + k: v for k, v in
                               metric_by_label(shim, "inputs_dropped", "reason").items()}},
            }
        finally:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            target.stop()
    return result


# --------------------------------------------------------------------------- main


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller throughput runs and a 5 s sustained test")
    parser.add_argument("--rate", type=float, default=TARGET_RATE,
                        help="sustained test: spans/s (default %(default)s)")
    parser.add_argument("--duration", type=float, default=None,
                        help="sustained test: seconds (default 60, 5 with --quick)")
    parser.add_argument("--spans", type=int, default=None,
                        help="throughput runs: spans (default 300 000, 50 000 with --quick)")
    args = parser.parse_args(argv)
    duration = args.duration if args.duration is not None else (5 if args.quick else 60)
    spans = args.spans or (50_000 if args.quick else 300_000)
    count = max(1, spans // SPANS_PER_DATAGRAM)
    spans_total = count * SPANS_PER_DATAGRAM

    ctx = mp.get_context("spawn")
    print("bench_shim: Python %s on %s, %d CPUs" % (platform.python_version(),
                                                    platform.machine(), os.cpu_count() or 0))
    datagrams = make_datagrams(count)
    print("datagrams: %d x %d spans, %d bytes on average; naive store commits once per "
          "datagram" % (count, SPANS_PER_DATAGRAM, sum(map(len, datagrams)) // count))

    ours = throughput(ctx, ShimTarget, datagrams, spans_total)
    naive = throughput(ctx, NaiveTarget, datagrams, spans_total)
    print()
    print("%-26s %9s %9s %8s %8s %12s %12s %10s" % ("throughput", "spans", "written", "wall s",
                                                   "cpu s", "spans/s", "spans/s/core",
                                                   "cpu us/span"))
    for r in (ours, naive):
        print("%-26s %9d %9d %8.3f %8.3f %12.0f %12.0f %10.2f"
              % (r["name"], r["spans"], r["written"], r["wall"], r["cpu"], r["rate"],
                 r["per_core"], r["cpu_us"]))
    ratio_core = ours["per_core"] / naive["per_core"] if naive["per_core"] else float("inf")
    ratio_wall = ours["rate"] / naive["rate"] if naive["rate"] else float("inf")
    print("ratio ours/naive: %.2fx per core, %.2fx end-to-end" % (ratio_core, ratio_wall))
    if ours["lost"] or ours["written"] < spans_total:
        print("note: ours wrote %d of %d, %d lost" % (ours["written"], spans_total,
                                                       ours["lost"]))

    s = sustained(ctx, args.rate, duration)
    dropped = s["spans_dropped"] + s["inputs_dropped"]
    loss = 100.0 * (s["sent"] - s["written"]) / s["sent"] if s["sent"] else 0.0
    print()
    print("sustained: %.0f spans/s for %.0f s (sending took %.2f s, %.2f s in all; shim cpu "
          "%.2f s = %.0f%% of a core; max spans in flight %d)"
          % (s["rate"], s["duration"], s["send_wall"], s["wall"], s["cpu"],
             100 * s["cpu"] / s["wall"] if s["wall"] else 0, s["max_lag"]))
    print("%10s %10s %10s %10s %10s %16s %10s" % ("sent", "packets", "decoded", "written",
                                                  "dropped", "socket_overflow", "loss %"))
    print("%10d %10d %10d %10d %10d %16d %10.3f"
          % (s["sent"], s["packets"], s["decoded"], s["written"], dropped,
             s["socket_overflow"], loss))
    if s["reasons"]:
        print("dropped by reason: %s" % ", ".join("%s=%d" % kv for kv in s["reasons"].items()))
    if s["malformed"]:
        print("malformed inputs: %d" % s["malformed"])

    print()
    print("%s end-to-end per core: %.0f spans/s/core (target >= %d)"
          % (verdict(ours["per_core"] >= TARGET_PER_CORE and ours["written"] == spans_total),
             ours["per_core"], TARGET_PER_CORE))
    print("INFO ours/naive: %.2fx per core" % ratio_core)
    full = s["rate"] >= TARGET_RATE and s["duration"] >= TARGET_DURATION
    print("%s sustained %.0f spans/s for %.0f s: loss %.3f%% (%d dropped)%s"
          % (verdict(loss == 0 and dropped == 0 and s["sent"] > 0), s["rate"], s["duration"],
             loss, dropped, "" if full else " [shorter/slower than the 30 000/s x 60 s target]"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
