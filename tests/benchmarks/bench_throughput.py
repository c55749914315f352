"""Delivery at 20 000 spans/s with DEFAULT settings: ours against the peers' defaults.

Run ``python tests/benchmarks/bench_throughput.py [--quick] [--duration S] [--rate R]``; not
a pytest module.

Each tracer is built with its defaults: ours and jaeger-client from a config holding only
the const sampler (1) and the agent host/port (ours: queue 10 000; jaeger-client: queue 100);
OpenTelemetry with ``BatchSpanProcessor``'s defaults (queue 2 048, batch 512, 5 s delay) and
the exporter named in the header. A loop makes child spans of the bench_span (a) shape under
an active parent at ``--rate`` spans/s for ``--duration`` seconds, paced in bursts once per
millisecond (a loop that falls behind catches up, but stops at the deadline, so "made" may
be short of the target). Then the tracer is flushed where it can be, and the sink (a separate
process with a 64 MiB receive buffer) is read once it has everything or has been quiet for
1.5 s. "dropped" is the tracer's own count (ours: ``tracer.metrics.snapshot()``;
jaeger-client: its ``jaeger:reporter_spans{result=dropped|err}`` counters; OpenTelemetry:
spans never handed to the exporter, plus failed exports). Target: ours delivers 100 % at
the full rate.
"""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from _common import base_parser, paced, print_header, table, verdict
from _sinks import Sinks
from _tracers import SUBJECTS, Ours, Subject, close_all, make_subject

# Below this share of the requested rate the loop did not really run at that rate.
RATE_TOLERANCE = 0.97


def run(subject: Subject, rate: float, duration: float, slot: float
        ) -> Tuple[int, float, int, int, int, int, int]:
    """(spans made, loop seconds, received, well-formed, dropped, payloads, bytes)."""
    subject.warm_up(100)  # within jaeger-client's default queue of 100
    before = subject.payloads()
    dropped_before = subject.dropped()
    with subject.parent():
        made, wall = paced(subject.child_once, rate, duration, slot)
    subject.sent += made
    received, shaped = subject.delivered(timeout=60.0)
    after = subject.payloads()
    return (made, wall, received, shaped, subject.dropped() - dropped_before,
            after[0] - before[0], after[1] - before[1])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--duration", type=float, help="seconds per tracer (default 10; "
                        "--quick 2)")
    parser.add_argument("--rate", type=float, default=20000.0, help="spans per second "
                        "(default 20000)")
    parser.add_argument("--slot-ms", type=float, default=1.0, help="pacing slot: spans are "
                        "made in one burst per slot (default 1 ms)")
    args = parser.parse_args(argv)
    slot = args.slot_ms / 1000.0
    duration = args.duration or (2.0 if args.quick else 10.0)
    rate = args.rate

    sinks = Sinks()
    try:
        print_header("bench_throughput: delivery at %g spans/s for %g s (one burst per %g ms), "
                     "default settings" % (rate, duration, args.slot_ms), [sinks.describe()])
        results: Dict[str, Tuple[int, float, int, int, int, int, int]] = {}
        subjects: List[Subject] = []
        ours_metrics: Dict[str, int] = {}
        # One tracer at a time, each built just before its run: none has idle threads of
        # the others around, and each gets the whole machine.
        for cls in SUBJECTS:
            subject = make_subject(cls, sinks, "bench-throughput", sampled=True)
            subjects.append(subject)
            try:
                results[subject.key] = run(subject, rate, duration, slot)
                if isinstance(subject, Ours):
                    ours_metrics = subject.metrics()
            finally:
                close_all([subject])
        socket_drops = sinks.udp.snapshot()["socket_drops"]
    finally:
        sinks.close()

    rows: List[List[Any]] = []
    for s in subjects:
        made, wall, received, shaped, dropped, payloads, size = results[s.key]
        rows.append([s.label, s.settings(), "%.0f" % (made / wall), made, received, shaped,
                     dropped, made - received - dropped, payloads,
                     "%.2f %%" % (100.0 * received / made if made else 0.0)])
    print()
    table(["tracer", "settings (defaults)", "spans/s made", "sent", "received", "well-formed",
           "dropped", "unaccounted", "payloads", "delivered"], rows)
    print("dropped = the tracer's own count during the run (ours and jaeger-client count every "
          "span, so the run's one parent span may be among them)")
    print("unaccounted = sent - received - dropped (lost without the tracer counting it)")
    print("UDP sink socket: %s datagrams dropped by the kernel" % (
        "n/a" if socket_drops is None else socket_drops))
    print("ours, counters: %s" % ", ".join(
        "%s=%d" % (k, v) for k, v in ours_metrics.items()
        if v and (k.startswith("reporter.") or k == "tracer.internal_errors")))
    made, wall, received, shaped = results["ours"][:4]
    achieved = made / wall
    verdict(received == made and shaped == made and achieved >= RATE_TOLERANCE * rate,
            "ours delivered %d of %d spans (%.2f %%) at %.0f spans/s (target 100 %% at %g "
            "spans/s)" % (shaped, made, 100.0 * shaped / made if made else 0.0, achieved,
                          rate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
