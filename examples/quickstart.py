"""Quick start: trace a small request flow and look at what reaches the agent.

The script starts a tiny stand-in for jaeger-agent (a UDP socket on 127.0.0.1, random
port, read by a thread), points a tracer at it, and simulates one request:

- a "frontend" handles ``GET /productpage``, calls the backend and injects the trace
  context into the outgoing HTTP headers;
- a "backend" handler extracts the context from those headers (read from a WSGI environ,
  as a WSGI/Flask app receives them) and creates child spans with tags and logs; one of
  them raises an error that the application catches.

Then it closes the tracer (``close()`` blocks until every span is sent), decodes the
received datagrams with the Jaeger Thrift IDL shipped in ``opentracing_sls.reporting.idl``
and prints the injected headers, the trace tree and the tracer's counters.

Run it with ``make demo`` or ``.venv/bin/python examples/quickstart.py``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from opentracing import Format
from opentracing.ext import tags as ext_tags

from opentracing_sls import Config

MASK_64 = 0xFFFFFFFFFFFFFFFF
#: Tags printed next to each span unless --all-tags is given.
TAGS_OF_NOTE = (
    "span.kind",
    "http.method",
    "http.url",
    "http.status_code",
    "db.type",
    "db.statement",
    "peer.service",
    "error",
    "sampler.type",
    "sampler.param",
)


class TinyAgent:
    """Collects UDP datagrams on 127.0.0.1 in a background thread, like jaeger-agent's port."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.datagrams: List[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tiny-agent", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self.datagrams.append(self.sock.recv(65535))
            except socket.timeout:
                # Stop only once the socket is drained and a stop was asked for.
                if self._stop.is_set():
                    return

    def stop(self) -> List[bytes]:
        self._stop.set()
        self._thread.join(5.0)
        self.sock.close()
        return self.datagrams


# --------------------------------------------------------------------------- the "app"


def frontend(tracer: Any, sent_headers: Dict[str, str]) -> None:
    """Handles GET /productpage and calls the backend over (simulated) HTTP."""
    with tracer.start_active_span(
        "GET /productpage",
        tags={ext_tags.SPAN_KIND: ext_tags.SPAN_KIND_RPC_SERVER, ext_tags.HTTP_METHOD: "GET",
              ext_tags.HTTP_URL: "http://frontend/productpage"},
    ) as scope:
        scope.span.set_baggage_item("user", "jason")
        with tracer.start_active_span(
            "GET /reviews/0",
            tags={ext_tags.SPAN_KIND: ext_tags.SPAN_KIND_RPC_CLIENT, ext_tags.HTTP_METHOD: "GET",
                  ext_tags.HTTP_URL: "http://backend/reviews/0",
                  ext_tags.PEER_SERVICE: "backend"},
        ) as client:
            headers: Dict[str, str] = {}
            tracer.inject(client.span.context, Format.HTTP_HEADERS, headers)
            sent_headers.update(headers)
            status = backend(tracer, as_wsgi_environ(headers))
            client.span.set_tag(ext_tags.HTTP_STATUS_CODE, status)
        scope.span.set_tag(ext_tags.HTTP_STATUS_CODE, 200)


def as_wsgi_environ(headers: Dict[str, str]) -> Dict[str, Any]:
    """The request as a WSGI server hands it to the backend (``HTTP_X_B3_TRACEID`` ...)."""
    environ: Dict[str, Any] = {"wsgi.version": (1, 0), "REQUEST_METHOD": "GET",
                               "PATH_INFO": "/reviews/0"}
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def backend(tracer: Any, environ: Dict[str, Any]) -> int:
    """Handles GET /reviews/0: a database query, then a ratings call that times out."""
    parent = tracer.extract(Format.HTTP_HEADERS, environ)
    with tracer.start_active_span(
        "reviews.handle", child_of=parent,
        tags={ext_tags.SPAN_KIND: ext_tags.SPAN_KIND_RPC_SERVER, ext_tags.HTTP_METHOD: "GET",
              ext_tags.HTTP_URL: "http://backend/reviews/0"},
    ) as scope:
        user = scope.span.get_baggage_item("user")
        with tracer.start_active_span(
            "db.query",
            tags={ext_tags.DATABASE_TYPE: "sql",
                  ext_tags.DATABASE_STATEMENT: "SELECT * FROM reviews WHERE product_id = ?"},
        ) as db:
            time.sleep(0.004)
            db.span.log_kv({"event": "rows fetched", "rows": 2, "user": user})
        try:
            with tracer.start_active_span("ratings.fetch",
                                          tags={ext_tags.PEER_SERVICE: "ratings"}):
                time.sleep(0.002)
                # Leaving the `with` block with an exception tags the span error=true and
                # logs event=error, error.kind, message and the stack.
                raise TimeoutError("ratings did not answer within 2 ms")
        except TimeoutError:
            scope.span.log_kv({"event": "fallback", "message": "reviews served without ratings"})
        scope.span.set_tag(ext_tags.HTTP_STATUS_CODE, 200)
        return 200


# ---------------------------------------------------------------------- decode and print


def decode(datagram: bytes) -> Any:
    """The ``Batch`` of one ``Agent.emitBatch`` datagram (Thrift compact protocol)."""
    from thriftpy2.protocol import TCompactProtocol
    from thriftpy2.transport import TMemoryBuffer

    from opentracing_sls.reporting.idl import agent

    proto = TCompactProtocol(TMemoryBuffer(datagram))
    name, _type, _seqid = proto.read_message_begin()
    if name != "emitBatch":
        raise ValueError("unexpected Thrift message %r" % name)
    args = agent.Agent.emitBatch_args()
    args.read(proto)
    return args.batch


def tag_value(tag: Any) -> Any:
    """The value of a Jaeger Thrift Tag, by its vType (STRING, DOUBLE, BOOL, LONG, BINARY)."""
    return (tag.vStr, tag.vDouble, tag.vBool, tag.vLong, tag.vBinary)[tag.vType]


def short(value: Any, width: int = 60) -> str:
    text = str(value).replace("\n", " | ")
    return text if len(text) <= width else text[: width - 3] + "..."


def trace_hex(span: Any) -> str:
    high, low = span.traceIdHigh & MASK_64, span.traceIdLow & MASK_64
    return "%032x" % ((high << 64) | low) if high else "%016x" % low


def print_tree(spans: List[Any], all_tags: bool) -> None:
    by_trace: Dict[str, List[Any]] = {}
    for span in spans:
        by_trace.setdefault(trace_hex(span), []).append(span)
    for trace_id, members in by_trace.items():
        ids = {span.spanId & MASK_64 for span in members}
        children: Dict[int, List[Any]] = {}
        for span in members:
            parent = span.parentSpanId & MASK_64
            children.setdefault(parent if parent in ids else 0, []).append(span)
        for group in children.values():
            group.sort(key=lambda s: s.startTime)
        trace_start = min(span.startTime for span in members)
        print("trace %s (%d spans)" % (trace_id, len(members)))
        roots = children.get(0, [])
        for index, root in enumerate(roots):
            print_span(root, children, trace_start, "", index == len(roots) - 1, all_tags)


def print_span(span: Any, children: Dict[int, List[Any]], trace_start: int, prefix: str,
               last: bool, all_tags: bool) -> None:
    """One line for the span, its tags and logs below it, then its children."""
    tags = {tag.key: tag_value(tag) for tag in span.tags or []}
    mark = "   <-- error" if tags.get("error") is True else ""
    print("%s%s%s  %.1f ms%s" % (prefix, "`-- " if last else "|-- ", span.operationName,
                                 span.duration / 1000.0, mark))
    inner = prefix + ("    " if last else "|   ")
    kids = children.get(span.spanId & MASK_64, [])
    detail = inner + ("|  " if kids else "   ")
    shown = tags if all_tags else {k: v for k, v in tags.items() if k in TAGS_OF_NOTE}
    if shown:
        print("%stags: %s" % (detail, ", ".join("%s=%s" % (k, short(v, 50))
                                                for k, v in shown.items())))
    for log in span.logs or []:
        fields = {tag.key: tag_value(tag) for tag in log.fields}
        if not all_tags:
            fields.pop("stack", None)
            fields.pop("error.object", None)
        print("%slog at +%.1f ms: %s" % (detail, (log.timestamp - trace_start) / 1000.0,
                                         ", ".join("%s=%s" % (k, short(v, 50))
                                                   for k, v in fields.items())))
    for index, child in enumerate(kids):
        print_span(child, children, trace_start, inner, index == len(kids) - 1, all_tags)


def print_section(title: str) -> None:
    print()
    print("== " + title)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Trace a simulated frontend -> backend request with opentracing-sls, "
                    "send the spans over UDP to a tiny in-process agent, decode the "
                    "datagrams and print the trace tree.")
    parser.add_argument("--all-tags", action="store_true",
                        help="print every span tag and log field (stack traces included)")
    args = parser.parse_args(argv)

    agent = TinyAgent()
    tracer = Config(
        {
            "local_agent": {"reporting_host": "127.0.0.1", "reporting_port": agent.port},
            "sampler": {"type": "const", "param": 1},
        },
        service_name="quickstart",
    ).initialize_tracer()

    sent_headers: Dict[str, str] = {}
    frontend(tracer, sent_headers)
    started = time.monotonic()
    delivered = tracer.close()  # synchronous: flushes the queue, stops the worker
    close_ms = (time.monotonic() - started) * 1000.0
    datagrams = agent.stop()

    print_section("Headers the frontend injected into its call to the backend")
    for name, value in sent_headers.items():
        print("  %-18s %s" % (name + ":", value))
    print("The backend read them from a WSGI environ (HTTP_X_B3_TRACEID, ...): B3 is tried "
          "first, then W3C, then uber-trace-id; uberctx-user carried the baggage item.")

    print_section("tracer.close() returned %s after %.1f ms; the agent on 127.0.0.1:%d got "
                  "%d datagram(s)" % (delivered, close_ms, agent.port, len(datagrams)))
    spans: List[Any] = []
    for datagram in datagrams:
        batch = decode(datagram)
        process_tags = {tag.key: tag_value(tag) for tag in batch.process.tags or []}
        stats: Tuple[int, int, int] = (0, 0, 0)
        if batch.stats is not None:
            stats = (batch.stats.fullQueueDroppedSpans, batch.stats.tooLargeDroppedSpans,
                     batch.stats.failedToEmitSpans)
        print("  %d bytes: service=%s seqNo=%s spans=%d client-uuid=%s" % (
            len(datagram), batch.process.serviceName, batch.seqNo, len(batch.spans),
            process_tags.get("client-uuid")))
        print("    ClientStats (queue-full, too-large, failed) dropped: %s" % (stats,))
        print("    process tags: %s" % ", ".join(
            "%s=%s" % (k, v) for k, v in process_tags.items() if k != "client-uuid"))
        spans.extend(batch.spans)

    print_section("Trace tree (operation, duration, tags, logs)")
    if not spans:
        print("  no spans received")
        return 1
    print_tree(spans, args.all_tags)

    print_section("tracer.metrics.snapshot()")
    for name, value in tracer.metrics.snapshot().items():
        print("  %-40s %d" % (name, value))
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main())
