"""Added time per request of Flask + requests instrumentation: ours against flask-opentracing
with jaeger-client and OpenTelemetry's Flask + requests instrumentation, in the same run.

Run ``python tests/benchmarks/bench_integrations.py [--quick]``; not a pytest module.

The request: a Flask route ``/api/v1/products/<id>`` that makes one ``requests`` call
through a ``Session`` to a local stub, and returns its body. The stub is a requests transport
adapter that answers in process: everything of requests runs (``Session.send`` included,
where the instrumentations hook in) except the socket, whose scheduling jitter on a busy
2-CPU machine is tens of microseconds, larger than what is measured. ``--socket-stub`` uses
a keep-alive loopback HTTP stub process instead. The app is called as a WSGI server calls it
(a fresh environ per request, Istio-style headers: ``x-request-id`` and B3 ``x-b3-*``; the
body iterated and closed). Spans really go out: to sinks in separate processes (Jaeger
Thrift over UDP for ours and jaeger-client, OTLP/HTTP for OpenTelemetry), and the table
reports how many arrived.

Subjects, each in its own process (their patches are process-wide):

- ours: ``opentracing_sls.integrations.instrument()`` with our tracer from ``Config``;
- flask-opentracing 2.0 + jaeger-client 4.8.0: ``FlaskTracing(tracer, True, app)`` for the
  server span; neither has a requests integration, so the route makes the client span and
  injects the headers itself, as jaeger-era apps (BookInfo's productpage) did;
- OpenTelemetry: ``FlaskInstrumentor().instrument_app(app)`` and
  ``RequestsInstrumentor().instrument()``, SDK with a BatchSpanProcessor.

Added time: within each subject's process, R runs of N requests without tracing and R runs
with it, interleaved (alternating order); the figure is median(traced) - median(untraced),
so the stub's and Flask's own costs cancel out. Runs are short (N=150) and many (R=40):
on the 2-CPU reference VM the speed of identical runs wanders by up to 1.7x for seconds at
a time, and many short interleaved runs let the medians see both sides of every wander;
"best" is min(traced) - min(untraced). It is wall time, as the application sees it
(the reporter threads' work counts as far as it happens during the run). "added CPU" is
process CPU time per request with the reporter's export of the run included (a flush ends
the timed window): the whole cost, and less sensitive to other load on the machine. The
row "ours with the no-op tracer" is the integration's own glue, without any tracer work.
Sampled: const sampler 1 / ALWAYS_ON, the incoming ``x-b3-sampled: 1``. Unsampled: const 0 /
ALWAYS_OFF, ``x-b3-sampled: 0``. The garbage collector stays on; the heap built before the
timed runs (imports, app, tracer) is frozen (``gc.freeze()``), as pre-forking servers do, so a
full collection does not walk the other subjects' libraries.

Targets (issue 5): sampled <= +20 us and <= 0.25 x the best peer; unsampled <= +8 us.

``--instructions`` counts instead of timing: each subject's process runs under valgrind's
callgrind (``valgrind`` on PATH), N untraced requests then N traced ones, each stretch between
two markers (``os.getppid()`` zeroes the counters, ``os.getpgrp()`` dumps them), and the table
gives instructions per request. Unlike wall time on a shared machine, the counts repeat from
run to run; they still move by a few thousand with the code's layout in memory (CPython's
type attribute cache and heap), so compare changes of more than that.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Tuple

from _common import base_parser, median, print_header, table, verdict

SAMPLED_TARGET = 20e-6
SAMPLED_RATIO_TARGET = 0.25
UNSAMPLED_TARGET = 8e-6
SUBJECTS = ("ours", "jaeger", "otel")
#: Not a peer: our integrations with OpenTracing's no-op tracer, i.e. the glue alone.
GLUE = "ours-noop"
LABELS = {"ours": "opentracing-sls integrations",
          "jaeger": "flask-opentracing + jaeger-client",
          "otel": "OpenTelemetry flask + requests",
          GLUE: "  (ours with the no-op tracer: glue only)"}
ROUTE = "/api/v1/products/<id>"
# Every tracer's queue holds a whole timed run (two spans per request): measure the tracer,
# not its overflow policy (jaeger-client's default queue drops most of a run's spans).
QUEUE_SIZE = 20000


# --------------------------------------------------------------------------- the stub


def stub_main() -> None:
    """A keep-alive HTTP/1.1 stub answering every request with ``ok`` (own process)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    print(server.getsockname()[1], flush=True)
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
              b"\r\n{}")

    def serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
                while b"\r\n\r\n" in buffer:  # GET requests only: no bodies
                    _, buffer = buffer.split(b"\r\n\r\n", 1)
                    conn.sendall(answer)

    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


# --------------------------------------------------------------------------- one subject


def _environ(sampled: bool) -> Dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/api/v1/products/0",
        "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "9080",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.6", "REMOTE_PORT": "51234",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "HTTP_HOST": "productpage:9080", "HTTP_USER_AGENT": "Envoy/HC",
        "HTTP_ACCEPT": "*/*", "HTTP_X_FORWARDED_PROTO": "http",
        "HTTP_X_REQUEST_ID": "9d3b7c5e-2c4a-4f6e-9a1b-3c5d7e9f1a2b",
        "HTTP_X_B3_TRACEID": "80f198ee56343ba864fe8b2a57d3eff7",
        "HTTP_X_B3_SPANID": "e457b5a2e4d86bd1", "HTTP_X_B3_SAMPLED": "1" if sampled else "0",
        "HTTP_X_ENVOY_ATTEMPT_COUNT": "1",
    }


def _make_app(session: Any, stub: str, client_span: Optional[Callable[..., Any]] = None) -> Any:
    from flask import Flask

    app = Flask("productpage")

    if client_span is None:
        @app.route(ROUTE)
        def product(id: str) -> str:
            return session.get(stub + "/details/" + id, timeout=5).text
    else:
        @app.route(ROUTE)
        def product(id: str) -> str:
            with client_span() as headers:
                return session.get(stub + "/details/" + id, headers=headers, timeout=5).text
    return app


def _stub_adapter() -> Any:
    import requests
    from requests.adapters import BaseAdapter

    class StubAdapter(BaseAdapter):
        """Answers ``{}`` with status 200, as the socket stub does, without a socket."""

        def send(self, request: Any, **kwargs: Any) -> Any:
            response = requests.Response()
            response.status_code = 200
            response.headers["Content-Type"] = "application/json"
            response._content = b"{}"
            response.encoding = "utf-8"
            response.url = request.url
            response.request = request
            return response

        def close(self) -> None:
            pass

    return StubAdapter()


class Subject:
    """The plain and the traced app of one subject, and how to switch tracing on and off."""

    def __init__(self, key: str, sampled: bool, stub: str, sink: Any, service: str) -> None:
        import requests

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import _tracers

        self.key = key
        self.session = requests.Session()
        if stub == "in-process":
            stub = "http://details:9080"
            self.session.mount("http://", _stub_adapter())
        self.plain = _make_app(self.session, stub)
        self.enable: Callable[[], None] = lambda: None
        self.disable: Callable[[], None] = lambda: None
        if key in ("ours", GLUE):
            import opentracing

            from opentracing_sls import integrations

            self.peer = _tracers.Ours(sink, service, sampled, QUEUE_SIZE)
            opentracing.set_global_tracer(self.peer.tracer if key == "ours"
                                          else opentracing.Tracer())
            self.traced = self.plain
            self.enable = lambda: integrations.instrument()
            self.disable = lambda: integrations.uninstrument()
        elif key == "jaeger":
            from flask_opentracing import FlaskTracing

            self.peer = _tracers.Jaeger(sink, service, sampled, QUEUE_SIZE)
            self.traced = _make_app(self.session, stub, self._jaeger_client_span)
            FlaskTracing(self.peer.tracer, True, self.traced)
        else:
            from opentelemetry.instrumentation.flask import FlaskInstrumentor
            from opentelemetry.instrumentation.requests import RequestsInstrumentor

            self.peer = _tracers.OTel(sink, service, sampled, QUEUE_SIZE)
            self.traced = _make_app(self.session, stub)
            FlaskInstrumentor().instrument_app(self.traced,
                                               tracer_provider=self.peer.provider)
            instrumentor = RequestsInstrumentor()
            self.enable = lambda: instrumentor.instrument(tracer_provider=self.peer.provider)
            self.disable = lambda: instrumentor.uninstrument()

    def _jaeger_client_span(self) -> Any:
        import contextlib

        import opentracing
        from opentracing.ext import tags

        tracer = self.peer.tracer

        @contextlib.contextmanager
        def span() -> Any:
            with tracer.start_active_span("GET", tags={
                    tags.SPAN_KIND: tags.SPAN_KIND_RPC_CLIENT, tags.HTTP_METHOD: "GET",
                    tags.COMPONENT: "requests"}) as scope:
                headers: Dict[str, str] = {}
                tracer.inject(scope.span.context, opentracing.Format.HTTP_HEADERS, headers)
                yield headers
        return span()

    def run(self, app: Any, environ: Dict[str, Any], n: int) -> None:
        def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
            pass

        copy = environ.copy
        for _ in range(n):
            env = copy()
            env["wsgi.input"] = io.BytesIO(b"")
            body = app(env, start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()


def subject_main(args: argparse.Namespace) -> None:
    """Runs in the subject's own process; prints one JSON line of results."""
    import gc

    sink = SimpleNamespace(port=args.sink_port, kind=args.sink_kind,
                           endpoint="http://127.0.0.1:%d/v1/traces" % args.sink_port)
    subject = Subject(args.subject, args.sampled, args.stub, sink, args.service)
    environ = _environ(args.sampled)
    if args.count_instructions:
        _marked_runs(subject, environ, args.n, args.warmup)
        return
    traced_requests = 0
    times: Dict[str, List[float]] = {"plain": [], "traced": []}
    cpu: Dict[str, List[float]] = {"plain": [], "traced": []}

    def timed(mode: str, n: int) -> Tuple[float, float]:
        nonlocal traced_requests
        if mode == "traced":
            subject.enable()
            app = subject.traced
            traced_requests += n
        else:
            subject.disable()
            app = subject.plain
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        subject.run(app, environ, n)
        elapsed = (time.perf_counter() - start) / n
        if mode == "traced":
            # CPU: every thread of the process, the reporter's export of this run included.
            subject.peer.flush(30)
        elapsed_cpu = (time.process_time() - start_cpu) / n
        subject.disable()
        return elapsed, elapsed_cpu

    for mode in ("plain", "traced"):
        timed(mode, args.warmup)
    # The libraries imported by the benchmark (jaeger-client, the OpenTelemetry SDK) make a
    # heap that each full collection would walk; a server that preloads its app freezes it
    # likewise. Collections of what the requests allocate still happen.
    gc.collect()
    gc.freeze()
    for r in range(args.repeats):
        order = ("plain", "traced") if r % 2 == 0 else ("traced", "plain")
        for mode in order:
            wall, cpu_time = timed(mode, args.n)
            times[mode].append(wall)
            cpu[mode].append(cpu_time)
    subject.peer.flush(30)
    closed = subject.peer.close(15)
    print(json.dumps({"times": times, "cpu": cpu, "traced_requests": traced_requests,
                      "closed": closed, "dropped": subject.peer.dropped()}), flush=True)


def _marked_runs(subject: Subject, environ: Dict[str, Any], n: int, warmup: int) -> None:
    """``--instructions``: n untraced then n traced requests, each between callgrind's markers
    (``--zero-before=getppid --dump-before=getpgrp``): dump 1 untraced, dump 2 traced."""
    import gc

    for app, enable in ((subject.plain, subject.disable), (subject.traced, subject.enable)):
        enable()
        subject.run(app, environ, warmup)
    subject.peer.flush(30)
    subject.disable()
    gc.collect()
    gc.freeze()
    os.getppid()
    subject.run(subject.plain, environ, n)
    os.getpgrp()
    subject.enable()
    gc.collect()
    os.getppid()
    subject.run(subject.traced, environ, n)
    subject.peer.flush(30)  # the reporter's export of these requests counts (where it can)
    os.getpgrp()
    subject.disable()
    subject.peer.close(15)
    print(json.dumps({"ok": True}), flush=True)


def _count_instructions(key: str, sampled: bool, stub: str, sink: Any, n: int,
                        warmup: int, workdir: str) -> Tuple[float, float]:
    """(untraced, traced) instructions per request of ``key`` under callgrind."""
    out = os.path.join(workdir, "%s-%s.cg" % (key, "s" if sampled else "u"))
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
               "--zero-before=getppid", "--dump-before=getpgrp", "--dump-instr=no",
               "--separate-threads=no",
               sys.executable, os.path.abspath(__file__), "--subject", key, "--stub", stub,
               "--sink-port", str(sink.port), "--sink-kind", sink.kind,
               "--service", "bench-int-instr-%s" % key, "--n", str(n), "--repeats", "1",
               "--warmup", str(warmup), "--count-instructions"]
    if sampled:
        command.append("--sampled")
    env = dict(os.environ, PYTHONHASHSEED="0")
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=env)
    if result.returncode != 0:
        raise RuntimeError("subject %s failed under callgrind:\n%s" % (key, result.stderr[-3000:]))
    totals = []
    for part in (1, 2):
        with open("%s.%d" % (out, part)) as dump:
            totals.append(next(int(line.split()[1]) for line in dump
                               if line.startswith(("summary:", "totals:"))))
    return totals[0] / n, totals[1] / n


def instructions_main(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from _sinks import Sinks

    if shutil.which("valgrind") is None:
        print("--instructions needs valgrind on PATH")
        return 1
    n, warmup = (50, 100) if args.quick else (300, 200)
    print_header("Flask + requests instrumentation: instructions added per request", [
        "route %s -> one requests call through a Session to the in-process stub adapter;" % ROUTE,
        "callgrind, PYTHONHASHSEED=0; per process N=%d untraced then N=%d traced requests "
        "after %d of each to warm up" % (n, n, warmup)])
    sinks = Sinks()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-int-cg-") as workdir:
            for sampled in (True, False):
                for key in SUBJECTS + (GLUE,):
                    if key == GLUE and not sampled:
                        continue  # the no-op tracer samples nothing: one row is enough
                    sink = sinks.otel if key == "otel" else sinks.udp
                    plain, traced = _count_instructions(key, sampled, "in-process", sink, n,
                                                        warmup, workdir)
                    rows.append([LABELS[key], "sampled" if sampled else "unsampled",
                                 "%.0f" % plain, "%.0f" % traced, "%+.0f" % (traced - plain)])
    finally:
        sinks.close()
    table(["subject", "requests", "untraced instr/req", "traced instr/req", "added"], rows)
    return 0


# --------------------------------------------------------------------------- the parent


def _start_stub(socket_stub: bool) -> Tuple[Optional[subprocess.Popen], str]:
    if not socket_stub:
        return None, "in-process"
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--stub"],
                            stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, "http://127.0.0.1:%d" % port


def _run_subject(key: str, sampled: bool, stub: str, sink: Any, service: str, n: int,
                 repeats: int, warmup: int) -> Dict[str, Any]:
    command = [sys.executable, os.path.abspath(__file__), "--subject", key,
               "--stub", stub, "--sink-port", str(sink.port), "--sink-kind", sink.kind,
               "--service", service, "--n", str(n), "--repeats", str(repeats),
               "--warmup", str(warmup)]
    if sampled:
        command.append("--sampled")
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError("subject %s failed:\n%s" % (key, result.stderr))
    return json.loads(result.stdout.strip().splitlines()[-1])


def _server_op(key: str) -> str:
    return {"ours": ROUTE, "jaeger": "product", "otel": "GET " + ROUTE}[key]


def measure(sinks: Any, sampled: bool, stub: str, n: int, repeats: int, warmup: int,
            rounds: int) -> Dict[str, Dict[str, Any]]:
    """Each subject in its own process, ``rounds`` times in rotating order."""
    results: Dict[str, Dict[str, Any]] = {}
    mode = "sampled" if sampled else "unsampled"
    keys = SUBJECTS + (GLUE,)
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            sink = sinks.otel if key == "otel" else sinks.udp
            service = "bench-int-%s-%s-%d" % (mode, key, r)
            out = _run_subject(key, sampled, stub, sink, service, n, repeats, warmup)
            entry = results.setdefault(key, {"added": [], "added_cpu": [], "plain": [],
                                             "traced": [], "best": [], "expected": 0,
                                             "server": 0, "client": 0, "dropped": 0})
            times, cpu = out["times"], out["cpu"]
            entry["added"].append(median(times["traced"]) - median(times["plain"]))
            entry["best"].append(min(times["traced"]) - min(times["plain"]))
            entry["added_cpu"].append(median(cpu["traced"]) - median(cpu["plain"]))
            entry["plain"].append(median(times["plain"]))
            entry["traced"].append(median(times["traced"]))
            entry["dropped"] += out["dropped"]
            if sampled and key != GLUE:
                expected = out["traced_requests"]
                entry["expected"] += expected
                entry["server"] += sink.wait_for(service, _server_op(key), expected, 30)[0]
                entry["client"] += sink.wait_for(service, "GET", expected, 30)[0]
    return results


def report(results: Dict[str, Dict[str, Any]], sampled: bool) -> Dict[str, float]:
    added = {key: median(r["added"]) for key, r in results.items()}
    rows = []
    for key in SUBJECTS + (GLUE,):
        r = results[key]
        row = [LABELS[key], "%.1f" % (median(r["plain"]) * 1e6),
               "%.1f" % (median(r["traced"]) * 1e6), "%+.1f" % (added[key] * 1e6),
               " ".join("%+.1f" % (a * 1e6) for a in r["added"]),
               "%+.1f" % (median(r["best"]) * 1e6),
               "%+.1f" % (median(r["added_cpu"]) * 1e6),
               "%.3f x" % (added[key] / added["ours"]) if added["ours"] > 0 else "n/a"]
        if sampled:
            row.append("%d/%d server, %d/%d client, %d dropped" % (
                r["server"], r["expected"], r["client"], r["expected"], r["dropped"])
                if key != GLUE else "-")
        rows.append(row)
    headers = ["subject", "untraced us/req", "traced us/req", "added us", "added per round",
               "best", "added CPU us", "vs ours"]
    if sampled:
        headers.append("spans delivered")
    table(headers, rows)
    return added


def parent_main(args: argparse.Namespace) -> int:
    from _sinks import Sinks

    n, repeats, warmup, rounds = ((100, 10, 200, 1) if args.quick else (150, 40, 300, 2))
    assert 2 * max(n, warmup) <= QUEUE_SIZE
    print_header("Flask + requests instrumentation: added time per request", [
        "route %s -> one requests call through a Session to a local stub (%s);" % (
            ROUTE, "loopback HTTP process" if args.socket_stub else "in-process adapter"),
        "WSGI calls in process, Istio-style headers; N=%d requests per run, R=%d runs traced "
        "and R untraced, interleaved; %d round(s) of separate processes per subject"
        % (n, repeats, rounds),
        "added = median(traced) - median(untraced) within a process; the figure is the "
        "median over rounds"])
    sinks = Sinks()
    stub_proc, stub = _start_stub(args.socket_stub)
    ok = True
    try:
        print(sinks.describe())
        print()
        print("(a) sampled, reporter on")
        sampled = report(measure(sinks, True, stub, n, repeats, warmup, rounds), True)
        best_peer = min(sampled["jaeger"], sampled["otel"])
        ratio = sampled["ours"] / best_peer if best_peer > 0 else float("inf")
        ok &= sampled["ours"] <= SAMPLED_TARGET
        verdict(sampled["ours"] <= SAMPLED_TARGET,
                "ours sampled: %+.1f us per request (target <= +%.0f us)"
                % (sampled["ours"] * 1e6, SAMPLED_TARGET * 1e6))
        ok &= ratio <= SAMPLED_RATIO_TARGET
        verdict(ratio <= SAMPLED_RATIO_TARGET,
                "ours / best peer: %.3f x (best peer %+.1f us; target <= %.2f x)"
                % (ratio, best_peer * 1e6, SAMPLED_RATIO_TARGET))
        print()
        print("(b) unsampled")
        unsampled = report(measure(sinks, False, stub, n, repeats, warmup, rounds), False)
        ok &= unsampled["ours"] <= UNSAMPLED_TARGET
        verdict(unsampled["ours"] <= UNSAMPLED_TARGET,
                "ours unsampled: %+.1f us per request (target <= +%.0f us)"
                % (unsampled["ours"] * 1e6, UNSAMPLED_TARGET * 1e6))
    finally:
        if stub_proc is not None:
            stub_proc.kill()
            stub_proc.wait(5)
        sinks.close()
    return 0 if ok or not args.strict else 1


def main() -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a target is missed")
    parser.add_argument("--socket-stub", action="store_true",
                        help="call a loopback HTTP stub process instead of the in-process "
                             "adapter (noisier)")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per request under callgrind (valgrind) "
                             "instead of timing")
    parser.add_argument("--count-instructions", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stub", help=argparse.SUPPRESS, nargs="?", const="serve")
    parser.add_argument("--subject", choices=SUBJECTS + (GLUE,), help=argparse.SUPPRESS)
    parser.add_argument("--sampled", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sink-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sink-kind", help=argparse.SUPPRESS)
    parser.add_argument("--service", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subject:
        subject_main(args)
        return 0
    if args.stub == "serve":
        stub_main()
        return 0
    if args.instructions:
        return instructions_main(args)
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
