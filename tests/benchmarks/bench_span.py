"""Wall time per span: opentracing-sls against jaeger-client 4.8.0 and the OpenTelemetry SDK.

Run ``python tests/benchmarks/bench_span.py [--quick]``; not a pytest module.

(a) Sampled child span, reporter ON: ``with tracer.start_active_span("child") as scope:``
    under an active parent, three tags (str, int, bool) and one log of two fields; the spans
    really go out to a sink in a separate process (Jaeger Thrift over UDP, const sampler 1;
    OpenTelemetry: ALWAYS_ON, BatchSpanProcessor and an exporter that really exports, with
    ``start_as_current_span``, three ``set_attribute`` and one two-attribute ``add_event``).
    Every tracer's queue holds a whole timed run, so none drops; drops are still reported,
    and after each run the sink must receive every span before the next run starts.
    Target: ours <= 0.25 x jaeger-client.
(b) Unsampled span (const sampler 0; OpenTelemetry ALWAYS_OFF), three variants:
    ``root`` = ``tracer.start_span("op").finish()`` with no active span, ``child`` = the same
    under an active unsampled parent, ``active`` = ``with tracer.start_active_span("op"):``
    under an active unsampled parent. Target: ours <= 1.2 us per span, each variant.

Timing: time.perf_counter around a loop of N spans (the loop's own ~0.02 us included), one
warm-up run, then R timed runs per tracer interleaved in rotating order; the figure is the
MEDIAN of the R runs (best in the next column). The garbage collector stays on. In (a) the
reporter threads share the GIL with the loop, so their encoding shows in the wall time as
far as it happens during the loop; bench_cpu.py measures the whole cost per span.

N is 20 000 for (a), not 100 000: no reporter keeps up with a tight loop, so the backlog
grows with N, and with the garbage collector on every queued span is traversed again and
again: per-span times rise with N for all three tracers (ours ~6 us at 5 000, ~11 us at
100 000 on the reference VM), and 100 000 jaeger-client spans take ~9 s per run.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Dict, List, Optional, Sequence

from _common import (
    base_parser,
    fmt_ratio,
    fmt_us,
    median,
    print_header,
    table,
    time_interleaved,
    verdict,
)
from _sinks import Sinks
from _tracers import close_all, make_subjects

SAMPLED_TARGET_RATIO = 0.25
UNSAMPLED_TARGET = 1.2e-6
VARIANTS = {
    "root": "start_span('op').finish(), no active span",
    "child": "start_span('op').finish() under an active unsampled parent",
    "active": "with start_active_span('op'): under an active unsampled parent",
}


def sampled(sinks: Sinks, n: int, repeats: int) -> None:
    warmup = max(1000, n // 10)
    # Every queue holds a whole run: measure the tracer, not its overflow policy.
    subjects = make_subjects(sinks, "bench-span", sampled=True, queue_size=n + warmup + 1000)
    by_key = {s.key: s for s in subjects}
    try:
        for subject in subjects:
            subject.warm_up(warmup)
        with contextlib.ExitStack() as parents:
            for subject in subjects:
                parents.enter_context(subject.parent())
            times = time_interleaved({s.key: s.child_loop for s in subjects}, n, repeats,
                                     warmup, after=lambda key: by_key[key].delivered())
        results = {s.key: (s.sent, *s.delivered(), s.dropped()) for s in subjects}
    finally:
        close_all(subjects)

    jaeger = median(times["jaeger"])
    rows = []
    for s in subjects:
        sent, received, shaped, dropped = results[s.key]
        rows.append([s.label, fmt_us(median(times[s.key])), fmt_us(min(times[s.key])),
                     fmt_ratio(median(times[s.key]), jaeger), sent, received, shaped, dropped])
    print()
    print("(a) sampled child span, 3 tags + 1 log, reporter on: %d runs x %d spans per tracer"
          % (repeats, n))
    table(["tracer", "median us/span", "best us/span", "vs jaeger-client", "sent",
           "received", "well-formed", "dropped"], rows)
    ours = median(times["ours"])
    verdict(ours <= SAMPLED_TARGET_RATIO * jaeger,
            "(a) ours %.2f us = %.3f x jaeger-client's %.2f us (target <= %.2f x)"
            % (ours * 1e6, ours / jaeger, jaeger * 1e6, SAMPLED_TARGET_RATIO))
    ours_result = results["ours"]
    if ours_result[2] != ours_result[0]:
        print("NOTE  ours: the sink received %d well-formed of %d child spans sent"
              % (ours_result[2], ours_result[0]))


def unsampled(sinks: Sinks, n: int, repeats: int) -> None:
    subjects = make_subjects(sinks, "bench-span-unsampled", sampled=False)
    try:
        times: Dict[str, Dict[str, List[float]]] = {}
        for variant in VARIANTS:
            times[variant] = time_interleaved(
                {s.key: s.unsampled_loops()[variant] for s in subjects}, n, repeats,
                max(1000, n // 10))
        leaked = {s.label: s.sink.snapshot()["payloads"].get(s.service, 0) for s in subjects}
    finally:
        close_all(subjects)

    labels = {s.key: s.label for s in subjects}
    rows = []
    for variant, t in times.items():
        ours, jaeger, otel = (median(t[k]) for k in ("ours", "jaeger", "otel"))
        rows.append([variant, "%s (%s)" % (fmt_us(ours, 3), fmt_us(min(t["ours"]), 3)),
                     "%s (%s)" % (fmt_us(jaeger, 3), fmt_us(min(t["jaeger"]), 3)),
                     "%s (%s)" % (fmt_us(otel, 3), fmt_us(min(t["otel"]), 3)),
                     fmt_ratio(ours, jaeger), fmt_ratio(ours, otel)])
    print()
    print("(b) unsampled span: %d runs x %d spans per tracer and variant; us/span, median "
          "(best)" % (repeats, n))
    for variant, text in VARIANTS.items():
        print("    %-6s = %s" % (variant, text))
    table(["variant", labels["ours"], labels["jaeger"], labels["otel"], "ours/jaeger",
           "ours/otel"], rows)
    for variant, t in times.items():
        ours = median(t["ours"])
        verdict(ours <= UNSAMPLED_TARGET, "(b) ours unsampled %-6s %.3f us (target <= %.1f us)"
                % (variant, ours * 1e6, UNSAMPLED_TARGET * 1e6))
    for label, payloads in leaked.items():
        if payloads:
            print("NOTE  %s sent %d payload(s) while sampling nothing" % (label, payloads))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--spans", type=int, help="sampled spans per timed run "
                        "(default 20000; --quick 5000)")
    parser.add_argument("--unsampled-spans", type=int, help="unsampled spans per timed run "
                        "(default 100000; --quick 20000)")
    parser.add_argument("--repeats", type=int, help="timed runs per tracer (default 7; "
                        "--quick 3)")
    args = parser.parse_args(argv)
    n = args.spans or (5000 if args.quick else 20000)
    n_unsampled = args.unsampled_spans or (20000 if args.quick else 100000)
    repeats = args.repeats or (3 if args.quick else 7)

    sinks = Sinks()
    try:
        print_header("bench_span: wall time per span, ours vs peers in one run", [
            sinks.describe(),
            "figures: median of %d interleaved runs per tracer (best in brackets or next "
            "column), time.perf_counter, GC on" % repeats])
        sampled(sinks, n, repeats)
        unsampled(sinks, n_unsampled, repeats)
    finally:
        sinks.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
