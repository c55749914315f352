"""BookInfo productpage with tracing off and on, in the same run: throughput, p50/p99 latency
and CPU per page view, and the overhead of tracing.

``python tests/benchmarks/bench_bookinfo.py [--quick] [--duration S] [--rounds N]
[--concurrency C]``; a standalone script, not a pytest module.

Two copies of the four services run side by side as real processes (examples/bookinfo/stack.py):
one bare (``python -m bookinfo.<service>``), one under ``opentracing-sls run`` reporting every
span (const sampler) over UDP to a shim that writes them to its local store. Load comes from
``--concurrency`` client processes, each sending ``GET /productpage`` back to back (a closed
loop; a new connection per request, as the threaded werkzeug server speaks HTTP/1.0). The two
stacks take turns, ``--rounds`` times, so background noise hits both alike. CPU per page view
is the four services' user+system time (from /proc) over the round; the shim's is shown
apart. At the end the shim's counters show that every span was stored.

Exit status 0 whatever the figures (a benchmark, not a gate); 1 on errors.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "examples"))

from _common import base_parser, table  # noqa: E402
from bookinfo.stack import SERVICES, BookinfoStack, StackConfig, choose_ports  # noqa: E402

MODES = ("off", "on")
SPANS_PER_VIEW = 7  # 4 server spans, productpage's 2 client spans, reviews' 1


def client(url: str, seconds: float, queue: mp.Queue[Tuple[List[float], int]]) -> None:
    """Page views back to back for ``seconds``; puts (latencies in s, errors)."""
    latencies: List[float] = []
    errors = 0
    perf = time.perf_counter
    end = perf() + seconds
    while perf() < end:
        start = perf()
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                response.read()
                ok = response.status == 200
        except OSError:
            ok = False
        if ok:
            latencies.append(perf() - start)
        else:
            errors += 1
    queue.put((latencies, errors))


def cpu_seconds(pids: Sequence[int]) -> Optional[float]:
    """User + system CPU seconds of ``pids`` (Linux /proc), None elsewhere."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def load(ctx: mp.context.BaseContext, url: str, seconds: float,
         concurrency: int) -> Tuple[List[float], int, float]:
    queue = ctx.Queue()
    workers = [ctx.Process(target=client, args=(url, seconds, queue))
               for _ in range(concurrency)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=seconds + 60) for _ in workers]
    wall = time.perf_counter() - start
    for worker in workers:
        worker.join()
    latencies = [x for lat, _ in results for x in lat]
    return latencies, sum(err for _, err in results), wall


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def shim_counters(stack: BookinfoStack) -> Dict[str, float]:
    with urllib.request.urlopen(stack.url("admin_port", "/metrics"), timeout=5) as response:
        text = response.read().decode()
    out: Dict[str, float] = {}
    for line in text.splitlines():
        for name in ("spans_written_total", "spans_dropped_total", "spans_decoded_total"):
            if line.startswith("opentracing_sls_shim_" + name + "{"):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of load per round and mode (default 8, 2 with --quick)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds (default 3, 2 with --quick)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="client processes (default 4)")
    args = parser.parse_args(argv)
    duration = args.duration or (2.0 if args.quick else 8.0)
    rounds = args.rounds or (2 if args.quick else 3)
    ctx = mp.get_context("spawn")
    workdir = tempfile.mkdtemp(prefix="bench-bookinfo-")
    stacks = {mode: BookinfoStack(StackConfig(workdir=os.path.join(workdir, mode),
                                              ports=choose_ports(False), tracing=mode == "on"))
              for mode in MODES}
    print("bench_bookinfo: Python %s, %d CPUs; %d rounds x %.0f s per mode, %d clients; "
          "services on werkzeug (threaded)" % (sys.version.split()[0], os.cpu_count() or 0,
                                               rounds, duration, args.concurrency))
    results: Dict[str, Dict[str, List[float]]] = {
        mode: {"latencies": [], "views": [], "wall": [], "cpu": [], "shim_cpu": []}
        for mode in MODES}
    errors = {mode: 0 for mode in MODES}
    try:
        for stack in stacks.values():
            stack.start(timeout=60)
        for stack in stacks.values():  # warm up: imports, template compilation, connections
            load(ctx, stack.url("productpage", "/productpage"), 1.0, args.concurrency)
        for round_index in range(rounds):
            order = MODES if round_index % 2 == 0 else MODES[::-1]
            for mode in order:
                stack = stacks[mode]
                pids = [stack.processes[s].pid for s in SERVICES]
                shim = [stack.processes["shim"].pid] if "shim" in stack.processes else []
                cpu0, shim0 = cpu_seconds(pids), cpu_seconds(shim)
                latencies, errs, wall = load(ctx, stack.url("productpage", "/productpage"),
                                             duration, args.concurrency)
                cpu1, shim1 = cpu_seconds(pids), cpu_seconds(shim)
                entry = results[mode]
                entry["latencies"] += latencies
                entry["views"].append(len(latencies))
                entry["wall"].append(wall)
                if cpu0 is not None and cpu1 is not None:
                    entry["cpu"].append((cpu1 - cpu0) / max(len(latencies), 1))
                if shim and shim0 is not None and shim1 is not None:
                    entry["shim_cpu"].append((shim1 - shim0) / max(len(latencies), 1))
                errors[mode] += errs
                print("  round %d, tracing %-3s: %6d page views, %7.1f/s"
                      % (round_index + 1, mode, len(latencies), len(latencies) / wall),
                      flush=True)
        time.sleep(1.0)  # the services flush every 0.2 s; the shim writes behind
        counters = shim_counters(stacks["on"])
    finally:
        for stack in stacks.values():
            stack.stop()

    rows = []
    summary = {}
    for mode in MODES:
        entry = results[mode]
        rate = sum(entry["views"]) / sum(entry["wall"])
        p50 = percentile(entry["latencies"], 0.50) * 1000
        p99 = percentile(entry["latencies"], 0.99) * 1000
        cpu = statistics.median(entry["cpu"]) * 1000 if entry["cpu"] else float("nan")
        shim_cpu = statistics.median(entry["shim_cpu"]) * 1000 if entry["shim_cpu"] else None
        summary[mode] = (rate, p50, p99, cpu)
        rows.append(["tracing " + mode, "%d" % sum(entry["views"]), "%.1f" % rate,
                     "%.2f" % p50, "%.2f" % p99, "%.2f" % cpu,
                     "%.2f" % shim_cpu if shim_cpu is not None else "-", errors[mode]])
    print()
    table(["productpage", "views", "views/s", "p50 ms", "p99 ms", "services CPU ms/view",
           "shim CPU ms/view", "errors"], rows)
    off, on = summary["off"], summary["on"]
    print()
    print("overhead of tracing: throughput %+.1f%%, p50 %+.2f ms (%+.1f%%), p99 %+.2f ms "
          "(%+.1f%%), services CPU %+.2f ms per page view (%+.1f%%)"
          % ((on[0] / off[0] - 1) * 100, on[1] - off[1], (on[1] / off[1] - 1) * 100,
             on[2] - off[2], (on[2] / off[2] - 1) * 100, on[3] - off[3],
             (on[3] / off[3] - 1) * 100))
    expected = sum(results["on"]["views"]) * SPANS_PER_VIEW
    print("spans: %d expected from the measured views (plus warm-up), %d decoded, %d written, "
          "%d dropped by the shim" % (expected, counters.get("spans_decoded_total", 0),
                                      counters.get("spans_written_total", 0),
                                      counters.get("spans_dropped_total", 0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
