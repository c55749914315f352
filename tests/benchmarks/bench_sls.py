"""The aliyun_sls sink: UDP -> shim -> SLS test server, against a naive sink, and a long outage.

``python tests/benchmarks/bench_sls.py [--quick] [--spans N] [--rate R] [--outage S]``; a
standalone script, not a pytest module. The SLS test server
(``opentracing_sls.testing.sls_server``) runs in its own process, so its work is not counted
as the shim's; senders run in their own processes too (``bench_shim``'s, same datagrams: 50
typical spans each, three services).

1. Throughput, ours: a :class:`Shim` in this process (compact UDP port only, ``aliyun_sls``
   with its default settings, a spool in a temporary directory) fed by a windowed sender (a
   bounded number of datagrams and spans in flight, so nothing overflows). Reported: spans/s
   end to end (wall time until SLS has accepted every span: ``spans_written_total``) and this
   process's CPU time per span as spans/s per core. Target: >= 50 000 spans/s per core, 0 lost.
2. The same for a naive sink, same shim receiver and decoder: for every decoded batch (one
   datagram), one ``LogItem`` per span (the same contents) and one synchronous
   ``LogClient.put_logs(PutLogsRequest)``: the SDK's documented way, no pipelining. Target:
   ours >= 3x the naive sink.
3. Outage: ``--rate`` spans/s (default 5 000) paced from another process; after 10 s the
   server goes down (every connection closed) for ``--outage`` s (default 300), then comes
   back; the load goes on 30 s more. Reported: sent, spooled at the peak, and, once the spool
   is empty, what the server holds: lost (sent - distinct) and duplicates. Target: 0 lost,
   duplicates <= 0.1 %.

Exit status is 0 whatever the PASS/FAIL outcome (a benchmark, not a gate); 1 only on errors.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_shim import (  # noqa: E402 - the benchmarks' own directory
    SPANS_PER_DATAGRAM,
    add_rates,
    make_datagrams,
    paced_sender,
    verdict,
    windowed_drive,
)

from opentracing_sls.shim.config import resolve  # noqa: E402
from opentracing_sls.shim.metrics import PREFIX  # noqa: E402
from opentracing_sls.shim.server import Shim  # noqa: E402
from opentracing_sls.shim.sinks import Sink  # noqa: E402
from opentracing_sls.shim.sls_schema import log_time, span_contents  # noqa: E402
from opentracing_sls.testing import free_ports  # noqa: E402

TARGET_PER_CORE = 50_000
TARGET_RATIO = 3.0
FMT = "jaeger.compact"
LOGSTORE = "jaeger-span"
PORT_KEYS = ("compact_port", "binary_port", "http_port", "zipkin_port", "sampling_port",
             "admin_port", "query_port")


# --------------------------------------------------------------------------- the server process


def serve(port: Any, ready: Any, stop: Any, db: str) -> None:
    from opentracing_sls.testing.sls_server import Limits, SlsServer

    # Key names are not checked (values and counts are): reading every key back out of the
    # protobuf costs the server ~8 µs a span, which would make it the bottleneck.
    server = SlsServer(path=db or None, limits=Limits(check_keys=False)).start()
    port.value = server.port
    ready.set()
    stop.wait()
    server.stop()


class ServerProcess:
    def __init__(self, ctx: Any, db: str = "") -> None:
        self.port_value = ctx.RawValue("i", 0)
        self.ready, self.stop_event = ctx.Event(), ctx.Event()
        self.proc = ctx.Process(target=serve, args=(self.port_value, self.ready,
                                                    self.stop_event, db), daemon=True)
        self.proc.start()
        if not self.ready.wait(60):
            raise RuntimeError("the SLS test server did not start")
        self.endpoint = "127.0.0.1:%d" % self.port_value.value

    def control(self, action: str, spec: Optional[Dict[str, Any]] = None) -> Any:
        url = "http://%s/_sls_server/%s" % (self.endpoint, action)
        data = json.dumps(spec).encode() if spec is not None else None
        with urllib.request.urlopen(urllib.request.Request(url, data), timeout=600) as r:
            return json.loads(r.read())

    def close(self) -> None:
        self.stop_event.set()
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()


# --------------------------------------------------------------------------- targets


class NaiveSlsSink(Sink):
    """One synchronous ``put_logs`` per decoded batch, ``LogItem``s built per span."""

    name = "naive_sls"

    def __init__(self, shim: Shim, endpoint: str, project: str) -> None:
        super().__init__(shim.metrics, 100_000)
        from aliyun.log import LogClient

        from opentracing_sls.testing.sls_server import (
            DEFAULT_ACCESS_KEY_ID,
            DEFAULT_ACCESS_KEY_SECRET,
        )

        self.client = LogClient(endpoint, DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET,
                                source="0.0.0.0")
        self.client._isRowIp = True
        self.project = project
        self._batches: Deque[List[Any]] = deque()

    def open(self) -> None:
        self.client.create_project(self.project, "naive")
        self.client.create_logstore(self.project, LOGSTORE)

    def _take(self) -> List[Any]:  # one decoded batch per write: no merging
        with self._lock:
            if not self._queue:
                self._busy = False
                return []
            batch = self._queue.popleft()
            self._queued -= len(batch)
            self._busy = True
            return batch

    def write(self, spans: List[Any]) -> int:
        from aliyun.log import LogItem, PutLogsRequest

        items = []
        for span in spans:
            seconds, nanos = log_time(span)
            items.append(LogItem(seconds, span_contents(span), nanos or 1))
        self.client.put_logs(PutLogsRequest(self.project, LOGSTORE, "", "0.0.0.0", items))
        return len(spans)


class Target:
    def __init__(self, server: ServerProcess, directory: str, project: str,
                 naive: bool) -> None:
        port = free_ports(1)[0]
        flags = {"listen.host": "127.0.0.1"}
        flags.update({"listen." + key: "0" for key in PORT_KEYS})
        flags.update({"listen.compact_port": str(port),
                      "storage.type": "local" if naive else "aliyun_sls",
                      "storage.local.path": os.path.join(directory, "unused.db"),
                      "storage.aliyun_sls.endpoint": server.endpoint,
                      "storage.aliyun_sls.project": project,
                      "storage.aliyun_sls.accesskey.id": "sls-test-access-key",
                      "storage.aliyun_sls.accesskey.secret": "sls-test-secret",
                      "spool.path": os.path.join(directory, "spool")})
        self.port = port
        self.shim = Shim(resolve(flags, environ={}))
        if naive:
            self.shim.sinks = [NaiveSlsSink(self.shim, server.endpoint, project)]
        self.name = "naive (put_logs per batch)" if naive else "ours (aliyun_sls)"
        self.sink = self.shim.sinks[0].name
        self.shim.start()
        self._packets = self.shim.metrics.packets.labels(FMT)
        self._written = self.shim.metrics.written.labels(self.sink)

    def packets(self) -> int:
        return int(self._packets._value.get())

    def written(self) -> int:
        return int(self._written._value.get())

    def sample(self, name: str, **labels: str) -> float:
        return self.shim.metrics.registry.get_sample_value(PREFIX + name, labels) or 0.0

    def dropped(self) -> float:
        total = 0.0
        for metric in self.shim.metrics.registry.collect():
            if metric.name in (PREFIX + "spans_dropped", PREFIX + "inputs_dropped"):
                total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
        return total

    def stop(self) -> None:
        self.shim.stop(timeout=10)


# --------------------------------------------------------------------------- runs


def throughput(ctx: Any, server: ServerProcess, datagrams: List[bytes], naive: bool,
               project: str) -> Dict[str, Any]:
    total = len(datagrams) * SPANS_PER_DATAGRAM
    with tempfile.TemporaryDirectory(prefix="bench-sls-") as directory:
        target = Target(server, directory, project, naive)
        try:
            wall, cpu, _ = windowed_drive(ctx, target, datagrams, total, target.dropped,
                                          stall=15)
            result = {"name": target.name, "spans": total, "written": target.written(),
                      "dropped": target.dropped(), "wall": wall, "cpu": cpu,
                      "requests": target.sample("sls_requests_total", operation="put_logs",
                                                outcome="ok")}
        finally:
            target.stop()
    stored = server.control("unique?project=%s&logstore=%s" % (project, LOGSTORE))
    result.update(stored=stored["logs"], unique=stored["unique"])
    return add_rates(result)


def outage(ctx: Any, rate: float, down_for: float, before: float,
           after: float) -> Dict[str, Any]:
    project = "bench-outage"
    with tempfile.TemporaryDirectory(prefix="bench-sls-outage-") as directory:
        server = ServerProcess(ctx, os.path.join(directory, "sls.db"))
        target = Target(server, directory, project, naive=False)
        sent = ctx.RawValue("q", 0)
        ready, go = ctx.Event(), ctx.Event()
        duration = before + down_for + after
        proc = ctx.Process(target=paced_sender, daemon=True,
                           args=(target.port, rate, duration, sent, ready, go))
        peak = {"spool_spans": 0.0, "spool_bytes": 0.0}
        stop_watch = threading.Event()

        def watch() -> None:
            while not stop_watch.wait(0.5):
                for key in peak:
                    peak[key] = max(peak[key], target.sample(key, sink="aliyun_sls"))

        watcher = threading.Thread(target=watch, daemon=True)
        try:
            proc.start()
            if not ready.wait(1200):
                raise RuntimeError("sender did not start")
            watcher.start()
            start = time.perf_counter()
            go.set()
            time.sleep(before)
            server.control("faults", {"down": True})
            print("  %.1f s: SLS down" % (time.perf_counter() - start), flush=True)
            time.sleep(down_for)
            server.control("faults", {"down": False})
            recovered = time.perf_counter()
            print("  %.1f s: SLS back; spool holds %d spans (%.1f MB)" % (
                recovered - start, target.sample("spool_spans", sink="aliyun_sls"),
                target.sample("spool_bytes", sink="aliyun_sls") / 1e6), flush=True)
            proc.join()
            spans_sent = sent.value * SPANS_PER_DATAGRAM
            deadline = time.perf_counter() + 600
            while time.perf_counter() < deadline:
                if target.sample("spool_spans", sink="aliyun_sls") == 0 and \
                        target.written() + target.dropped() >= spans_sent:
                    break
                time.sleep(0.2)
            drained = time.perf_counter() - recovered
            target.shim.sinks[0].drain(30)
            stop_watch.set()
            result = {"rate": rate, "outage": down_for, "sent": spans_sent,
                      "decoded": target.sample("spans_decoded_total", format=FMT),
                      "written": target.written(), "dropped": target.dropped(),
                      "replayed_spans": target.sample("sls_logs_written_total", path="spool"),
                      "drained_after": drained, **{"peak_" + k: v for k, v in peak.items()}}
        finally:
            stop_watch.set()
            if proc.is_alive():
                proc.terminate()
            target.stop()
        stored = server.control("unique?project=%s&logstore=%s" % (project, LOGSTORE))
        server.close()
    result.update(stored=stored["logs"], unique=stored["unique"])
    return result


# --------------------------------------------------------------------------- main


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="100 000 spans per throughput run, a 20 s outage")
    parser.add_argument("--spans", type=int, default=None,
                        help="spans per throughput run (default 300 000)")
    parser.add_argument("--rate", type=float, default=5000, help="outage run: spans/s")
    parser.add_argument("--outage", type=float, default=None,
                        help="outage run: seconds SLS is down (default 300, 20 with --quick)")
    parser.add_argument("--skip-outage", action="store_true")
    args = parser.parse_args(argv)
    spans = args.spans or (100_000 if args.quick else 300_000)
    down_for = args.outage if args.outage is not None else (20 if args.quick else 300)
    count = max(1, spans // SPANS_PER_DATAGRAM)

    ctx = mp.get_context("spawn")
    print("bench_sls: Python %s on %s, %d CPUs; SLS test server and senders in their own "
          "processes" % (platform.python_version(), platform.machine(), os.cpu_count() or 0))
    datagrams = make_datagrams(count)
    print("datagrams: %d x %d spans, %d bytes on average" % (
        count, SPANS_PER_DATAGRAM, sum(map(len, datagrams)) // count))
    server = ServerProcess(ctx)
    try:
        ours = throughput(ctx, server, datagrams, False, "bench-ours")
        naive = throughput(ctx, server, datagrams, True, "bench-naive")
    finally:
        server.close()
    print()
    print("%-28s %8s %8s %8s %7s %7s %10s %12s %8s %8s" % (
        "throughput", "spans", "written", "stored", "wall s", "cpu s", "spans/s",
        "spans/s/core", "cpu us", "puts"))
    for r in (ours, naive):
        print("%-28s %8d %8d %8d %7.2f %7.2f %10.0f %12.0f %8.2f %8d" % (
            r["name"], r["spans"], r["written"], r["stored"], r["wall"], r["cpu"], r["rate"],
            r["per_core"], r["cpu_us"], r["requests"] or r["spans"] // SPANS_PER_DATAGRAM))
    ratio_core = ours["per_core"] / naive["per_core"] if naive["per_core"] else float("inf")
    ratio_wall = ours["rate"] / naive["rate"] if naive["rate"] else float("inf")
    print("ratio ours/naive: %.2fx per core, %.2fx end-to-end" % (ratio_core, ratio_wall))
    ours_ok = ours["unique"] == ours["spans"] and not ours["dropped"]

    result = None
    if not args.skip_outage:
        print()
        print("outage: %.0f spans/s, SLS down for %.0f s after 10 s, then 30 s more" % (
            args.rate, down_for))
        result = outage(ctx, args.rate, down_for, before=10.0, after=30.0)
        lost = result["sent"] - result["unique"]
        duplicates = result["stored"] - result["unique"]
        print("%10s %10s %10s %10s %12s %12s %10s %10s %9s" % (
            "sent", "stored", "distinct", "lost", "duplicates", "peak spool", "spool MB",
            "replayed", "drain s"))
        print("%10d %10d %10d %10d %12d %12d %10.1f %10d %9.1f" % (
            result["sent"], result["stored"], result["unique"], lost, duplicates,
            result["peak_spool_spans"], result["peak_spool_bytes"] / 1e6,
            result["replayed_spans"], result["drained_after"]))
        if result["dropped"]:
            print("dropped: %d" % result["dropped"])

    print()
    print("%s end-to-end per core: %.0f spans/s/core, 0 lost: %s (target >= %d)" % (
        verdict(ours["per_core"] >= TARGET_PER_CORE and ours_ok), ours["per_core"],
        "yes" if ours_ok else "no", TARGET_PER_CORE))
    print("%s ours/naive: %.2fx per core, %.2fx end-to-end (target >= %.0fx)" % (
        verdict(ratio_core >= TARGET_RATIO and ratio_wall >= TARGET_RATIO), ratio_core,
        ratio_wall, TARGET_RATIO))
    if result is not None:
        lost = result["sent"] - result["unique"]
        duplicates = result["stored"] - result["unique"]
        full = down_for >= 300 and args.rate >= 5000
        print("%s outage %.0f s at %.0f spans/s: %d lost, %d duplicates (%.3f%%)%s" % (
            verdict(lost == 0 and duplicates <= 0.001 * result["sent"] and result["sent"] > 0),
            down_for, args.rate, lost, duplicates,
            100.0 * duplicates / result["sent"] if result["sent"] else 0.0,
            "" if full else " [shorter than the 5 min x 5 000/s target]"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
