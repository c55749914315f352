"""BookInfo traced end to end on one machine: ``make demo``.

Starts the opentracing-sls shim (local store and query UI) and Istio's four BookInfo services
(written in Python here) under ``opentracing-sls run``, sends page views through productpage,
prints what was stored and the last page view's trace, then keeps everything running for the
UI until Ctrl-C, and stops every process it started.

    python examples/bookinfo/demo.py                      # local store only
    python examples/bookinfo/demo.py --requests 100 --reviews-version v2
    python examples/bookinfo/demo.py --sls                # also to Alibaba Cloud SLS
    python examples/bookinfo/demo.py --jaeger-agent jaeger-agent:6831

See docs/istio-sls-walkthrough.md for what to look at, and the same on Kubernetes/Istio.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from typing import Any, Dict, List, Optional, Sequence

if __package__ in (None, ""):
    # Run as a script: make the ``bookinfo`` package (this directory) importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bookinfo import summary, traffic  # noqa: E402
from bookinfo.stack import BookinfoStack, StackConfig, StackError, choose_ports  # noqa: E402

#: The seed's five SLS parameters: demo flag -> shim key. Each also comes from the shim's own
#: environment variable (``OPENTRACING_SLS_STORAGE_ALIYUN_SLS_...``).
SLS_PARAMETERS = {
    "sls_endpoint": "storage.aliyun_sls.endpoint",
    "sls_project": "storage.aliyun_sls.project",
    "sls_logstore": "storage.aliyun_sls.logstore",
    "sls_accesskey_id": "storage.aliyun_sls.accesskey.id",
    "sls_accesskey_secret": "storage.aliyun_sls.accesskey.secret",
}


def env_name(key: str) -> str:
    return "OPENTRACING_SLS_" + key.upper().replace(".", "_")


class Interrupted(Exception):
    """SIGTERM: stop like Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="demo.py",
        description="BookInfo traced end to end on this machine: starts the opentracing-sls "
                    "shim (local store, query UI) and the four BookInfo services under "
                    "`opentracing-sls run`, sends page views, prints what was stored and the "
                    "last page view's trace, then runs until Ctrl-C and stops everything.",
        epilog="SLS parameters not given as flags are read from %s ... %s."
               % (env_name(SLS_PARAMETERS["sls_endpoint"]),
                  env_name(SLS_PARAMETERS["sls_accesskey_secret"])))
    parser.add_argument("--requests", type=int, default=40, metavar="N",
                        help="page views to send (default 40; the second half signed in as "
                             "%s)" % traffic.DEMO_USER)
    parser.add_argument("--no-wait", action="store_true",
                        help="exit after the summary instead of waiting for Ctrl-C")
    parser.add_argument("--reviews-version", choices=("v1", "v2", "v3"), default="v3",
                        help="v1: no stars, v2: black stars, v3: red stars (default v3); "
                             "v2 and v3 call ratings")
    parser.add_argument("--workdir", metavar="DIR",
                        help="keep the store (spans.db) and the logs here; an existing "
                             "store is added to (default: a temporary directory, removed on "
                             "exit)")
    parser.add_argument("--free-ports", action="store_true",
                        help="use free ports even when 9080 and 16686 are available")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="how long to wait for each process to start (default 30)")
    sinks = parser.add_argument_group("where spans go besides the local store")
    sinks.add_argument("--sls", action="store_true",
                       help="also write them to Alibaba Cloud Log Service (the shim's "
                            "aliyun_sls sink) with the five parameters below")
    for dest, key in SLS_PARAMETERS.items():
        note = " (a flag shows in ps: prefer the variable)" if "secret" in dest else ""
        sinks.add_argument("--" + dest.replace("_", "-"), dest=dest, metavar="VALUE",
                           help="%s (or $%s)%s" % (key, env_name(key), note))
    sinks.add_argument("--jaeger-agent", metavar="HOST:PORT",
                       help="also forward them to this jaeger-agent (compact Thrift, UDP)")
    return parser


def sink_settings(args: argparse.Namespace,
                  environ: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """The shim's extra flags and environment for ``--sls`` / ``--jaeger-agent``.

    SLS values go to the shim through its environment, so the AccessKey secret is not on a
    command line that ``ps`` shows. A missing parameter is a usage error (SystemExit).
    """
    environ = dict(os.environ if environ is None else environ)
    types = ["local"]
    flags: List[str] = []
    shim_env: Dict[str, str] = {}
    if args.sls:
        missing = []
        for dest, key in SLS_PARAMETERS.items():
            value = getattr(args, dest) or environ.get(env_name(key), "")
            if not value:
                missing.append("--%s (or $%s)" % (dest.replace("_", "-"), env_name(key)))
            shim_env[env_name(key)] = value
        if missing:
            raise SystemExit("demo.py: --sls needs %s" % ", ".join(missing))
        types.append("aliyun_sls")
    if args.jaeger_agent:
        if not re.match(r"^\[?[\w.:-]+\]?:\d+$", args.jaeger_agent):
            raise SystemExit("demo.py: --jaeger-agent must be HOST:PORT, got %r"
                             % args.jaeger_agent)
        types.append("jaeger_agent")
        flags += ["--storage.jaeger_agent.host_port", args.jaeger_agent]
    return {"flags": ["--storage.type", ",".join(types)] + flags, "env": shim_env,
            "types": types}


def sink_metrics(admin_url: str) -> Dict[str, Dict[str, float]]:
    """``{"written": {sink: n}, "dropped": {sink: n}}`` from the shim's /metrics."""
    out: Dict[str, Dict[str, float]] = {"written": {}, "dropped": {}}
    try:
        with urllib.request.urlopen(admin_url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return out
    pattern = re.compile(r'^opentracing_sls_shim_spans_(written|dropped)_total\{([^}]*)\}'
                         r'\s+([0-9.e+]+)$', re.M)
    for kind, labels, value in pattern.findall(text):
        sink = re.search(r'sink="([^"]+)"', labels)
        if sink:
            bucket = out[kind]
            bucket[sink.group(1)] = bucket.get(sink.group(1), 0.0) + float(value)
    return out


def wait_for_sinks(admin_url: str, sink_types: Sequence[str],
                   timeout: float = 5.0) -> Dict[str, Dict[str, float]]:
    """The sinks' counters once every sink has handled what the local store has (SLS
    batches linger up to a second before they are sent)."""
    deadline = time.monotonic() + timeout
    while True:
        metrics = sink_metrics(admin_url)
        local = metrics["written"].get("local", 0) + metrics["dropped"].get("local", 0)
        if time.monotonic() > deadline or all(
                metrics["written"].get(sink, 0) + metrics["dropped"].get(sink, 0) >= local
                for sink in sink_types):
            return metrics
        time.sleep(0.2)


def print_summary(stack: BookinfoStack, result: traffic.TrafficResult,
                  reviews_version: str, sink_types: Sequence[str],
                  temporary: bool = False, sls: Optional[Dict[str, str]] = None) -> bool:
    """Prints the summary; True when the last page view's trace has every service."""
    sls = sls or {}
    expected = {"productpage", "details", "reviews"}
    if reviews_version != "v1":
        expected.add("ratings")
    store = summary.open_store(stack.store_path)
    try:
        # 4 services: a server span each plus productpage's 2 client calls and reviews' one.
        spans = summary.wait_for_page_view(store, expected,
                                           spans_at_least=2 * len(expected) - 1)
        counts = summary.counts(store)
    finally:
        store.close()
    latencies = sorted(result.latencies_ms) or [0.0]
    print()
    print("Sent %d page views: %s; median %.1f ms, slowest %.1f ms%s."
          % (sum(result.statuses.values()),
             ", ".join("%d x HTTP %d" % (n, s) for s, n in sorted(result.statuses.items())),
             latencies[len(latencies) // 2], latencies[-1],
             "; %d degraded" % result.degraded if result.degraded else ""))
    print("Stored: %d traces (%d page views), %d spans in %s"
          % (counts.traces, counts.page_views, counts.spans, stack.store_path))
    metrics = wait_for_sinks(stack.url("admin_port", "/metrics"), sink_types)
    if len(sink_types) > 1 and metrics["written"]:
        print("Shim sinks: " + ", ".join(
            "%s %d written, %d dropped" % (sink, metrics["written"].get(sink, 0),
                                           metrics["dropped"].get(sink, 0))
            for sink in sink_types))
    if "aliyun_sls" in sink_types:
        print("SLS:       project %s, logstore %s at %s; query statements in "
              "docs/istio-sls-walkthrough.md" % tuple(
                  sls.get(env_name(SLS_PARAMETERS[k]), "?") for k in (
                      "sls_project", "sls_logstore", "sls_endpoint")))
    print()
    print("Last page view (x-request-id %s, user %s):"
          % (result.last_request_id, result.user or "anonymous"))
    for line in summary.format_trace(spans):
        print("  " + line)
    complete = expected <= summary.services_of(spans)
    if not complete:
        print("  (incomplete: missing %s; see the logs in %s)"
              % (", ".join(sorted(expected - summary.services_of(spans))),
                 stack.config.workdir))
    print()
    print("BookInfo:  %s" % stack.url("productpage", "/productpage"))
    print("Trace UI:  %s  (service productpage, Find Traces)" % stack.ui_url)
    print("CLI:       opentracing-sls traces --store %s find --service productpage"
          % stack.store_path)
    if temporary:
        print("           (the directory is removed on exit; --workdir DIR keeps it)")
    return complete


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.requests < 1:
        raise SystemExit("demo.py: --requests must be at least 1")
    sinks = sink_settings(args)
    workdir = args.workdir or tempfile.mkdtemp(prefix="bookinfo-demo-")
    if "aliyun_sls" in sinks["types"]:
        # The spool (batches SLS could not take yet) lives with the store, not in the cwd.
        sinks["flags"] += ["--spool.path", os.path.join(workdir, "sls-spool")]
    stack = BookinfoStack(StackConfig(
        workdir=workdir, ports=choose_ports(prefer_defaults=not args.free_ports),
        reviews_version=args.reviews_version, shim_args=sinks["flags"],
        shim_env=sinks["env"]))
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C is how the demo is meant to stop, even when started with SIGINT ignored (as a
    # shell without job control starts background commands).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = 0
    try:
        print("Starting the shim (sinks: %s) and BookInfo (reviews %s) in %s"
              % (", ".join(sinks["types"]), args.reviews_version, workdir), flush=True)
        stack.start(timeout=args.timeout,
                    progress=lambda name: print("  %-11s ready on port %d" % (
                        name, stack.ports["query_port" if name == "shim" else name]),
                        flush=True))
        print("Sending %d page views to %s" % (args.requests,
                                               stack.url("productpage", "/productpage")),
              flush=True)
        bar = traffic.ProgressBar(args.requests)
        result = traffic.drive(stack.url("productpage"), args.requests, bar.update)
        complete = print_summary(stack, result, args.reviews_version, sinks["types"],
                                 temporary=args.workdir is None, sls=sinks["env"])
        status = 0 if complete else 1
        if not args.no_wait:
            print("\nRunning until Ctrl-C.", flush=True)
            while True:
                for name, process in stack.processes.items():
                    if not process.running():
                        print("%s exited with status %s; stopping.\n%s"
                              % (name, process.returncode(), process.log_tail()))
                        return 1
                time.sleep(0.5)
    except (KeyboardInterrupt, Interrupted):
        print("\nStopping ...", flush=True)
    except StackError as exc:
        print("demo.py: %s" % exc, file=sys.stderr)
        status = 1
    except OSError as exc:  # requests' errors too: productpage went away mid-traffic
        print("demo.py: %s (logs in %s)" % (exc, workdir), file=sys.stderr)
        status = 1
    finally:
        # A second Ctrl-C (or a SIGTERM) must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        statuses = stack.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        print("Stopped %s." % ", ".join("%s (%s)" % (name, code)
                                        for name, code in statuses.items()), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
